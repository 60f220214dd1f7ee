// The cuda backend of kernels/optim.h. Every function enqueues a few kernels on the stream and
// returns. The bits are the reference's (kernels/optim_reference.h) for any launch shape,
// because the kernels follow optim.h's trees exactly and compute each element with the shared
// formulas of kernels/optim_scalar.h, compiled with --fmad=false (kernels/cuda/CMakeLists.txt)
// and with IEEE division and square root (nvcc's defaults; never --use_fast_math here), and
// load and store with the integer conversions of kernels/cuda/nn_cuda_float.h, which give
// kernels/nn_scalar.h's bits:
// - a sum over a segment (a chunk of kChunk, or a row) is folded by one thread, in index order.
//   A warp owns 32 segments and walks them together in 32-element steps, staging a 32 x 32 tile
//   in shared memory so that its loads are coalesced (segment_fold_kernel);
// - a sum or max over the rows of a column is folded by one thread per column, which reads a
//   row of consecutive columns per step across the block (column_fold_kernel);
// - the last level (chunk or row partials, or row[] itself) is added in order by one thread,
//   which a block feeds through shared memory (ordered_sum_kernel). The scalars it produces
//   (alpha, sum(row), the clip divisor) stay in the workspace, where the next kernels read them.
// No atomics, no warp shuffles in sums. Grid-stride loops with 64-bit indices cover any n. The
// kernels are instantiated per storage type of the parameter and of the gradient.
//
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/nn_cuda_float.h"
#include "kernels/cuda/nn_cuda_launch.h"
#include "kernels/optim.h"
#include "kernels/optim_scalar.h"

namespace ebb::optim::cuda {
namespace {

using nn::cuda::check_call;
using nn::cuda::check_launch;
using nn::cuda::from_float;
using nn::cuda::grid_for;
using nn::cuda::kBlockThreads;
using nn::cuda::kWarpsPerBlock;
using nn::cuda::kWarpThreads;
using nn::cuda::to_float;

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// std::min is constexpr host code, which device code may not call without relaxed constexpr.
__host__ __device__ std::int64_t smaller(std::int64_t a, std::int64_t b) { return b < a ? b : a; }

__device__ float* element_or_null(float* m, std::int64_t i) {
  return m != nullptr ? m + i : nullptr;
}

// A parameter's X (the master, or the fp32 parameter itself) as kernels read and write it. P is
// the parameter's storage type (float, __nv_bfloat16 or __half: kernels/cuda/nn_cuda_float.h).
template <typename P>
struct Weights {
  P* param;
  float* master;

  __device__ float x(std::int64_t i) const {
    return master != nullptr ? master[i] : to_float(param[i]);
  }
  __device__ void set_x(std::int64_t i, float value) const {
    if (master != nullptr) master[i] = value;
    param[i] = from_float<P>(value);
  }
};

// A gradient of storage type G, scaled as it is loaded.
template <typename G>
struct Gradient {
  const G* grad;
  float scale;

