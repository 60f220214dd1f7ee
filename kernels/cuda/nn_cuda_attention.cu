// The cuda backend of kernels/nn.h, attention part: causal multi-head self-attention forward
// and backward as plain warp-per-row kernels, chosen for being obviously correct and
// deterministic rather than fast (no tiling, no tensor cores).
//
// Forward, one warp per query row (b, h, t): scores into the att row, softmax in place (lanes
// own strided columns, warp_max/warp_sum combine them), then out = att * V with lanes owning
// head dimensions and walking the keys in order.
//
// Backward without atomics or temporaries, three kernels in stream order, each output element
// owned by one thread that sums in a fixed order:
//   1. per query row t: D[t] = sum_t2 P[t,t2] dP[t,t2] (dP = dO[t].v[t2]) and
//      dq[t] = scale sum_t2 dS[t,t2] k[t2], dS = P (dP - D). D is parked in the first float of
//      the row's dv slot in dqkv, which kernel 3 overwrites later.
//   2. per key row t2: dk[t2] = scale sum_{t>=t2} dS[t,t2] q[t], reading D from the park.
//   3. per key row t2: dv[t2] = sum_{t>=t2} P[t,t2] dO[t] (overwrites the parked D).
// dP is recomputed where needed (a dot product of head size) instead of stored.
//
// 16-bit storage (templates on S, nn_cuda_float.h): the forward's row of scores and
// probabilities, which it reads back, is a float row in shared memory (one per warp, T floats)
// instead of the att row, which gets the final probabilities rounded; out is summed from the
// float probabilities. The backward parks D's float bits in the first two 16-bit elements of the
// dv slot (so it needs a head size of at least 2). Everything else loads with to_float, sums in
// float and rounds only what it stores.
//
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/nn_cuda.h"
#include "kernels/cuda/nn_cuda_float.h"
#include "kernels/cuda/nn_cuda_launch.h"

