// The cuda backend of kernels/nn.h, part one: the embedding, layernorm, softmax + cross-entropy
// and mean kernels, and the deterministic column sums they and matmul's dbias share. The other
// parts: nn_cuda_elementwise.cu, nn_cuda_attention.cu, nn_cuda_matmul.cu.
//
// Reductions over rows (dwte, dwpe, dweight, dbias) are owned per column: the threads of one
// column walk the rows in a fixed interleave and combine their partials in a fixed order, so no
// atomics are needed and the bits do not depend on scheduling. Per-row reductions (layernorm,
// softmax) use the fixed trees of nn_cuda_launch.h.
//
// Every kernel is a template on the storage type S (nn_cuda_float.h): it loads with to_float,
// computes in float exactly as the fp32 kernel does, and stores with from_float<S>; none reads
// back an output it has stored, so 16-bit storage needs no float scratch here.
//
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/nn_cuda.h"
#include "kernels/cuda/nn_cuda_float.h"
#include "kernels/cuda/nn_cuda_launch.h"

namespace ebb::nn::cuda {
namespace {

// Column sums: a block owns kColumnsPerBlock columns; its kColumnRowLanes row lanes take rows
// y, y + kColumnRowLanes, ... in order, and lane 0 adds their partials in lane order.
constexpr int kColumnsPerBlock = 32;
constexpr int kColumnRowLanes = 16;

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// --- embedding --------------------------------------------------------------------------------

template <typename S>
__global__ void embedding_forward_kernel(S* out, const std::int32_t* tokens, const S* wte,
                                         const S* wpe, std::int64_t n, int T, int C) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t bt = i / C;
    const int c = static_cast<int>(i % C);
    const int t = static_cast<int>(bt % T);
    out[i] = from_float<S>(to_float(wte[std::int64_t{tokens[bt]} * C + c]) +
                           to_float(wpe[std::int64_t{t} * C + c]));
  }
}

// Vocabulary rows are dealt to kEmbeddingVocabSplits groups by v % splits; the thread of
// (group, channel c) walks every (b, t) in order and adds the ones whose token is in its
// group. So each dwte element has one owning thread, which sums in (b, t) order.
constexpr int kEmbeddingVocabSplits = 16;

template <typename S>
__global__ void embedding_backward_wte_kernel(float* dwte, const S* dout,
                                              const std::int32_t* tokens, int BT, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int group = blockIdx.y;
  if (c >= C) return;
  for (int bt = 0; bt < BT; ++bt) {
    const std::int32_t v = tokens[bt];
    if (v % kEmbeddingVocabSplits != group) continue;
    dwte[std::int64_t{v} * C + c] += to_float(dout[std::int64_t{bt} * C + c]);
  }
}

template <typename S>
__global__ void embedding_backward_wpe_kernel(float* dwpe, const S* dout, int B, int T, int C) {
  const std::int64_t n = std::int64_t{T} * C;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    float sum = 0.0F;
    for (int b = 0; b < B; ++b) sum += to_float(dout[std::int64_t{b} * n + i]);
    dwpe[i] = sum;
  }
}

// --- layernorm --------------------------------------------------------------------------------

constexpr float kLayernormEps = 1e-5F;

