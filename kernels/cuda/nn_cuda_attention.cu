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
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/nn_cuda.h"
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
};

__device__ float dot(const float* a, const float* b, int n) {
  float sum = 0.0F;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

__global__ void attention_forward_kernel(float* out, float* att, const float* qkv, int B, int T,
                                         int C, int NH, float scale) {
  const std::int64_t row = std::int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= std::int64_t{B} * NH * T) return;  // whole warps leave together
  const int t = static_cast<int>(row % T);
  const int h = static_cast<int>(row / T % NH);
  const int b = static_cast<int>(row / (std::int64_t{T} * NH));
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const float* q = qkv + layout.at(b, t, h, 0);
  float* p = att + row * T;  // row == (b * NH + h) * T + t

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
  for (int t2 = lane; t2 < T; t2 += kWarpThreads) p[t2] = t2 <= t ? p[t2] * inv_sum : 0.0F;
  __syncwarp();  // the whole row is read below by every lane

  float* o = out + (std::int64_t{b} * T + t) * C + std::int64_t{h} * hs;
  for (int i = lane; i < hs; i += kWarpThreads) {
    float sum = 0.0F;
    for (int t2 = 0; t2 <= t; ++t2) sum += p[t2] * qkv[layout.at(b, t2, h, 2) + i];
    o[i] = sum;
  }
}

// Kernel 1: D and dq, one warp per query row.
__global__ void attention_backward_dq_kernel(float* dqkv, const float* dout, const float* qkv,
                                             const float* att, int B, int T, int C, int NH,
                                             float scale) {
  const std::int64_t row = std::int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= std::int64_t{B} * NH * T) return;
  const int t = static_cast<int>(row % T);
  const int h = static_cast<int>(row / T % NH);
  const int b = static_cast<int>(row / (std::int64_t{T} * NH));
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const float* d_o = dout + (std::int64_t{b} * T + t) * C + std::int64_t{h} * hs;
  const float* p = att + row * T;

  float lane_d = 0.0F;
  for (int t2 = lane; t2 <= t; t2 += kWarpThreads) {
    lane_d += p[t2] * dot(d_o, qkv + layout.at(b, t2, h, 2), hs);
  }
  const float d = warp_sum(lane_d);

  float* dq = dqkv + layout.at(b, t, h, 0);
  for (int d0 = 0; d0 < hs; d0 += kWarpThreads * kDimsPerLane) {
    float acc[kDimsPerLane] = {};
    for (int base = 0; base <= t; base += kWarpThreads) {
      // Lane j holds dS[t, base + j]; then every lane walks the keys of this chunk in order.
      const int t2 = base + lane;
      float ds = 0.0F;
      if (t2 <= t) ds = p[t2] * (dot(d_o, qkv + layout.at(b, t2, h, 2), hs) - d);
      const int count = min(kWarpThreads, t - base + 1);
      for (int j = 0; j < count; ++j) {
        const float ds_j = __shfl_sync(kFullMask, ds, j);
        const float* k = qkv + layout.at(b, base + j, h, 1);
        for (int r = 0; r < kDimsPerLane; ++r) {
          const int i = d0 + r * kWarpThreads + lane;
          if (i < hs) acc[r] += ds_j * k[i];
        }
      }
    }
    for (int r = 0; r < kDimsPerLane; ++r) {
      const int i = d0 + r * kWarpThreads + lane;
      if (i < hs) dq[i] = acc[r] * scale;
    }
  }
  if (lane == 0) dqkv[layout.at(b, t, h, 2)] = d;  // parked for kernel 2
}

