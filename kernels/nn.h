// nn: the compute kernels of ebb's reference trainer (a GPT-2-style decoder), one interface over
// the cpu and cuda backends. Each function is called from inside a Kernel (Stream::launch) with
// the LaunchContext it received, and dispatches on ctx.kind: on cpu it does the work on the
// calling thread (the stream's worker), parallel on TBB; on cuda it enqueues device work on
// ctx.native_stream and returns. Pointers are device pointers of that backend.
//
// Layouts are row-major, as llm.c's: B batch, T sequence, C channels, NH heads, V vocabulary,
// N rows (B*T), OC output channels.
//
// Storage types (mixed precision). Every GPT kernel takes a FloatType `t` right after the
// LaunchContext: the storage type of its activations, activation gradients and parameters,
// which are passed as void* and hold fp32, bf16 or fp16 elements. Whatever `t` is, these stay
// fp32 (float*): layernorm's mean and rstd, the per-row cross-entropy `losses`, the `mean`
// kernel's input and output, and every weight and bias gradient (matmul and layernorm dweight
// and dbias, embedding dwte and dwpe), so that gradients are summed and kept at full precision.
// Token ids and targets are int32. Arithmetic: each 16-bit value is widened exactly to float,
// the kernel computes exactly as it does for fp32 (same operations, same order, fp32
// accumulators, fp32 intermediates such as the attention and softmax rows before they are
// stored), and each stored 16-bit result is rounded once, to nearest even. So a 16-bit kernel
// gives the bits of the fp32 kernel run on the widened inputs, with its 16-bit outputs rounded;
// with t == kF32 the kernels are the fp32 kernels, bit for bit.
//
// Contracts every kernel keeps:
// - Outputs are written in full and never accumulated into (a backward kernel overwrites its
//   gradient outputs), and inputs are never written: the engine replays kernels to recompute
//   dropped tensors, so a kernel must be a pure function of its inputs. The one exception is
//   `accumulate`, which reads and writes `acc`: it adds gradients into model-state buffers
//   (gradient accumulation across micro-batches), which the engine never drops or replays.
// - Deterministic: the same inputs give the same bits on every run and for any thread count or
//   launch configuration: every reduction has a fixed order, no atomics in reductions (the
//   embedding backward included), cuBLAS with atomics disallowed and its 16-bit GEMMs reducing
//   in fp32 (CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION).
// - cpu and cuda agree to floating-point tolerance (not bitwise: their reduction orders and
//   GEMM blocking differ; in 16-bit, to one 16-bit ulp more, where a value near a rounding
//   boundary rounds to the other neighbour).
//
// Errors: REQUIRES valid shapes (positive sizes, C % NH == 0, targets and tokens in [0, V)); the
// callers (tools/train) validate them up front. A cuda or cuBLAS failure throws
// std::runtime_error naming the kernel and the error; the engine reports a closure's throw
// naming the op. The cuda attention kernels in 16-bit have two limits of their own, thrown as
// such an error: the forward keeps a float row of T scores per warp in shared memory (T up to
// about 7000 on an H100, 5000 on an A100), and the backward parks a float per row in two 16-bit
// elements of dqkv, so it needs C / NH >= 2. On a sim device kernels never run.
//
// Every kernel has a plain reference version (kernels/nn_reference.h) that tests compare with.
//
// Thread safety: reentrant; concurrent calls on different streams are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kernels/device.h"

