// The cpu backend of kernels/nn.h: the same kernels on host memory, run on the calling thread
// (a cpu stream's worker) and parallel on TBB. Contracts, shapes and layouts: kernels/nn.h.
// Deterministic for any number of TBB threads: work is split so that each output element is
// written by one task, and every reduction runs in a fixed order inside that task.
//
// The GPT kernels are templates on the storage type S of their activations and parameters
// (float, Bf16 or F16 of kernels/nn_scalar.h), instantiated in nn_cpu.cc for those three; the
// tensors nn.h keeps in fp32 whatever the storage type are float* here too. kernels/nn.cc maps
// a FloatType to S.
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/nn.h"
#include "kernels/nn_scalar.h"

namespace ebb::nn::cpu {

template <Storage S>
void embedding_forward(S* out, const std::int32_t* tokens, const S* wte, const S* wpe, int B, int T,
                       int C, int V);
template <Storage S>
void embedding_backward(float* dwte, float* dwpe, const S* dout, const std::int32_t* tokens, int B,
                        int T, int C, int V);
template <Storage S>
void layernorm_forward(S* out, float* mean, float* rstd, const S* inp, const S* weight,
                       const S* bias, int N, int C);
template <Storage S>
void layernorm_backward(S* dinp, float* dweight, float* dbias, const S* dout, const S* inp,
                        const S* weight, const float* mean, const float* rstd, int N, int C);
// bias is not deduced, so that it can be nullptr.
template <Storage S>
void matmul_forward(S* out, const S* inp, const S* weight, const std::type_identity_t<S>* bias,
                    int N, int C, int OC);
template <Storage S>
void matmul_backward(S* dinp, float* dweight, float* dbias, const S* dout, const S* inp,
                     const S* weight, int N, int C, int OC);
template <Storage S>
void gelu_forward(S* out, const S* inp, std::int64_t n);
template <Storage S>
void gelu_backward(S* dinp, const S* inp, const S* dout, std::int64_t n);
template <Storage S>
void add(S* out, const S* a, const S* b, std::int64_t n);
template <Storage S>
void attention_forward(S* out, S* att, const S* qkv, int B, int T, int C, int NH);
template <Storage S>
void attention_backward(S* dqkv, const S* dout, const S* qkv, const S* att, int B, int T, int C,
                        int NH);
template <Storage S>
void softmax_cross_entropy_forward(float* losses, S* probs, const S* logits,
                                   const std::int32_t* targets, int N, int V);
template <Storage S>
void softmax_cross_entropy_backward(S* dlogits, const S* probs, const std::int32_t* targets,
                                    float dloss, int N, int V);
void mean(float* out, const float* in, std::int64_t n);
void adamw(float* param_out, float* m_out, float* v_out, const float* param, const float* grad,
           const float* m, const float* v, std::int64_t n, const AdamWConfig& config, int step);
// nn.h's cast, element by element: out[i] = from_float<To>(to_float(in[i])).
template <Storage To, Storage From>
void cast(To* out, const From* in, std::int64_t n);
template <Storage S>
void accumulate(S* acc, const float* add, std::int64_t n, bool assign);
template <Storage S>
void fold_chunks(S* out, const S* in, int chunks, std::int64_t stride, std::int64_t n,
                 float divisor);

}  // namespace ebb::nn::cpu
