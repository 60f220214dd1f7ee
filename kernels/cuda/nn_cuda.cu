// The cuda backend of kernels/nn.h, part one: the embedding, layernorm, softmax + cross-entropy
// and mean kernels, and the deterministic column sums they and matmul's dbias share. The other
// parts: nn_cuda_elementwise.cu, nn_cuda_attention.cu, nn_cuda_matmul.cu.
//
// Reductions over rows (dwte, dwpe, dweight, dbias) are owned per column: the threads of one
// column walk the rows in a fixed interleave and combine their partials in a fixed order, so no
// atomics are needed and the bits do not depend on scheduling. Per-row reductions (layernorm,
// softmax) use the fixed trees of nn_cuda_launch.h.
//
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/nn_cuda.h"
#include "kernels/cuda/nn_cuda_launch.h"

namespace ebb::nn::cuda {
namespace {

// Column sums: a block owns kColumnsPerBlock columns; its kColumnRowLanes row lanes take rows
// y, y + kColumnRowLanes, ... in order, and lane 0 adds their partials in lane order.
constexpr int kColumnsPerBlock = 32;
constexpr int kColumnRowLanes = 16;

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// --- embedding --------------------------------------------------------------------------------

__global__ void embedding_forward_kernel(float* out, const std::int32_t* tokens, const float* wte,
                                         const float* wpe, std::int64_t n, int T, int C) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t bt = i / C;
    const int c = static_cast<int>(i % C);
    const int t = static_cast<int>(bt % T);
    out[i] = wte[std::int64_t{tokens[bt]} * C + c] + wpe[std::int64_t{t} * C + c];
  }
}

// Vocabulary rows are dealt to kEmbeddingVocabSplits groups by v % splits; the thread of
// (group, channel c) walks every (b, t) in order and adds the ones whose token is in its
// group. So each dwte element has one owning thread, which sums in (b, t) order.
constexpr int kEmbeddingVocabSplits = 16;

__global__ void embedding_backward_wte_kernel(float* dwte, const float* dout,
                                              const std::int32_t* tokens, int BT, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int group = blockIdx.y;
  if (c >= C) return;
  for (int bt = 0; bt < BT; ++bt) {
    const std::int32_t v = tokens[bt];
    if (v % kEmbeddingVocabSplits != group) continue;
    dwte[std::int64_t{v} * C + c] += dout[std::int64_t{bt} * C + c];
  }
}

__global__ void embedding_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const std::int64_t n = std::int64_t{T} * C;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    float sum = 0.0F;
    for (int b = 0; b < B; ++b) sum += dout[std::int64_t{b} * n + i];
    dwpe[i] = sum;
  }
}

// --- layernorm --------------------------------------------------------------------------------

constexpr float kLayernormEps = 1e-5F;

