// What the .cu files of the cuda nn backend (kernels/cuda/nn_cuda*.cu) share: the launch-error
// check that turns a failed launch into the std::runtime_error kernels/nn.h promises, grid
// sizing for grid-stride loops, and the fixed-order warp and block reductions that keep every
// kernel deterministic.
//
// Determinism rests on two rules every kernel here follows: each output element is written by
// exactly one thread, and every sum runs in an order fixed by compile-time launch shapes (never
// by scheduling). The butterfly in warp_sum gives every lane the same bits: lane i adds
// v_i + v_j where its partner adds v_j + v_i, and IEEE addition is commutative.
//
// Internal to kernels/cuda/. Thread safety: stateless; safe from any thread.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/nn.h"

namespace ebb::nn::cuda {

// Threads per block of the elementwise and per-row kernels. A power of two: the block
// reductions halve it.
inline constexpr int kBlockThreads = 256;
inline constexpr int kWarpThreads = 32;
inline constexpr int kWarpsPerBlock = kBlockThreads / kWarpThreads;

// Throws the error a launch of `kernel` left, if any. Called after every launch.
inline void check_launch(const char* kernel) {
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string("nn: cuda kernel ") + kernel + " failed to launch: " +
                             cudaGetErrorName(error) + ": " + cudaGetErrorString(error));
  }
}

// Throws for a failed runtime call made on behalf of `kernel` (a memset, say).
inline void check_call(cudaError_t error, const char* kernel, const char* call) {
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // clear it so a later launch check does not report it again
    throw std::runtime_error(std::string("nn: ") + kernel + ": " + call + " failed: " +
                             cudaGetErrorName(error) + ": " + cudaGetErrorString(error));
  }
}

// Blocks for a grid-stride loop over n items (n > 0). Capped so the grid stays a legal size;
// the loops cover whatever the cap leaves.
inline unsigned int grid_for(std::int64_t n, int threads = kBlockThreads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::min<std::int64_t>(blocks, std::int64_t{1} << 20));
}

// Blocks holding one warp per row, for `rows` rows.
inline unsigned int grid_for_warp_rows(std::int64_t rows) {
  return static_cast<unsigned int>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

#ifdef __CUDACC__
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarpThreads / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffU, v, offset);
  }
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarpThreads / 2; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffU, v, offset));
  }
  return v;
}

// Sum of v over a block of kBlockThreads threads, by a fixed halving tree in `scratch`
// (kBlockThreads floats of shared memory). Every thread gets the result. REQUIRES: called by
// every thread of the block.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kBlockThreads / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride)
      scratch[threadIdx.x] += scratch[threadIdx.x + stride];
    __syncthreads();
  }
  const float total = scratch[0];
  __syncthreads();  // scratch may be reused by the caller's next reduction
  return total;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kBlockThreads / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) {
      scratch[threadIdx.x] = fmaxf(scratch[threadIdx.x], scratch[threadIdx.x + stride]);
    }
    __syncthreads();
  }
  const float result = scratch[0];
  __syncthreads();
  return result;
}
#endif  // __CUDACC__

// dsum[c] (fp32) = sum over n in [0, N) of in[n, c] (in storage type t, widened), in fp32,
// deterministic (nn_cuda.cu). Used for matmul's dbias. REQUIRES N, C > 0.
void column_sums(cudaStream_t stream, FloatType t, float* dsum, const void* in, int N, int C,
                 const char* kernel);

}  // namespace ebb::nn::cuda
