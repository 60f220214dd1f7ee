// The cuda backend of kernels/nn.h: each function enqueues its work on `stream` (a
// cudaStream_t) and returns; GEMMs run on cuBLAS (one handle per thread, bound to the stream
// per call, atomics disallowed, so results are deterministic on a given GPU). A launch or cuBLAS
// error throws std::runtime_error naming the kernel. Contracts, shapes and layouts:
// kernels/nn.h. This header has no CUDA types, so kernels/nn.cc can dispatch to it.
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>

#include "kernels/nn.h"

namespace ebb::nn::cuda {

void embedding_forward(void* stream, float* out, const std::int32_t* tokens, const float* wte,
                       const float* wpe, int B, int T, int C, int V);
void embedding_backward(void* stream, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, int B, int T, int C, int V);
void layernorm_forward(void* stream, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C);
void layernorm_backward(void* stream, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int N, int C);
void matmul_forward(void* stream, float* out, const float* inp, const float* weight,
                    const float* bias, int N, int C, int OC);
void matmul_backward(void* stream, float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC);
void gelu_forward(void* stream, float* out, const float* inp, std::int64_t n);
void gelu_backward(void* stream, float* dinp, const float* inp, const float* dout, std::int64_t n);
void add(void* stream, float* out, const float* a, const float* b, std::int64_t n);
void attention_forward(void* stream, float* out, float* att, const float* qkv, int B, int T, int C,
                       int NH);
void attention_backward(void* stream, float* dqkv, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH);
void softmax_cross_entropy_forward(void* stream, float* losses, float* probs, const float* logits,
                                   const std::int32_t* targets, int N, int V);
void softmax_cross_entropy_backward(void* stream, float* dlogits, const float* probs,
                                    const std::int32_t* targets, float dloss, int N, int V);
void mean(void* stream, float* out, const float* in, std::int64_t n);
void adamw(void* stream, float* param_out, float* m_out, float* v_out, const float* param,
           const float* grad, const float* m, const float* v, std::int64_t n,
           const AdamWConfig& config, int step);
void cast_f32_to_bf16(void* stream, std::uint16_t* out, const float* in, std::int64_t n);
void cast_bf16_to_f32(void* stream, float* out, const std::uint16_t* in, std::int64_t n);

}  // namespace ebb::nn::cuda