// One warp per row.
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= N) return;
  const float* x = inp + std::int64_t{row} * C;
  float sum = 0.0F;
  for (int c = lane; c < C; c += kWarpThreads) sum += x[c];
  const float m = warp_sum(sum) / static_cast<float>(C);
  float sq = 0.0F;
  for (int c = lane; c < C; c += kWarpThreads) {
    const float d = x[c] - m;
    sq += d * d;
  }
  const float s = 1.0F / sqrtf(warp_sum(sq) / static_cast<float>(C) + kLayernormEps);
  float* y = out + std::int64_t{row} * C;
  for (int c = lane; c < C; c += kWarpThreads) y[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dinp, one warp per row: dinp = (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd with
// dnorm = weight * dout.
__global__ void layernorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp,
                                               const float* weight, const float* mean,
                                               const float* rstd, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= N) return;
  const std::int64_t offset = std::int64_t{row} * C;
  const float m = mean[row];
  const float s = rstd[row];
  float dnorm_sum = 0.0F;
  float dnorm_norm_sum = 0.0F;
  for (int c = lane; c < C; c += kWarpThreads) {
    const float norm = (inp[offset + c] - m) * s;
    const float dnorm = weight[c] * dout[offset + c];
    dnorm_sum += dnorm;
    dnorm_norm_sum += dnorm * norm;
  }
  const float dnorm_mean = warp_sum(dnorm_sum) / static_cast<float>(C);
  const float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / static_cast<float>(C);
  for (int c = lane; c < C; c += kWarpThreads) {
    const float norm = (inp[offset + c] - m) * s;
    const float dnorm = weight[c] * dout[offset + c];
    dinp[offset + c] = (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

// Column sums of dout (into dsum) and, when norm_weighted is given, of dout * norm (layernorm's
// dweight; mean and rstd give norm). Launch shape: (kColumnsPerBlock, kColumnRowLanes) threads.
__global__ void column_sums_kernel(float* dsum, float* dsum_norm, const float* dout,
                                   const float* inp, const float* mean, const float* rstd, int N,
                                   int C) {
  __shared__ float partial[kColumnRowLanes][kColumnsPerBlock];
  __shared__ float partial_norm[kColumnRowLanes][kColumnsPerBlock];
  const int x = threadIdx.x;
  const int y = threadIdx.y;
  const int c = blockIdx.x * kColumnsPerBlock + x;
  float sum = 0.0F;
  float sum_norm = 0.0F;
  if (c < C) {
    for (int n = y; n < N; n += kColumnRowLanes) {
      const std::int64_t i = std::int64_t{n} * C + c;
      sum += dout[i];
      if (dsum_norm != nullptr) sum_norm += dout[i] * ((inp[i] - mean[n]) * rstd[n]);
    }
  }
  partial[y][x] = sum;
  partial_norm[y][x] = sum_norm;
  __syncthreads();
  if (y != 0 || c >= C) return;
  float total = 0.0F;
  float total_norm = 0.0F;
  for (int lane = 0; lane < kColumnRowLanes; ++lane) {
    total += partial[lane][x];
    total_norm += partial_norm[lane][x];
  }
  dsum[c] = total;
  if (dsum_norm != nullptr) dsum_norm[c] = total_norm;
}

void launch_column_sums(cudaStream_t stream, float* dsum, float* dsum_norm, const float* dout,
                        const float* inp, const float* mean, const float* rstd, int N, int C,
                        const char* kernel) {
  const dim3 block(kColumnsPerBlock, kColumnRowLanes);
  const dim3 grid((C + kColumnsPerBlock - 1) / kColumnsPerBlock);
  column_sums_kernel<<<grid, block, 0, stream>>>(dsum, dsum_norm, dout, inp, mean, rstd, N, C);
  check_launch(kernel);
}

// --- softmax + cross-entropy, one block per row -----------------------------------------------

__global__ void softmax_cross_entropy_forward_kernel(float* losses, float* probs,
                                                     const float* logits,
                                                     const std::int32_t* targets, int V) {
  __shared__ float scratch[kBlockThreads];
  const std::int64_t offset = std::int64_t{blockIdx.x} * V;
  const float* x = logits + offset;
  float lane_max = -INFINITY;
  for (int i = threadIdx.x; i < V; i += kBlockThreads) lane_max = fmaxf(lane_max, x[i]);
  const float max = block_max(lane_max, scratch);
  float lane_sum = 0.0F;
  for (int i = threadIdx.x; i < V; i += kBlockThreads) lane_sum += expf(x[i] - max);
  const float sum = block_sum(lane_sum, scratch);
  float* p = probs + offset;
  for (int i = threadIdx.x; i < V; i += kBlockThreads) p[i] = expf(x[i] - max) / sum;
  if (threadIdx.x == 0) {
    // The same expression as probs[target] above, so the loss matches the saved probability.
    const float target_prob = expf(x[targets[blockIdx.x]] - max) / sum;
    losses[blockIdx.x] = -logf(target_prob);
  }
}

__global__ void softmax_cross_entropy_backward_kernel(float* dlogits, const float* probs,
                                                      const std::int32_t* targets, float dloss,
                                                      std::int64_t n, int V) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = i / V;
    const int v = static_cast<int>(i % V);
    const float indicator = v == targets[row] ? 1.0F : 0.0F;
    dlogits[i] = (probs[i] - indicator) * dloss;
  }
}

// --- mean, one block ---------------------------------------------------------------------------

__global__ void mean_kernel(float* out, const float* in, std::int64_t n) {
  __shared__ float scratch[kBlockThreads];
  float sum = 0.0F;
  for (std::int64_t i = threadIdx.x; i < n; i += kBlockThreads) sum += in[i];
  const float total = block_sum(sum, scratch);
  if (threadIdx.x == 0) out[0] = total / static_cast<float>(n);
}

}  // namespace

