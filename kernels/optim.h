// optim: the optimizer and gradient-statistics kernels of ebb's mixed-precision training, over
// the flat buffers of one parameter's model state. One interface over the cpu and cuda backends,
// called from inside a Kernel (Stream::launch) with the LaunchContext it received, dispatching
// on ctx.kind as kernels/nn.h does: on cpu the work runs on the calling thread, parallel on TBB;
// on cuda it is enqueued on ctx.native_stream. Pointers are device pointers of that backend.
//
// Storage and arithmetic: parameters and gradients are stored as FloatType (fp32, bf16 or fp16);
// a load widens exactly, a store rounds to nearest even (a NaN stays a NaN). Everything is
// computed in fp32. Optimizer state (moments, accumulators, master weights) is fp32. A parameter
// stored in bf16 or fp16 has an fp32 master copy: the update is computed on the master and the
// parameter is then set to the master rounded. With fp32 parameters the master may be null, and
// the parameter itself is the master. The *_state_floats functions count an optimizer's own state
// for a rows x cols parameter (a vector is rows x 1), for the engine to size buffers and report
// bytes per parameter; the master (rows * cols floats where there is one) is not counted.
//
// Contracts every kernel keeps:
// - Updates are in place (param, master and state are read and written): these kernels are
//   never replayed by the engine, unlike those of kernels/nn.h.
// - Deterministic to the bit, and the same bits on every backend: each kernel's reductions
//   follow one fixed tree (stated at the kernel), which the reference (kernels/optim_reference.h),
//   the cpu and the cuda versions all follow, and the per-element formulas are one set of
//   functions (kernels/optim_scalar.h) that all three call. So thread counts and launch shapes
//   do not change a bit. Every sum starts at +0 and adds its terms one at a time in the order
//   given. Step constants that need pow are computed on the host, once, by one function.
// - Workspace: the kernels with reductions take a `workspace` of *_workspace_floats() floats of
//   the same backend's memory, owned by the caller, that they overwrite; they allocate nothing,
//   so every byte they touch is one the engine has planned. A workspace must not be shared by two
//   calls that can run at once (two streams).
//
// Errors: REQUIRES the pointers and sizes stated at each kernel (buffers do not overlap, sizes
// >= 1 unless stated). A precondition that is cheap to see broken (a null master for a bf16
// parameter, step < 1, a null workspace) throws std::invalid_argument naming the kernel; a cuda
// failure throws std::runtime_error naming the kernel.
//
// Thread safety: reentrant; concurrent calls on different streams are safe when they use
// different buffers.
#pragma once

#include <cstdint>
#include <string_view>

#include "kernels/device.h"
#include "kernels/nn.h"

