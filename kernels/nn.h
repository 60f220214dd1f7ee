// nn: the compute kernels of ebb's reference trainer (a GPT-2-style decoder), one interface over
// the cpu and cuda backends. Each function is called from inside a Kernel (Stream::launch) with
// the LaunchContext it received, and dispatches on ctx.kind: on cpu it does the work on the
// calling thread (the stream's worker), parallel on TBB; on cuda it enqueues device work on
// ctx.native_stream and returns. Pointers are device pointers of that backend.
//
// Layouts are row-major, as llm.c's: B batch, T sequence, C channels, NH heads, V vocabulary,
// N rows (B*T), OC output channels. All floating-point tensors are fp32 except the bf16 casts.
//
// Contracts every kernel keeps:
// - Outputs are written in full and never accumulated into (a backward kernel overwrites its
//   gradient outputs), and inputs are never written: the engine replays kernels to recompute
//   dropped tensors, so a kernel must be a pure function of its inputs.
// - Deterministic: the same inputs give the same bits on every run and for any thread count or
//   launch configuration: every reduction has a fixed order, no atomics in reductions (the
//   embedding backward included), cuBLAS with atomics disallowed.
// - cpu and cuda agree to floating-point tolerance (not bitwise: their reduction orders and
//   GEMM blocking differ).
//
// Errors: REQUIRES valid shapes (positive sizes, C % NH == 0, targets and tokens in [0, V)); the
// callers (tools/train) validate them up front. A cuda or cuBLAS failure throws
// std::runtime_error naming the kernel and the error; the engine reports a closure's throw
// naming the op. On a sim device kernels never run.
//
// Every kernel has a plain reference version (kernels/nn_reference.h) that tests compare with.
//
// Thread safety: reentrant; concurrent calls on different streams are safe.
#pragma once

#include <cstdint>

#include "kernels/device.h"

namespace ebb::nn {

// --- embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] ------------------------------------
void embedding_forward(const LaunchContext& ctx, float* out, const std::int32_t* tokens,
                       const float* wte, const float* wpe, int B, int T, int C, int V);
// dwte [V,C] and dwpe [T,C] overwritten: dwte[v] = sum over (b,t) with tokens[b,t] == v of
// dout[b,t] in (b,t) order; dwpe[t] = sum over b of dout[b,t] in b order.
void embedding_backward(const LaunchContext& ctx, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, int B, int T, int C, int V);

// --- layernorm over the last dimension (eps 1e-5); mean and rstd [N] saved for backward --------
void layernorm_forward(const LaunchContext& ctx, float* out, float* mean, float* rstd,
                       const float* inp, const float* weight, const float* bias, int N, int C);
void layernorm_backward(const LaunchContext& ctx, float* dinp, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C);

// --- matmul: out[N,OC] = inp[N,C] * weight[OC,C]^T + bias[OC] (bias may be null) -------------
void matmul_forward(const LaunchContext& ctx, float* out, const float* inp, const float* weight,
                    const float* bias, int N, int C, int OC);
// dinp [N,C], dweight [OC,C], dbias [OC] (dbias null when the forward had no bias).
void matmul_backward(const LaunchContext& ctx, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight, int N, int C,
                     int OC);

// --- GELU, tanh approximation (GPT-2's) --------------------------------------------------------
void gelu_forward(const LaunchContext& ctx, float* out, const float* inp, std::int64_t n);
void gelu_backward(const LaunchContext& ctx, float* dinp, const float* inp, const float* dout,
                   std::int64_t n);

// --- elementwise add: out = a + b (the residual, and sums of gradient contributions) ----------
void add(const LaunchContext& ctx, float* out, const float* a, const float* b, std::int64_t n);

// --- causal multi-head self-attention ---------------------------------------------------------
// qkv [B,T,3C] (q, k, v of head h at channels h*C/NH within each third); out [B,T,C];
// att [B,NH,T,T] the softmax probabilities (row t: entries > t are written as 0), saved for
// backward. Scale 1/sqrt(C/NH).
void attention_forward(const LaunchContext& ctx, float* out, float* att, const float* qkv, int B,
                       int T, int C, int NH);
// dqkv [B,T,3C] overwritten.
void attention_backward(const LaunchContext& ctx, float* dqkv, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH);

// --- fused softmax + cross-entropy -------------------------------------------------------------
// probs [N,V] = softmax(logits [N,V]); losses [N] = -log(probs[n, targets[n]]).
void softmax_cross_entropy_forward(const LaunchContext& ctx, float* losses, float* probs,
                                   const float* logits, const std::int32_t* targets, int N, int V);
// dlogits [N,V] = (probs - onehot(targets)) * dloss, where dloss is d(loss)/d(losses[n]) for
// every n (1/N for a mean loss).
void softmax_cross_entropy_backward(const LaunchContext& ctx, float* dlogits, const float* probs,
                                    const std::int32_t* targets, float dloss, int N, int V);
// out[0] = (sum of in[0..n) in a fixed order) / n: the mean loss.
void mean(const LaunchContext& ctx, float* out, const float* in, std::int64_t n);

// --- AdamW (decoupled weight decay, bias-corrected), one step, out of place -------------------
struct AdamWConfig {
  float learning_rate = 3e-4F;
  float beta1 = 0.9F;
  float beta2 = 0.999F;
  float eps = 1e-8F;
  float weight_decay = 0.0F;
};
// m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2; p' = p - lr (m'/(1-b1^step) /
// (sqrt(v'/(1-b2^step)) + eps) + wd p). `step` counts from 1.
void adamw(const LaunchContext& ctx, float* param_out, float* m_out, float* v_out,
           const float* param, const float* grad, const float* m, const float* v, std::int64_t n,
           const AdamWConfig& config, int step);

// --- casts: fp32 -> bf16 rounds to nearest even (NaN stays NaN); bf16 -> fp32 is exact --------
void cast_f32_to_bf16(const LaunchContext& ctx, std::uint16_t* out, const float* in,
                      std::int64_t n);
void cast_bf16_to_f32(const LaunchContext& ctx, float* out, const std::uint16_t* in,
                      std::int64_t n);

}  // namespace ebb::nn