namespace ebb::nn::cuda {
namespace {

constexpr unsigned int kFullMask = 0xffffffffU;
// Head dimensions a lane accumulates at once: a pass covers kWarpThreads * kDimsPerLane of
// them (128); larger heads take several passes.
constexpr int kDimsPerLane = 4;

// Where row (b, t2) of head h lives in the [B, T, 3C] qkv (and dqkv) tensor; part 0 q, 1 k,
// 2 v.
struct QkvLayout {
  int T, C, hs;
  __device__ std::int64_t at(int b, int t, int h, int part) const {
    return (std::int64_t{b} * T + t) * 3 * C + std::int64_t{part} * C + std::int64_t{h} * hs;
  }
  // Where row (b, t) of head h lives in a [B, T, C] tensor (out, dout).
  __device__ std::int64_t out_at(int b, int t, int h) const {
    return (std::int64_t{b} * T + t) * C + std::int64_t{h} * hs;
  }
};

// The row of the [B, NH, T] grid a warp owns, row == (b * NH + h) * T + t, and the caller's
// lane in the warp.
struct WarpRow {
  std::int64_t row;
  int lane;
  int b, h, t;
};

// The calling warp's row; false for the warps past the last row (whole warps, so they can leave
// together).
__device__ bool warp_row(int B, int T, int NH, WarpRow& r) {
  r.row = std::int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  r.lane = threadIdx.x % kWarpThreads;
  if (r.row >= std::int64_t{B} * NH * T) return false;
  r.t = static_cast<int>(r.row % T);
  r.h = static_cast<int>(r.row / T % NH);
  r.b = static_cast<int>(r.row / (std::int64_t{T} * NH));
  return true;
}

template <typename S>
__device__ float dot(const S* a, const S* b, int n) {
  float sum = 0.0F;
  for (int i = 0; i < n; ++i) sum += to_float(a[i]) * to_float(b[i]);
  return sum;
}

// D of a query row, parked in its dv slot between kernels 1 and 2: a float as it is, in 16-bit
// storage its bits split over the slot's first two elements.
template <typename S>
__device__ void park(S* slot, float d) {
  if constexpr (kIsFloat<S>) {
    slot[0] = d;
  } else {
    const std::uint32_t bits = __float_as_uint(d);
    slot[0] = from_bits<S>(static_cast<std::uint16_t>(bits & 0xFFFFU));
    slot[1] = from_bits<S>(static_cast<std::uint16_t>(bits >> 16));
  }
}

template <typename S>
__device__ float parked(const S* slot) {
  if constexpr (kIsFloat<S>) {
    return slot[0];
  } else {
    return __uint_as_float(std::uint32_t{bits_of(slot[0])} | std::uint32_t{bits_of(slot[1])} << 16);
  }
}

// The dq and dk sums of the backward: dst[i] = scale sum_{j in [first, end)} ds_of(j) x_j[i] for
// i < hs, x_j being row (b, j, h) of qkv's `part`, summed in j order. Lane l computes ds_of for
// row base + l of each chunk of kWarpThreads rows; then every lane walks the chunk's rows in order
// for the head dimensions it owns, kDimsPerLane at a time. Called by the whole warp.
template <typename S, typename DsOf>
__device__ void sum_ds_rows(S* dst, float scale, const DsOf& ds_of, int first, int end,
                            const S* qkv, const QkvLayout& layout, int b, int h, int part,
                            int lane) {
  const int hs = layout.hs;
  for (int d0 = 0; d0 < hs; d0 += kWarpThreads * kDimsPerLane) {
    float acc[kDimsPerLane] = {};
    for (int base = first; base < end; base += kWarpThreads) {
      const int j_lane = base + lane;
      float ds = 0.0F;
      if (j_lane < end) ds = ds_of(j_lane);
      const int count = min(kWarpThreads, end - base);
      for (int j = 0; j < count; ++j) {
        const float ds_j = __shfl_sync(kFullMask, ds, j);
        const S* x = qkv + layout.at(b, base + j, h, part);
        for (int r = 0; r < kDimsPerLane; ++r) {
          const int i = d0 + r * kWarpThreads + lane;
          if (i < hs) acc[r] += ds_j * to_float(x[i]);
        }
      }
    }
    for (int r = 0; r < kDimsPerLane; ++r) {
      const int i = d0 + r * kWarpThreads + lane;
      if (i < hs) dst[i] = from_float<S>(acc[r] * scale);
    }
  }
}

template <typename S>
__global__ void attention_forward_kernel(S* out, S* att, const S* qkv, int B, int T, int C, int NH,
                                         float scale) {
  extern __shared__ float warp_rows[];  // 16-bit storage: T floats per warp
  WarpRow w;
  if (!warp_row(B, T, NH, w)) return;  // whole warps leave together
  const auto [row, lane, b, h, t] = w;
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const S* q = qkv + layout.at(b, t, h, 0);
  S* att_row = att + row * T;  // row == (b * NH + h) * T + t
  float* p;
  if constexpr (kIsFloat<S>) {
    p = att_row;
  } else {
    p = warp_rows + std::int64_t{threadIdx.x / kWarpThreads} * T;
  }

  float lane_max = -INFINITY;
  for (int t2 = lane; t2 <= t; t2 += kWarpThreads) {
    const float score = dot(q, qkv + layout.at(b, t2, h, 1), hs) * scale;
    p[t2] = score;
    lane_max = fmaxf(lane_max, score);
  }
  const float max = warp_max(lane_max);
  float lane_sum = 0.0F;
  for (int t2 = lane; t2 <= t; t2 += kWarpThreads) {  // each lane rereads only its own columns
    const float e = expf(p[t2] - max);
    p[t2] = e;
    lane_sum += e;
  }
  const float inv_sum = 1.0F / warp_sum(lane_sum);
  for (int t2 = lane; t2 < T; t2 += kWarpThreads) {
    p[t2] = t2 <= t ? p[t2] * inv_sum : 0.0F;
    if constexpr (!kIsFloat<S>) att_row[t2] = from_float<S>(p[t2]);
  }
  __syncwarp();  // the whole row is read below by every lane

  S* o = out + layout.out_at(b, t, h);
  for (int i = lane; i < hs; i += kWarpThreads) {
    float sum = 0.0F;
    for (int t2 = 0; t2 <= t; ++t2) sum += p[t2] * to_float(qkv[layout.at(b, t2, h, 2) + i]);
    o[i] = from_float<S>(sum);
  }
}

// Kernel 1: D and dq, one warp per query row.
template <typename S>
__global__ void attention_backward_dq_kernel(S* dqkv, const S* dout, const S* qkv, const S* att,
                                             int B, int T, int C, int NH, float scale) {
  WarpRow w;
  if (!warp_row(B, T, NH, w)) return;
  const auto [row, lane, b, h, t] = w;
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const S* d_o = dout + layout.out_at(b, t, h);
  const S* p = att + row * T;

  float lane_d = 0.0F;
  for (int t2 = lane; t2 <= t; t2 += kWarpThreads) {
    lane_d += to_float(p[t2]) * dot(d_o, qkv + layout.at(b, t2, h, 2), hs);
  }
  const float d = warp_sum(lane_d);

  // dS[t, t2] over the keys t2 <= t, times k[t2].
  const auto ds_of = [&](int t2) {
    return to_float(p[t2]) * (dot(d_o, qkv + layout.at(b, t2, h, 2), hs) - d);
  };
  sum_ds_rows(dqkv + layout.at(b, t, h, 0), scale, ds_of, 0, t + 1, qkv, layout, b, h, 1, lane);
  if (lane == 0) park(dqkv + layout.at(b, t, h, 2), d);  // for kernel 2
}

// Kernel 2: dk, one warp per key row.
template <typename S>
__global__ void attention_backward_dk_kernel(S* dqkv, const S* dout, const S* qkv, const S* att,
                                             int B, int T, int C, int NH, float scale) {
  WarpRow w;
  if (!warp_row(B, T, NH, w)) return;
  const auto [row, lane, b, h, t2] = w;
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const S* v = qkv + layout.at(b, t2, h, 2);
  const S* p_head = att + (row - t2) * T;  // P[t, t2] = p_head[t * T + t2]

  // dS[t, t2] over the queries t >= t2, times q[t].
  const auto ds_of = [&](int t) {
    const S* d_o = dout + layout.out_at(b, t, h);
    const float d = parked(dqkv + layout.at(b, t, h, 2));
    return to_float(p_head[std::int64_t{t} * T + t2]) * (dot(d_o, v, hs) - d);
  };
  sum_ds_rows(dqkv + layout.at(b, t2, h, 1), scale, ds_of, t2, T, qkv, layout, b, h, 0, lane);
}

// Kernel 3: dv, one warp per key row; lanes own head dimensions.
template <typename S>
__global__ void attention_backward_dv_kernel(S* dqkv, const S* dout, const S* att, int B, int T,
                                             int C, int NH) {
  WarpRow w;
  if (!warp_row(B, T, NH, w)) return;
  const auto [row, lane, b, h, t2] = w;
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const S* p_head = att + (row - t2) * T;
  S* dv = dqkv + layout.at(b, t2, h, 2);
  for (int i = lane; i < hs; i += kWarpThreads) {
    float sum = 0.0F;
    for (int t = t2; t < T; ++t) {
      sum +=
          to_float(p_head[std::int64_t{t} * T + t2]) * to_float(dout[layout.out_at(b, t, h) + i]);
    }
    dv[i] = from_float<S>(sum);
  }
}

float attention_scale(int C, int NH) { return 1.0F / sqrtf(static_cast<float>(C / NH)); }

// Dynamic shared memory of the forward for storage type S: the float rows of its warps (none
// for fp32, whose rows are att's). Raises the kernel's limit past the default 48 KiB when needed,
// and throws when the device's opt-in limit is too small for T.
template <typename S>
std::size_t forward_shared_bytes(int T) {
  if constexpr (kIsFloat<S>) {
    return 0;
  } else {
    const std::size_t bytes = std::size_t{kWarpsPerBlock} * T * sizeof(float);
    constexpr std::size_t kDefaultLimit = 48 * 1024;
    if (bytes <= kDefaultLimit) return bytes;
    int device = 0;
    int limit = 0;
    check_call(cudaGetDevice(&device), "attention_forward", "cudaGetDevice");
    check_call(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
               "attention_forward", "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
    if (bytes > static_cast<std::size_t>(limit)) {
      throw std::runtime_error(
          "nn: attention_forward: 16-bit storage keeps a float row of T = " + std::to_string(T) +
          " scores per warp in shared memory, " + std::to_string(bytes) +
          " bytes per block, more than this GPU's " + std::to_string(limit));
    }
    check_call(
        cudaFuncSetAttribute(attention_forward_kernel<S>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
        "attention_forward", "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
    return bytes;
  }
}

}  // namespace

void attention_forward(void* stream, FloatType t, void* out, void* att, const void* qkv, int B,
                       int T, int C, int NH) {
  const unsigned int grid = grid_for_warp_rows(std::int64_t{B} * NH * T);
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    const std::size_t shared_bytes = forward_shared_bytes<S>(T);
    attention_forward_kernel<S>
        <<<grid, kBlockThreads, shared_bytes, static_cast<cudaStream_t>(stream)>>>(
            static_cast<S*>(out), static_cast<S*>(att), static_cast<const S*>(qkv), B, T, C, NH,
            attention_scale(C, NH));
  });
  check_launch("attention_forward");
}

void attention_backward(void* stream, FloatType t, void* dqkv, const void* dout, const void* qkv,
                        const void* att, int B, int T, int C, int NH) {
  if (t != FloatType::kF32 && C / NH < 2) {
    throw std::runtime_error(
        "nn: attention_backward: 16-bit storage parks a float in two "
        "elements of each head's dv slot, so it needs a head size C / NH "
        ">= 2, not " +
        std::to_string(C / NH));
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned int grid = grid_for_warp_rows(std::int64_t{B} * NH * T);
  const float scale = attention_scale(C, NH);
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    S* dqkv_s = static_cast<S*>(dqkv);
    const S* dout_s = static_cast<const S*>(dout);
    const S* qkv_s = static_cast<const S*>(qkv);
    const S* att_s = static_cast<const S*>(att);
    attention_backward_dq_kernel<S>
        <<<grid, kBlockThreads, 0, s>>>(dqkv_s, dout_s, qkv_s, att_s, B, T, C, NH, scale);
    check_launch("attention_backward (dq)");
    attention_backward_dk_kernel<S>
        <<<grid, kBlockThreads, 0, s>>>(dqkv_s, dout_s, qkv_s, att_s, B, T, C, NH, scale);
    check_launch("attention_backward (dk)");
    attention_backward_dv_kernel<S>
        <<<grid, kBlockThreads, 0, s>>>(dqkv_s, dout_s, att_s, B, T, C, NH);
    check_launch("attention_backward (dv)");
  });
}

}  // namespace ebb::nn::cuda