namespace ebb::optim {

// The storage type of parameters and gradients: nn's, so that a tensor's FloatType means one
// thing across the kernels.
using FloatType = nn::FloatType;

// Elements per chunk of the chunked sums (grad_stats, and Adafactor's RMS over a vector).
inline constexpr std::int64_t kChunk = 4096;

// --- gradient statistics ------------------------------------------------------------------------
// out[0] = sum over i of (load(grad[i]) * inv_scale)^2; out[1] = the number of i whose grad[i]
// is an infinity or a NaN, as a float. Tree: chunks of kChunk consecutive elements (the last one
// shorter), each summed in index order, then the chunk sums in chunk order; out[1] likewise
// (exact up to 2^24). n may be 0 (out = {0, 0}). out is 2 floats of device memory.
std::int64_t grad_stats_workspace_floats(std::int64_t n);
void grad_stats(const LaunchContext& ctx, FloatType grad_t, const void* grad, std::int64_t n,
                float inv_scale, float* out, float* workspace);
// out[c] = sum over i in [0, k) of parts[2 i + c], in i order, for c = 0, 1: grad_stats of
// several tensors combined. k may be 0.
void combine_stats(const LaunchContext& ctx, const float* parts, int k, float* out);

// --- AdamW --------------------------------------------------------------------------------------
struct AdamWStep {
  float lr = 3e-4F;
  float beta1 = 0.9F;
  float beta2 = 0.999F;
  float eps = 1e-8F;
  float weight_decay = 0.0F;
  int step = 1;             // counts from 1
  float grad_scale = 1.0F;  // multiplies every gradient first: loss-scale and clipping factor
};
// Per element, g = load(grad) * grad_scale and x the master (or the fp32 parameter):
// m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g g; x' = x - lr (m'/c1 / (sqrt(v'/c2) + eps) + wd x)
// with c1 = 1 - b1^step, c2 = 1 - b2^step: the float operations of nn::adamw, in its order, so
// that fp32 parameters without a master and grad_scale 1 give nn::adamw's bits. Then
// param = round(x'). No reduction. m, v [n]; master [n] or null when param_t is kF32. n may be 0.
std::int64_t adamw_state_floats(std::int64_t rows, std::int64_t cols);  // m and v
void adamw(const LaunchContext& ctx, FloatType param_t, void* param, float* master, float* m,
           float* v, FloatType grad_t, const void* grad, std::int64_t n, const AdamWStep& s);

// --- Adafactor ----------------------------------------------------------------------------------
// Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost":
// Algorithm 4 (factored second moment) for a matrix, Algorithm 5's unfactored rule for a vector.
struct AdafactorStep {
  float lr = 1e-3F;            // the step size alpha when relative_step is false
  bool relative_step = false;  // alpha = max(eps2, RMS(X_{t-1})) * min(1e-2, 1/sqrt(t))
  float eps1 = 1e-30F;         // added to every squared gradient
  float eps2 = 1e-3F;          // floor of RMS(X) in the relative step
  float clip_d = 1.0F;         // update clipping threshold d
  float decay_pow = -0.8F;     // beta2hat_t = 1 - t^decay_pow
  float beta1 = 0.0F;          // first-moment decay; 0: no first moment (m unused)
  float weight_decay = 0.0F;   // decoupled, applied when > 0
  int step = 1;                // t, counts from 1
  float grad_scale = 1.0F;     // multiplies every gradient first
};
// A matrix has cols >= 2; cols == 1 is a vector of rows elements. With g = load(grad) *
// grad_scale, X the master (or the fp32 parameter), b = beta2hat_t:
// matrix: row[i] = b row[i] + (1-b) sum_j (g_ij^2 + eps1); col[j] = b col[j] + (1-b) sum_i
//   (g_ij^2 + eps1); S = sum_i row[i]; U_ij = g_ij / (sqrt(row[i] / S) sqrt(col[j])) (the paper's
//   g / sqrt(R C^T / S), with the square root taken of each factor so that the product cannot
//   underflow to 0 when a row and a column of the gradient are both zero).
// vector: v[i] = b v[i] + (1-b) (g_i^2 + eps1); U_i = g_i / sqrt(v[i]).
// Then Uhat = U / max(1, RMS(U) / clip_d); with beta1 > 0, m = beta1 m + (1-beta1) Uhat replaces
// Uhat; X = X - alpha (Uhat + wd X) (the wd term only when wd > 0, grouped as AdamW groups it);
// param = round(X). RMS(Y) = sqrt(sum(Y^2) / n).
// Trees: row sums over j in index order; column sums over i in index order; S over i in order;
// RMS(U) and RMS(X) of a matrix: per-row sums over j in order, then the rows in order; of a
// vector: chunks of kChunk as grad_stats.
// Buffers: row [rows] and col [cols] for a matrix (v null); v [rows] for a vector (row, col
// null); m [rows * cols] when beta1 > 0, else null; master as AdamW's. State starts at zero.
std::int64_t adafactor_state_floats(std::int64_t rows, std::int64_t cols, bool first_moment);
std::int64_t adafactor_workspace_floats(std::int64_t rows, std::int64_t cols);
void adafactor(const LaunchContext& ctx, FloatType param_t, void* param, float* master, float* row,
               float* col, float* v, float* m, FloatType grad_t, const void* grad,
               std::int64_t rows, std::int64_t cols, const AdafactorStep& s, float* workspace);

// --- SM3 ----------------------------------------------------------------------------------------
// SM3-II of Anil, Gupta, Koren & Singer 2019, "Memory-Efficient Adaptive Optimization", with the
// rows and the columns of a matrix as its cover sets.
struct Sm3Step {
  float lr = 0.1F;
  float momentum = 0.0F;      // 0: off (m unused); the paper's experiments use 0.9
  float weight_decay = 0.0F;  // decoupled, applied when > 0
  float grad_scale = 1.0F;    // multiplies every gradient first
};
// With g = load(grad) * grad_scale and X the master (or the fp32 parameter):
// matrix (cols >= 2): nu_ij = min(row[i], col[j]) + g_ij^2; then row[i] = max_j nu_ij and
//   col[j] = max_i nu_ij (from this step's nu, which reads the accumulators before the step).
// vector (cols == 1): nu_i = acc[i] + g_i^2; acc[i] = nu_i.
// Update u = g / sqrt(nu), and u = 0 where nu == 0 (a zero accumulator gives a zero update).
// With momentum > 0: m = momentum m + (1 - momentum) u, and m replaces u (the EMA form of the
// Trax implementation). X = X - lr (u + wd X) (the wd term only when wd > 0); param = round(X).
// Trees: row[i] folds j in index order and col[j] folds i in index order, from +0, keeping the
// larger of the two (a NaN nu is never kept). max is exact, so any order gives these bits.
// Buffers: row [rows], col [cols] for a matrix (acc null); acc [rows] for a vector (row, col
// null); m [rows * cols] when momentum > 0, else null. Accumulators start at zero.
std::int64_t sm3_state_floats(std::int64_t rows, std::int64_t cols, bool momentum);
std::int64_t sm3_workspace_floats(std::int64_t rows, std::int64_t cols);
void sm3(const LaunchContext& ctx, FloatType param_t, void* param, float* master, float* row,
         float* col, float* acc, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
         std::int64_t cols, const Sm3Step& s, float* workspace);

// --- backends -----------------------------------------------------------------------------------
// What the dispatchers above (kernels/optim.cc) call, after checking the preconditions: the cpu
// backend (kernels/cpu/optim_cpu.cc) on host memory, and the cuda backend
// (kernels/cuda/optim_cuda.cu, built with the CUDA backend only) enqueueing on `stream`, a
// cudaStream_t. Same arguments and contracts as above. Callers use the dispatchers.
namespace cpu {
// The vector instructions the cpu backend's element loops run with (kernels/cpu/optim_cpu_loops.h):
// each level gives the same bits, only the speed differs. Ordered: a level's instructions include
// those of the levels before it.
enum class SimdLevel : std::uint8_t {
  kScalar,  // no vector instructions: the fallback
  kAvx2,    // 256-bit: avx2
  kAvx512,  // 512-bit: avx512f, avx512bw and avx512vl
};
// The highest level this CPU (and its OS) supports, by __builtin_cpu_supports.
SimdLevel detected_simd_level();
// The level in use: at first use, the environment variable EBB_CPU_SIMD (scalar, avx2 or avx512)
// when set and not empty, else detected_simd_level(); either way at most the detected level.
// Throws std::invalid_argument when EBB_CPU_SIMD is set to another word. Thread-safe.
SimdLevel simd_level();
// Sets the level in use to min(level, detected_simd_level()), for tests and benchmarks; a kernel
// already running keeps the level it started with. Thread-safe.
void set_simd_level(SimdLevel level);
// "scalar", "avx2" or "avx512"; throws std::invalid_argument for a value outside the enum.
std::string_view simd_level_name(SimdLevel level);

void grad_stats(FloatType grad_t, const void* grad, std::int64_t n, float inv_scale, float* out,
                float* workspace);
void combine_stats(const float* parts, int k, float* out);
void adamw(FloatType param_t, void* param, float* master, float* m, float* v, FloatType grad_t,
           const void* grad, std::int64_t n, const AdamWStep& s);
void adafactor(FloatType param_t, void* param, float* master, float* row, float* col, float* v,
               float* m, FloatType grad_t, const void* grad, std::int64_t rows, std::int64_t cols,
               const AdafactorStep& s, float* workspace);
void sm3(FloatType param_t, void* param, float* master, float* row, float* col, float* acc,
         float* m, FloatType grad_t, const void* grad, std::int64_t rows, std::int64_t cols,
         const Sm3Step& s, float* workspace);
}  // namespace cpu

namespace cuda {
void grad_stats(void* stream, FloatType grad_t, const void* grad, std::int64_t n, float inv_scale,
                float* out, float* workspace);
void combine_stats(void* stream, const float* parts, int k, float* out);
void adamw(void* stream, FloatType param_t, void* param, float* master, float* m, float* v,
           FloatType grad_t, const void* grad, std::int64_t n, const AdamWStep& s);
void adafactor(void* stream, FloatType param_t, void* param, float* master, float* row, float* col,
               float* v, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
               std::int64_t cols, const AdafactorStep& s, float* workspace);
void sm3(void* stream, FloatType param_t, void* param, float* master, float* row, float* col,
         float* acc, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
         std::int64_t cols, const Sm3Step& s, float* workspace);
}  // namespace cuda

}  // namespace ebb::optim