namespace ebb::nn {

// The storage type of a kernel's floating-point tensors (see the file comment).
enum class FloatType : std::uint8_t { kF32, kBF16, kF16 };

// Bytes per element: 4, 2, 2.
std::size_t float_bytes(FloatType t);
// "f32", "bf16", "f16" (the names of the engine's DTypes of the same formats).
std::string_view float_type_name(FloatType t);

// --- embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] ------------------------------------
void embedding_forward(const LaunchContext& ctx, FloatType t, void* out, const std::int32_t* tokens,
                       const void* wte, const void* wpe, int B, int T, int C, int V);
// dwte [V,C] and dwpe [T,C] (fp32) overwritten: dwte[v] = sum over (b,t) with tokens[b,t] == v
// of dout[b,t] in (b,t) order; dwpe[t] = sum over b of dout[b,t] in b order.
void embedding_backward(const LaunchContext& ctx, FloatType t, float* dwte, float* dwpe,
                        const void* dout, const std::int32_t* tokens, int B, int T, int C, int V);

// --- layernorm over the last dimension (eps 1e-5); mean and rstd [N] (fp32) saved for backward --
void layernorm_forward(const LaunchContext& ctx, FloatType t, void* out, float* mean, float* rstd,
                       const void* inp, const void* weight, const void* bias, int N, int C);
// dinp [N,C] in t; dweight and dbias [C] fp32.
void layernorm_backward(const LaunchContext& ctx, FloatType t, void* dinp, float* dweight,
                        float* dbias, const void* dout, const void* inp, const void* weight,
                        const float* mean, const float* rstd, int N, int C);

// --- matmul: out[N,OC] = inp[N,C] * weight[OC,C]^T + bias[OC] (bias may be null) -------------
// The products are summed in fp32 and the bias added in fp32; a 16-bit out is rounded once.
void matmul_forward(const LaunchContext& ctx, FloatType t, void* out, const void* inp,
                    const void* weight, const void* bias, int N, int C, int OC);
// dinp [N,C] in t; dweight [OC,C] and dbias [OC] fp32 (dbias null when the forward had no bias).
void matmul_backward(const LaunchContext& ctx, FloatType t, void* dinp, float* dweight,
                     float* dbias, const void* dout, const void* inp, const void* weight, int N,
                     int C, int OC);

// --- GELU, tanh approximation (GPT-2's) --------------------------------------------------------
void gelu_forward(const LaunchContext& ctx, FloatType t, void* out, const void* inp,
                  std::int64_t n);
void gelu_backward(const LaunchContext& ctx, FloatType t, void* dinp, const void* inp,
                   const void* dout, std::int64_t n);

// --- elementwise add: out = a + b (the residual, and sums of gradient contributions) ----------
void add(const LaunchContext& ctx, FloatType t, void* out, const void* a, const void* b,
         std::int64_t n);

// --- causal multi-head self-attention ---------------------------------------------------------
// qkv [B,T,3C] (q, k, v of head h at channels h*C/NH within each third); out [B,T,C];
// att [B,NH,T,T] (in t) the softmax probabilities (row t: entries > t are written as 0), saved
// for backward. Scale 1/sqrt(C/NH).
void attention_forward(const LaunchContext& ctx, FloatType t, void* out, void* att, const void* qkv,
                       int B, int T, int C, int NH);
// dqkv [B,T,3C] (in t) overwritten.
void attention_backward(const LaunchContext& ctx, FloatType t, void* dqkv, const void* dout,
                        const void* qkv, const void* att, int B, int T, int C, int NH);

// --- fused softmax + cross-entropy -------------------------------------------------------------
// probs [N,V] (in t) = softmax(logits [N,V]); losses [N] (fp32) = -log(probs[n, targets[n]]),
// from the fp32 probability before probs is rounded.
void softmax_cross_entropy_forward(const LaunchContext& ctx, FloatType t, float* losses,
                                   void* probs, const void* logits, const std::int32_t* targets,
                                   int N, int V);
// dlogits [N,V] (in t) = (probs - onehot(targets)) * dloss, where dloss is d(loss)/d(losses[n])
// for every n (1/N for a mean loss).
void softmax_cross_entropy_backward(const LaunchContext& ctx, FloatType t, void* dlogits,
                                    const void* probs, const std::int32_t* targets, float dloss,
                                    int N, int V);
// out[0] = (sum of in[0..n) in a fixed order) / n: the mean loss. in and out are fp32 whatever
// `t` (the storage type of the model whose per-row losses are averaged) is.
void mean(const LaunchContext& ctx, FloatType t, float* out, const float* in, std::int64_t n);

// --- AdamW (decoupled weight decay, bias-corrected), one step, out of place, fp32 -------------
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

// --- storage conversions -----------------------------------------------------------------------
// out[i] (in `to`) = in[i] (in `from`), n elements. Widening is exact; narrowing rounds to
// nearest even (subnormals included), a NaN stays a quiet NaN with its sign, fp16 overflows to
// +-inf; between the two 16-bit types the value is widened exactly and rounded once; the same
// type is a copy. REQUIRES: out and in do not overlap.
void cast(const LaunchContext& ctx, FloatType to, void* out, FloatType from, const void* in,
          std::int64_t n);

// acc[i] (in t) = assign ? round_t(add[i]) : round_t(acc[i] + add[i]), the sum in fp32: adds a
// gradient into a model-state buffer, or (assign) starts one. The one kernel that writes memory
// it reads (see the contracts above): never replayed. REQUIRES: acc and add do not overlap.
void accumulate(const LaunchContext& ctx, FloatType t, void* acc, const float* add, std::int64_t n,
                bool assign);

// out[i] (in t) = round_t((in[0][i] + in[1][i] + ... + in[chunks-1][i]) / divisor), where chunk c
// starts `stride` elements after chunk c-1: the sum in fp32, chunk after chunk in order, then one
// division and one rounding. ZeRO's reduction of the chunks that every rank sent this one
// (engine/zero/): a fixed order, so the same bits whatever the ranks' library does. With one
// chunk and divisor 1 it is a copy. REQUIRES: out does not overlap in; divisor > 0.
void fold_chunks(const LaunchContext& ctx, FloatType t, void* out, const void* in, int chunks,
                 std::int64_t stride, std::int64_t n, float divisor);

}  // namespace ebb::nn