  __device__ float g(std::int64_t i) const { return to_float(grad[i]) * scale; }
};

// fn(weights, gradient) with the Weights and the Gradient of the storage types param_t and
// grad_t; the ops below are templated on those two types (W and Gr).
template <typename Fn>
void with_parameter(FloatType param_t, void* param, float* master, FloatType grad_t,
                    const void* grad, float grad_scale, const Fn& fn) {
  nn::cuda::with_storage(param_t, [&](auto p) {
    using P = typename decltype(p)::type;
    nn::cuda::with_storage(grad_t, [&](auto g) {
      using G = typename decltype(g)::type;
      fn(Weights<P>{static_cast<P*>(param), master},
         Gradient<G>{static_cast<const G*>(grad), grad_scale});
    });
  });
}

// --- the three shapes of reduction, and the elementwise loop ------------------------------------

// Segment k covers elements [k * length, min((k + 1) * length, n)) of a flat buffer; for each,
// op.store(k, acc) gets acc = op.fold(...op.fold(op.init(), t_0)..., t_last) with
// t_e = op.term(k, e, k * length + e), folded in e order by one thread. Every term is computed
// exactly once, by the lane that loads it into the tile, so a term may also write its element.
// Launch: kBlockThreads threads, one warp per 32 segments.
template <typename Op>
__global__ void segment_fold_kernel(Op op, std::int64_t segments, std::int64_t length,
                                    std::int64_t n) {
  __shared__ float tile[kWarpsPerBlock][kWarpThreads][kWarpThreads + 1];  // +1: no bank conflicts
  const int warp = static_cast<int>(threadIdx.x) / kWarpThreads;
  const int lane = static_cast<int>(threadIdx.x) % kWarpThreads;
  const std::int64_t first = (std::int64_t{blockIdx.x} * kWarpsPerBlock + warp) * kWarpThreads;
  if (first >= segments) return;  // the whole warp: only __syncwarp below
  const std::int64_t mine = first + lane;
  const std::int64_t my_length = mine < segments ? smaller(length, n - mine * length) : 0;
  auto acc = op.init();
  for (std::int64_t offset = 0; offset < length; offset += kWarpThreads) {
    for (int r = 0; r < kWarpThreads; r++) {
      const std::int64_t segment = first + r;
      const std::int64_t e = offset + lane;
      const std::int64_t index = segment * length + e;
      if (segment < segments && e < length && index < n) {
        tile[warp][r][lane] = op.term(segment, e, index);
      }
    }
    __syncwarp();
    const std::int64_t valid = smaller(kWarpThreads, my_length - offset);
    for (int e = 0; e < valid; e++) acc = op.fold(acc, tile[warp][lane][e]);
    __syncwarp();
  }
  if (mine < segments) op.store(mine, acc);
}

// For each column j of a rows x cols matrix: op.store(j, acc), acc folded from op.init() with
// op.term(i, j) for i in index order. One thread per column.
template <typename Op>
__global__ void column_fold_kernel(Op op, std::int64_t rows, std::int64_t cols) {
  const std::int64_t j = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float acc = op.init();
  for (std::int64_t i = 0; i < rows; i++) acc = op.fold(acc, op.term(i, j));
  op.store(j, acc);
}

// finish(total) with total[c] = parts[c] + parts[kWidth + c] + ... (count terms, from +0, in
// order), for c < kWidth. One block: it stages kBlockThreads terms at a time in shared memory
// for thread 0 to add.
template <int kWidth, typename Finish>
__global__ void ordered_sum_kernel(const float* parts, std::int64_t count, Finish finish) {
  __shared__ float staged[kBlockThreads][kWidth];
  float total[kWidth] = {};
  for (std::int64_t base = 0; base < count; base += kBlockThreads) {
    const std::int64_t i = base + threadIdx.x;
    if (i < count) {
      for (int c = 0; c < kWidth; c++) staged[threadIdx.x][c] = parts[i * kWidth + c];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const std::int64_t staged_count = smaller(kBlockThreads, count - base);
      for (std::int64_t k = 0; k < staged_count; k++) {
        for (int c = 0; c < kWidth; c++) total[c] += staged[k][c];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) finish(total);
}

template <typename Op>
__global__ void elementwise_kernel(Op op, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    op(i);
  }
}

template <typename Op>
void launch_segments(cudaStream_t stream, const Op& op, std::int64_t segments, std::int64_t length,
                     std::int64_t n, const char* kernel) {
  const std::int64_t per_block = std::int64_t{kWarpsPerBlock} * kWarpThreads;
  const auto blocks = static_cast<unsigned int>((segments + per_block - 1) / per_block);
  segment_fold_kernel<<<blocks, kBlockThreads, 0, stream>>>(op, segments, length, n);
  check_launch(kernel);
}

template <typename Op>
void launch_columns(cudaStream_t stream, const Op& op, std::int64_t rows, std::int64_t cols,
                    const char* kernel) {
  const auto blocks = static_cast<unsigned int>((cols + kBlockThreads - 1) / kBlockThreads);
  column_fold_kernel<<<blocks, kBlockThreads, 0, stream>>>(op, rows, cols);
  check_launch(kernel);
}

template <int kWidth, typename Finish>
void launch_ordered_sum(cudaStream_t stream, const float* parts, std::int64_t count,
                        const Finish& finish, const char* kernel) {
  ordered_sum_kernel<kWidth><<<1, kBlockThreads, 0, stream>>>(parts, count, finish);
  check_launch(kernel);
}

template <typename Op>
void launch_elementwise(cudaStream_t stream, const Op& op, std::int64_t n, const char* kernel) {
  if (n <= 0) return;
  elementwise_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(op, n);
  check_launch(kernel);
}

// --- the ops ------------------------------------------------------------------------------------

// Finish: out[c] = total[c].
template <int kWidth>
struct StoreTotals {
  float* out;
  __device__ void operator()(const float* total) const {
    for (int c = 0; c < kWidth; c++) out[c] = total[c];
  }
};

template <typename G>
struct GradStatsChunk {
  const G* grad;
  float inv_scale;
  float* partial;  // [chunks][2]

  __device__ float2 init() const { return {0.0F, 0.0F}; }
  __device__ float term(std::int64_t, std::int64_t, std::int64_t i) const {
    return to_float(grad[i]);
  }
  __device__ float2 fold(float2 acc, float x) const {
    const float scaled = x * inv_scale;
    acc.x += scaled * scaled;
    acc.y += isfinite(x) ? 0.0F : 1.0F;
    return acc;
  }
  __device__ void store(std::int64_t chunk, float2 acc) const {
    partial[2 * chunk] = acc.x;
    partial[2 * chunk + 1] = acc.y;
  }
};

// A sum of float terms: the base of the ops below that sum.
struct Sum {
  __device__ float init() const { return 0.0F; }
  __device__ float fold(float acc, float term) const { return acc + term; }
};

// x^2 of every element, summed per segment into partial[segment].
template <typename W>
struct SquaresOfX : Sum {
  W w;
  float* partial;
  __device__ float term(std::int64_t, std::int64_t, std::int64_t i) const {
    return w.x(i) * w.x(i);
  }
  __device__ void store(std::int64_t segment, float sum) const { partial[segment] = sum; }
};

// Finish: scalars[kAdafactorAlpha] = the relative step from sum(X^2).
struct FinishAlpha {
  float* scalars;
  std::int64_t n;
  AdafactorStep s;
  AdafactorConstants k;
  __device__ void operator()(const float* total) const {
    scalars[kAdafactorAlpha] = adafactor_alpha(root_mean(total[0], n), s, k);
  }
};

// Finish: scalars[kAdafactorClipDivisor] from sum(U^2).
struct FinishClip {
  float* scalars;
  std::int64_t n;
  AdafactorStep s;
  __device__ void operator()(const float* total) const {
    scalars[kAdafactorClipDivisor] = adafactor_clip_divisor(root_mean(total[0], n), s);
  }
};

// row[i] = decay(row[i], sum over j of (g^2 + eps1)).
template <typename Gr>
struct AdafactorRows : Sum {
  Gr g;
  float* row;
  AdafactorStep s;
  AdafactorConstants k;
  __device__ float term(std::int64_t, std::int64_t, std::int64_t i) const {
    return adafactor_square(g.g(i), s);
  }
  __device__ void store(std::int64_t i, float sum) const {
    row[i] = adafactor_decay(row[i], sum, k);
  }
};

// col[j] = decay(col[j], sum over i of (g^2 + eps1)).
template <typename Gr>
struct AdafactorCols : Sum {
  Gr g;
  float* col;
  std::int64_t cols;
  AdafactorStep s;
  AdafactorConstants k;
  __device__ float term(std::int64_t i, std::int64_t j) const {
    return adafactor_square(g.g(i * cols + j), s);
  }
  __device__ void store(std::int64_t j, float sum) const {
    col[j] = adafactor_decay(col[j], sum, k);
  }
};

// U of a matrix element, from row[], col[] and sum(row) in the workspace.
template <typename Gr>
struct FactoredU {
  Gr g;
  const float* row;
  const float* col;
  const float* scalars;
  std::int64_t cols;
  __device__ float operator()(std::int64_t i) const {
    return adafactor_factored_u(g.g(i), row[i / cols], scalars[kAdafactorRowTotal], col[i % cols]);
  }
};

// U of a vector element, from v[] after the step.
template <typename Gr>
struct VectorU {
  Gr g;
  const float* v;
  __device__ float operator()(std::int64_t i) const { return adafactor_vector_u(g.g(i), v[i]); }
};

// U^2 of a matrix, summed per row into partial[row].
template <typename Gr>
struct FactoredUSquares : Sum {
  FactoredU<Gr> u;
  float* partial;
  __device__ float term(std::int64_t, std::int64_t, std::int64_t i) const {
    const float value = u(i);
    return value * value;
  }
  __device__ void store(std::int64_t i, float sum) const { partial[i] = sum; }
};

// A vector's v[i] = decay(v[i], g^2 + eps1), then U^2 summed per chunk into partial[chunk].
template <typename Gr>
struct VectorUSquares : Sum {
  Gr g;
  float* v;
  AdafactorStep s;
  AdafactorConstants k;
  float* partial;
  __device__ float term(std::int64_t, std::int64_t, std::int64_t i) const {
    v[i] = adafactor_decay(v[i], adafactor_square(g.g(i), s), k);
    const float u = adafactor_vector_u(g.g(i), v[i]);
    return u * u;
  }
  __device__ void store(std::int64_t chunk, float sum) const { partial[chunk] = sum; }
};

// The update of every element, with U from u_of (FactoredU or VectorU), and alpha and the clip
// divisor from the workspace.
template <typename W, typename UOf>
struct AdafactorUpdate {
  W w;
  UOf u_of;
  float* m;
  const float* scalars;
  AdafactorStep s;
  __device__ void operator()(std::int64_t i) const {
    const float alpha = s.relative_step ? scalars[kAdafactorAlpha] : s.lr;
    float x = w.x(i);
    adafactor_element(u_of(i), scalars[kAdafactorClipDivisor], alpha, x, element_or_null(m, i), s);
    w.set_x(i, x);
  }
};

template <typename W, typename Gr>
struct AdamWUpdate {
  W w;
  Gr g;
  float* m;
  float* v;
  AdamWStep s;
  AdamWConstants k;
  __device__ void operator()(std::int64_t i) const {
    float x = w.x(i);
    adamw_element(g.g(i), x, m[i], v[i], s, k);
    w.set_x(i, x);
  }
};

// The max of SM3's nu: from +0, never keeping a NaN.
struct Max {
  __device__ float init() const { return 0.0F; }
  __device__ float fold(float acc, float nu) const { return sm3_max(acc, nu); }
};

// Per row: the update of each element from its nu, and the row's max nu into new_row[i].
template <typename W, typename Gr>
struct Sm3Rows : Max {
  W w;
  Gr g;
  const float* row;
  const float* col;
  float* m;
  Sm3Step s;
  float* new_row;
  __device__ float term(std::int64_t i, std::int64_t j, std::int64_t e) const {
    const float grad = g.g(e);
    const float nu = sm3_nu(row[i], col[j], grad);
    float x = w.x(e);
    sm3_element(grad, nu, x, element_or_null(m, e), s);
    w.set_x(e, x);
    return nu;
  }
  __device__ void store(std::int64_t i, float max) const { new_row[i] = max; }
};

// Per column: the column's max nu into col[j], from the accumulators before the step (only this
// thread reads col[j]; row[] is replaced after this kernel).
template <typename Gr>
struct Sm3Cols : Max {
  Gr g;
  const float* row;
  float* col;
  std::int64_t cols;
  __device__ float term(std::int64_t i, std::int64_t j) const {
    return sm3_nu(row[i], col[j], g.g(i * cols + j));
  }
  __device__ void store(std::int64_t j, float max) const { col[j] = max; }
};

template <typename W, typename Gr>
struct Sm3VectorUpdate {
  W w;
  Gr g;
  float* acc;
  float* m;
  Sm3Step s;
  __device__ void operator()(std::int64_t i) const {
    const float grad = g.g(i);
    const float nu = sm3_vector_nu(acc[i], grad);
    acc[i] = nu;
    float x = w.x(i);
    sm3_element(grad, nu, x, element_or_null(m, i), s);
    w.set_x(i, x);
  }
};

}  // namespace

void grad_stats(void* stream, FloatType grad_t, const void* grad, std::int64_t n, float inv_scale,
                float* out, float* workspace) {
  const cudaStream_t st = as_stream(stream);
  const std::int64_t chunks = chunk_count(n);
  if (chunks > 0) {
    nn::cuda::with_storage(grad_t, [&](auto tag) {
      using G = typename decltype(tag)::type;
      const GradStatsChunk<G> op{static_cast<const G*>(grad), inv_scale, workspace};
      launch_segments(st, op, chunks, kChunk, n, "optim::grad_stats (chunks)");
    });
  }
  launch_ordered_sum<2>(st, workspace, chunks, StoreTotals<2>{out}, "optim::grad_stats (total)");
}

void combine_stats(void* stream, const float* parts, int k, float* out) {
  launch_ordered_sum<2>(as_stream(stream), parts, k, StoreTotals<2>{out}, "optim::combine_stats");
}

void adamw(void* stream, FloatType param_t, void* param, float* master, float* m, float* v,
           FloatType grad_t, const void* grad, std::int64_t n, const AdamWStep& s) {
  const AdamWConstants k = adamw_constants(s);
  with_parameter(param_t, param, master, grad_t, grad, s.grad_scale, [&](auto w, auto g) {
    const AdamWUpdate<decltype(w), decltype(g)> op{w, g, m, v, s, k};
    launch_elementwise(as_stream(stream), op, n, "optim::adamw");
  });
}

void adafactor(void* stream, FloatType param_t, void* param, float* master, float* row, float* col,
               float* v, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
               std::int64_t cols, const AdafactorStep& s, float* workspace) {
  const cudaStream_t st = as_stream(stream);
  const AdafactorConstants k = adafactor_constants(s);
  const std::int64_t n = rows * cols;
  float* scalars = workspace;
  float* partial = workspace + kAdafactorScalarFloats;
  const bool vector = cols == 1;
  // A matrix's sums run per row; a vector's per chunk.
  const std::int64_t segments = vector ? chunk_count(n) : rows;
  const std::int64_t length = vector ? kChunk : cols;
  with_parameter(param_t, param, master, grad_t, grad, s.grad_scale, [&](auto w, auto g) {
    using W = decltype(w);
    using Gr = decltype(g);
    if (s.relative_step) {
      launch_segments(st, SquaresOfX<W>{{}, w, partial}, segments, length, n,
                      "optim::adafactor (RMS of X)");
      launch_ordered_sum<1>(st, partial, segments, FinishAlpha{scalars, n, s, k},
                            "optim::adafactor (alpha)");
    }
    if (vector) {
      launch_segments(st, VectorUSquares<Gr>{{}, g, v, s, k, partial}, segments, length, n,
                      "optim::adafactor (v, RMS of U)");
    } else {
      launch_segments(st, AdafactorRows<Gr>{{}, g, row, s, k}, rows, cols, n,
                      "optim::adafactor (rows)");
      launch_columns(st, AdafactorCols<Gr>{{}, g, col, cols, s, k}, rows, cols,
                     "optim::adafactor (columns)");
      launch_ordered_sum<1>(st, row, rows, StoreTotals<1>{scalars + kAdafactorRowTotal},
                            "optim::adafactor (sum of rows)");
      launch_segments(st, FactoredUSquares<Gr>{{}, {g, row, col, scalars, cols}, partial}, rows,
                      cols, n, "optim::adafactor (RMS of U)");
    }
    launch_ordered_sum<1>(st, partial, segments, FinishClip{scalars, n, s},
                          "optim::adafactor (clip)");
    if (vector) {
      const AdafactorUpdate<W, VectorU<Gr>> op{w, {g, v}, m, scalars, s};
      launch_elementwise(st, op, n, "optim::adafactor (update)");
    } else {
      const AdafactorUpdate<W, FactoredU<Gr>> op{w, {g, row, col, scalars, cols}, m, scalars, s};
      launch_elementwise(st, op, n, "optim::adafactor (update)");
    }
  });
}

void sm3(void* stream, FloatType param_t, void* param, float* master, float* row, float* col,
         float* acc, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
         std::int64_t cols, const Sm3Step& s, float* workspace) {
  const cudaStream_t st = as_stream(stream);
  with_parameter(param_t, param, master, grad_t, grad, s.grad_scale, [&](auto w, auto g) {
    using W = decltype(w);
    using Gr = decltype(g);
    if (cols == 1) {
      launch_elementwise(st, Sm3VectorUpdate<W, Gr>{w, g, acc, m, s}, rows, "optim::sm3");
      return;
    }
    launch_segments(st, Sm3Rows<W, Gr>{{}, w, g, row, col, m, s, workspace}, rows, cols,
                    rows * cols, "optim::sm3 (rows)");
    launch_columns(st, Sm3Cols<Gr>{{}, g, row, col, cols}, rows, cols, "optim::sm3 (columns)");
  });
  if (cols == 1) return;
  check_call(cudaMemcpyAsync(row, workspace, rows * sizeof(float), cudaMemcpyDeviceToDevice, st),
             "optim::sm3", "cudaMemcpyAsync");
}

}  // namespace ebb::optim::cuda