// One warp per row.
template <typename S>
__global__ void layernorm_forward_kernel(S* out, float* mean, float* rstd, const S* inp,
                                         const S* weight, const S* bias, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpThreads;
  const int lane = threadIdx.x % kWarpThreads;
  if (row >= N) return;
  const S* x = inp + std::int64_t{row} * C;
  float sum = 0.0F;
  for (int c = lane; c < C; c += kWarpThreads) sum += to_float(x[c]);
  const float m = warp_sum(sum) / static_cast<float>(C);
  float sq = 0.0F;
  for (int c = lane; c < C; c += kWarpThreads) {
    const float d = to_float(x[c]) - m;
    sq += d * d;
  }
  const float s = 1.0F / sqrtf(warp_sum(sq) / static_cast<float>(C) + kLayernormEps);
  S* y = out + std::int64_t{row} * C;
  for (int c = lane; c < C; c += kWarpThreads) {
    y[c] = from_float<S>((to_float(x[c]) - m) * s * to_float(weight[c]) + to_float(bias[c]));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dinp, one warp per row: dinp = (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd with
// dnorm = weight * dout.
template <typename S>
__global__ void layernorm_backward_dinp_kernel(S* dinp, const S* dout, const S* inp,
                                               const S* weight, const float* mean,
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
    const float norm = (to_float(inp[offset + c]) - m) * s;
    const float dnorm = to_float(weight[c]) * to_float(dout[offset + c]);
    dnorm_sum += dnorm;
    dnorm_norm_sum += dnorm * norm;
  }
  const float dnorm_mean = warp_sum(dnorm_sum) / static_cast<float>(C);
  const float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / static_cast<float>(C);
  for (int c = lane; c < C; c += kWarpThreads) {
    const float norm = (to_float(inp[offset + c]) - m) * s;
    const float dnorm = to_float(weight[c]) * to_float(dout[offset + c]);
    dinp[offset + c] = from_float<S>((dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
  }
}

// Column sums of dout (into dsum) and, when norm_weighted is given, of dout * norm (layernorm's
// dweight; mean and rstd give norm). Launch shape: (kColumnsPerBlock, kColumnRowLanes) threads.
template <typename S>
__global__ void column_sums_kernel(float* dsum, float* dsum_norm, const S* dout, const S* inp,
                                   const float* mean, const float* rstd, int N, int C) {
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
      const float d = to_float(dout[i]);
      sum += d;
      if (dsum_norm != nullptr) sum_norm += d * ((to_float(inp[i]) - mean[n]) * rstd[n]);
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

template <typename S>
void launch_column_sums(cudaStream_t stream, float* dsum, float* dsum_norm, const S* dout,
                        const S* inp, const float* mean, const float* rstd, int N, int C,
                        const char* kernel) {
  const dim3 block(kColumnsPerBlock, kColumnRowLanes);
  const dim3 grid((C + kColumnsPerBlock - 1) / kColumnsPerBlock);
  column_sums_kernel<S><<<grid, block, 0, stream>>>(dsum, dsum_norm, dout, inp, mean, rstd, N, C);
  check_launch(kernel);
}

// --- softmax + cross-entropy, one block per row -----------------------------------------------

template <typename S>
__global__ void softmax_cross_entropy_forward_kernel(float* losses, S* probs, const S* logits,
                                                     const std::int32_t* targets, int V) {
  __shared__ float scratch[kBlockThreads];
  const std::int64_t offset = std::int64_t{blockIdx.x} * V;
  const S* x = logits + offset;
  float lane_max = -INFINITY;
  for (int i = threadIdx.x; i < V; i += kBlockThreads) lane_max = fmaxf(lane_max, to_float(x[i]));
  const float max = block_max(lane_max, scratch);
  float lane_sum = 0.0F;
  for (int i = threadIdx.x; i < V; i += kBlockThreads) lane_sum += expf(to_float(x[i]) - max);
  const float sum = block_sum(lane_sum, scratch);
  S* p = probs + offset;
  for (int i = threadIdx.x; i < V; i += kBlockThreads) {
    p[i] = from_float<S>(expf(to_float(x[i]) - max) / sum);
  }
  if (threadIdx.x == 0) {
    // The same expression as probs[target] above, so the loss matches the saved probability
    // (before a 16-bit probs rounds it).
    const float target_prob = expf(to_float(x[targets[blockIdx.x]]) - max) / sum;
    losses[blockIdx.x] = -logf(target_prob);
  }
}

template <typename S>
__global__ void softmax_cross_entropy_backward_kernel(S* dlogits, const S* probs,
                                                      const std::int32_t* targets, float dloss,
                                                      std::int64_t n, int V) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = i / V;
    const int v = static_cast<int>(i % V);
    const float indicator = v == targets[row] ? 1.0F : 0.0F;
    dlogits[i] = from_float<S>((to_float(probs[i]) - indicator) * dloss);
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

void column_sums(cudaStream_t stream, FloatType t, float* dsum, const void* in, int N, int C,
                 const char* kernel) {
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    launch_column_sums<S>(stream, dsum, nullptr, static_cast<const S*>(in), nullptr, nullptr,
                          nullptr, N, C, kernel);
  });
}

void embedding_forward(void* stream, FloatType t, void* out, const std::int32_t* tokens,
                       const void* wte, const void* wpe, int B, int T, int C, int V) {
  (void)V;
  const std::int64_t n = std::int64_t{B} * T * C;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    embedding_forward_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(out), tokens, static_cast<const S*>(wte), static_cast<const S*>(wpe), n, T,
        C);
  });
  check_launch("embedding_forward");
}

