// The cuda backend of kernels/nn.h: each function enqueues its work on `stream` (a
// cudaStream_t) and returns; GEMMs run on cuBLAS (one handle per thread, bound to the stream
// per call, atomics disallowed, so results are deterministic on a given GPU). A launch or cuBLAS
// error throws std::runtime_error naming the kernel. Contracts, shapes, layouts and storage types:
// kernels/nn.h. This header has no CUDA types, so kernels/nn.cc can dispatch to it; inside, the
// kernels are templates on the storage type (float, __nv_bfloat16, __half) chosen from `t`.
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>

#include "kernels/nn.h"

namespace ebb::nn::cuda {

void embedding_forward(void* stream, FloatType t, void* out, const std::int32_t* tokens,
                       const void* wte, const void* wpe, int B, int T, int C, int V);
void embedding_backward(void* stream, FloatType t, float* dwte, float* dwpe, const void* dout,
                        const std::int32_t* tokens, int B, int T, int C, int V);
void layernorm_forward(void* stream, FloatType t, void* out, float* mean, float* rstd,
                       const void* inp, const void* weight, const void* bias, int N, int C);
void layernorm_backward(void* stream, FloatType t, void* dinp, float* dweight, float* dbias,
                        const void* dout, const void* inp, const void* weight, const float* mean,
                        const float* rstd, int N, int C);
void matmul_forward(void* stream, FloatType t, void* out, const void* inp, const void* weight,
                    const void* bias, int N, int C, int OC);
void matmul_backward(void* stream, FloatType t, void* dinp, float* dweight, float* dbias,
                     const void* dout, const void* inp, const void* weight, int N, int C, int OC);
void gelu_forward(void* stream, FloatType t, void* out, const void* inp, std::int64_t n);
void gelu_backward(void* stream, FloatType t, void* dinp, const void* inp, const void* dout,
                   std::int64_t n);
void add(void* stream, FloatType t, void* out, const void* a, const void* b, std::int64_t n);
void attention_forward(void* stream, FloatType t, void* out, void* att, const void* qkv, int B,
                       int T, int C, int NH);
void attention_backward(void* stream, FloatType t, void* dqkv, const void* dout, const void* qkv,
                        const void* att, int B, int T, int C, int NH);
void softmax_cross_entropy_forward(void* stream, FloatType t, float* losses, void* probs,
                                   const void* logits, const std::int32_t* targets, int N, int V);
void softmax_cross_entropy_backward(void* stream, FloatType t, void* dlogits, const void* probs,
                                    const std::int32_t* targets, float dloss, int N, int V);
void mean(void* stream, float* out, const float* in, std::int64_t n);
void adamw(void* stream, float* param_out, float* m_out, float* v_out, const float* param,
           const float* grad, const float* m, const float* v, std::int64_t n,
           const AdamWConfig& config, int step);
void cast(void* stream, FloatType to, void* out, FloatType from, const void* in, std::int64_t n);
void accumulate(void* stream, FloatType t, void* acc, const float* add, std::int64_t n,
                bool assign);
void fold_chunks(void* stream, FloatType t, void* out, const void* in, int chunks,
                 std::int64_t stride, std::int64_t n, float divisor);

}  // namespace ebb::nn::cuda