void column_sums(cudaStream_t stream, float* dsum, const float* in, int N, int C,
                 const char* kernel) {
  launch_column_sums(stream, dsum, nullptr, in, nullptr, nullptr, nullptr, N, C, kernel);
}

void embedding_forward(void* stream, float* out, const std::int32_t* tokens, const float* wte,
                       const float* wpe, int B, int T, int C, int V) {
  (void)V;
  const std::int64_t n = std::int64_t{B} * T * C;
  embedding_forward_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(out, tokens, wte,
                                                                                 wpe, n, T, C);
  check_launch("embedding_forward");
}

void embedding_backward(void* stream, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, int B, int T, int C, int V) {
  cudaStream_t s = as_stream(stream);
  // dwte is an output: rows no token hits must read 0, and the owners below add into it.
  check_call(cudaMemsetAsync(dwte, 0, std::size_t(V) * C * sizeof(float), s), "embedding_backward",
             "cudaMemsetAsync(dwte)");
  // Warp-wide blocks spread the few (C) column threads over many SMs.
  const dim3 grid((C + kWarpThreads - 1) / kWarpThreads, kEmbeddingVocabSplits);
  embedding_backward_wte_kernel<<<grid, kWarpThreads, 0, s>>>(dwte, dout, tokens, B * T, C);
  check_launch("embedding_backward (dwte)");
  embedding_backward_wpe_kernel<<<grid_for(std::int64_t{T} * C), kBlockThreads, 0, s>>>(dwpe, dout,
                                                                                        B, T, C);
  check_launch("embedding_backward (dwpe)");
}

void layernorm_forward(void* stream, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
  layernorm_forward_kernel<<<grid_for_warp_rows(N), kBlockThreads, 0, as_stream(stream)>>>(
      out, mean, rstd, inp, weight, bias, N, C);
  check_launch("layernorm_forward");
}

void layernorm_backward(void* stream, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int N, int C) {
  cudaStream_t s = as_stream(stream);
  layernorm_backward_dinp_kernel<<<grid_for_warp_rows(N), kBlockThreads, 0, s>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  check_launch("layernorm_backward (dinp)");
  launch_column_sums(s, dbias, dweight, dout, inp, mean, rstd, N, C,
                     "layernorm_backward (dweight, dbias)");
}

void softmax_cross_entropy_forward(void* stream, float* losses, float* probs, const float* logits,
                                   const std::int32_t* targets, int N, int V) {
  softmax_cross_entropy_forward_kernel<<<N, kBlockThreads, 0, as_stream(stream)>>>(
      losses, probs, logits, targets, V);
  check_launch("softmax_cross_entropy_forward");
}

void softmax_cross_entropy_backward(void* stream, float* dlogits, const float* probs,
                                    const std::int32_t* targets, float dloss, int N, int V) {
  const std::int64_t n = std::int64_t{N} * V;
  softmax_cross_entropy_backward_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
      dlogits, probs, targets, dloss, n, V);
  check_launch("softmax_cross_entropy_backward");
}

void mean(void* stream, float* out, const float* in, std::int64_t n) {
  mean_kernel<<<1, kBlockThreads, 0, as_stream(stream)>>>(out, in, n);
  check_launch("mean");
}

}  // namespace ebb::nn::cuda