void embedding_backward(void* stream, FloatType t, float* dwte, float* dwpe, const void* dout,
                        const std::int32_t* tokens, int B, int T, int C, int V) {
  cudaStream_t s = as_stream(stream);
  // dwte is an output: rows no token hits must read 0, and the owners below add into it.
  check_call(cudaMemsetAsync(dwte, 0, std::size_t(V) * C * sizeof(float), s), "embedding_backward",
             "cudaMemsetAsync(dwte)");
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    const S* d = static_cast<const S*>(dout);
    // Warp-wide blocks spread the few (C) column threads over many SMs.
    const dim3 grid((C + kWarpThreads - 1) / kWarpThreads, kEmbeddingVocabSplits);
    embedding_backward_wte_kernel<S><<<grid, kWarpThreads, 0, s>>>(dwte, d, tokens, B * T, C);
    check_launch("embedding_backward (dwte)");
    embedding_backward_wpe_kernel<S>
        <<<grid_for(std::int64_t{T} * C), kBlockThreads, 0, s>>>(dwpe, d, B, T, C);
    check_launch("embedding_backward (dwpe)");
  });
}

void layernorm_forward(void* stream, FloatType t, void* out, float* mean, float* rstd,
                       const void* inp, const void* weight, const void* bias, int N, int C) {
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    layernorm_forward_kernel<S><<<grid_for_warp_rows(N), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(out), mean, rstd, static_cast<const S*>(inp), static_cast<const S*>(weight),
        static_cast<const S*>(bias), N, C);
  });
  check_launch("layernorm_forward");
}

void layernorm_backward(void* stream, FloatType t, void* dinp, float* dweight, float* dbias,
                        const void* dout, const void* inp, const void* weight, const float* mean,
                        const float* rstd, int N, int C) {
  cudaStream_t s = as_stream(stream);
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    const S* d = static_cast<const S*>(dout);
    const S* x = static_cast<const S*>(inp);
    layernorm_backward_dinp_kernel<S><<<grid_for_warp_rows(N), kBlockThreads, 0, s>>>(
        static_cast<S*>(dinp), d, x, static_cast<const S*>(weight), mean, rstd, N, C);
    check_launch("layernorm_backward (dinp)");
    launch_column_sums<S>(s, dbias, dweight, d, x, mean, rstd, N, C,
                          "layernorm_backward (dweight, dbias)");
  });
}

void softmax_cross_entropy_forward(void* stream, FloatType t, float* losses, void* probs,
                                   const void* logits, const std::int32_t* targets, int N, int V) {
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    softmax_cross_entropy_forward_kernel<S><<<N, kBlockThreads, 0, as_stream(stream)>>>(
        losses, static_cast<S*>(probs), static_cast<const S*>(logits), targets, V);
  });
  check_launch("softmax_cross_entropy_forward");
}

void softmax_cross_entropy_backward(void* stream, FloatType t, void* dlogits, const void* probs,
                                    const std::int32_t* targets, float dloss, int N, int V) {
  const std::int64_t n = std::int64_t{N} * V;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    softmax_cross_entropy_backward_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(dlogits), static_cast<const S*>(probs), targets, dloss, n, V);
  });
  check_launch("softmax_cross_entropy_backward");
}

void mean(void* stream, float* out, const float* in, std::int64_t n) {
  mean_kernel<<<1, kBlockThreads, 0, as_stream(stream)>>>(out, in, n);
  check_launch("mean");
}

}  // namespace ebb::nn::cuda