// Kernel 2: dk, one warp per key row.
__global__ void attention_backward_dk_kernel(float* dqkv, const float* dout, const float* qkv,
                                             const float* att, int B, int T, int C, int NH,
                                             float scale) {
  const std::int64_t row = std::int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= std::int64_t{B} * NH * T) return;
  const int t2 = static_cast<int>(row % T);
  const int h = static_cast<int>(row / T % NH);
  const int b = static_cast<int>(row / (std::int64_t{T} * NH));
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const float* v = qkv + layout.at(b, t2, h, 2);
  const float* p_head = att + (row - t2) * T;  // P[t, t2] = p_head[t * T + t2]

  float* dk = dqkv + layout.at(b, t2, h, 1);
  for (int d0 = 0; d0 < hs; d0 += kWarpThreads * kDimsPerLane) {
    float acc[kDimsPerLane] = {};
    for (int base = t2; base < T; base += kWarpThreads) {
      // Lane j holds dS[base + j, t2]; then every lane walks the queries of this chunk in order.
      const int t = base + lane;
      float ds = 0.0F;
      if (t < T) {
        const float* d_o = dout + (std::int64_t{b} * T + t) * C + std::int64_t{h} * hs;
        const float d = dqkv[layout.at(b, t, h, 2)];
        ds = p_head[std::int64_t{t} * T + t2] * (dot(d_o, v, hs) - d);
      }
      const int count = min(kWarpThreads, T - base);
      for (int j = 0; j < count; ++j) {
        const float ds_j = __shfl_sync(kFullMask, ds, j);
        const float* q = qkv + layout.at(b, base + j, h, 0);
        for (int r = 0; r < kDimsPerLane; ++r) {
          const int i = d0 + r * kWarpThreads + lane;
          if (i < hs) acc[r] += ds_j * q[i];
        }
      }
    }
    for (int r = 0; r < kDimsPerLane; ++r) {
      const int i = d0 + r * kWarpThreads + lane;
      if (i < hs) dk[i] = acc[r] * scale;
    }
  }
}

// Kernel 3: dv, one warp per key row; lanes own head dimensions.
__global__ void attention_backward_dv_kernel(float* dqkv, const float* dout, const float* att,
                                             int B, int T, int C, int NH) {
  const std::int64_t row = std::int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= std::int64_t{B} * NH * T) return;
  const int t2 = static_cast<int>(row % T);
  const int h = static_cast<int>(row / T % NH);
  const int b = static_cast<int>(row / (std::int64_t{T} * NH));
  const QkvLayout layout{T, C, C / NH};
  const int hs = layout.hs;
  const float* p_head = att + (row - t2) * T;
  float* dv = dqkv + layout.at(b, t2, h, 2);
  for (int i = lane; i < hs; i += kWarpThreads) {
    float sum = 0.0F;
    for (int t = t2; t < T; ++t) {
      sum += p_head[std::int64_t{t} * T + t2] *
             dout[(std::int64_t{b} * T + t) * C + std::int64_t{h} * hs + i];
    }
    dv[i] = sum;
  }
}

float attention_scale(int C, int NH) { return 1.0F / sqrtf(static_cast<float>(C / NH)); }

}  // namespace

void attention_forward(void* stream, float* out, float* att, const float* qkv, int B, int T, int C,
                       int NH) {
  const unsigned int grid = grid_for_warp_rows(std::int64_t{B} * NH * T);
  attention_forward_kernel<<<grid, kBlockThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      out, att, qkv, B, T, C, NH, attention_scale(C, NH));
  check_launch("attention_forward");
}

void attention_backward(void* stream, float* dqkv, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned int grid = grid_for_warp_rows(std::int64_t{B} * NH * T);
  const float scale = attention_scale(C, NH);
  attention_backward_dq_kernel<<<grid, kBlockThreads, 0, s>>>(dqkv, dout, qkv, att, B, T, C, NH,
                                                              scale);
  check_launch("attention_backward (dq)");
  attention_backward_dk_kernel<<<grid, kBlockThreads, 0, s>>>(dqkv, dout, qkv, att, B, T, C, NH,
                                                              scale);
  check_launch("attention_backward (dk)");
  attention_backward_dv_kernel<<<grid, kBlockThreads, 0, s>>>(dqkv, dout, att, B, T, C, NH);
  check_launch("attention_backward (dv)");
}

}  // namespace ebb::nn::cuda
