// The cpu backend of kernels/nn.h: the same kernels on host memory, run on the calling thread
// (a cpu stream's worker) and parallel on TBB. Contracts, shapes and layouts: kernels/nn.h.
// Deterministic for any number of TBB threads: work is split so that each output element is
// written by one task, and every reduction runs in a fixed order inside that task.
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>

#include "kernels/nn.h"

namespace ebb::nn::cpu {

void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                       int B, int T, int C, int V);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                        int B, int T, int C, int V);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int N, int C);
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);
void gelu_forward(float* out, const float* inp, std::int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, std::int64_t n);
void add(float* out, const float* a, const float* b, std::int64_t n);
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH);
void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                   const std::int32_t* targets, int N, int V);
void softmax_cross_entropy_backward(float* dlogits, const float* probs, const std::int32_t* targets,
                                    float dloss, int N, int V);
void mean(float* out, const float* in, std::int64_t n);
void adamw(float* param_out, float* m_out, float* v_out, const float* param, const float* grad,
           const float* m, const float* v, std::int64_t n, const AdamWConfig& config, int step);
void cast_f32_to_bf16(std::uint16_t* out, const float* in, std::int64_t n);
void cast_bf16_to_f32(float* out, const std::uint16_t* in, std::int64_t n);

}  // namespace ebb::nn::cpu
