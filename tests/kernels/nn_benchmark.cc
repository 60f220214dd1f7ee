// Throughput of the cpu GEMM behind matmul_forward/backward at the reference trainer's sizes
// (N = B*T rows, C channels, OC outputs), where the trainer spends most of its time. FLOP/s counts
// 2*N*C*OC for the forward and 4*N*C*OC for the backward (dinp and dweight), over wall time:
// the work runs on TBB threads, not only on the benchmark thread.
//
// The Bf16 variants run the same shapes with bf16 activations and weights (nn.h's mixed
// precision): the same fp32 GEMM on operand panels widened per task, plus the rounding of the
// outputs, so the difference to the fp32 lines is what 16-bit storage costs on the cpu.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/nn_cpu.h"
#include "kernels/nn_scalar.h"

namespace {

using ebb::nn::Bf16;
using ebb::nn::Storage;

// n values uniform in [-1, 1), rounded to S.
template <Storage S>
std::vector<S> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0F, 1.0F);
  std::vector<S> v(n);
  for (S& x : v) x = ebb::nn::from_float<S>(dist(rng));
  return v;
}

template <Storage S>
void matmul_forward(benchmark::State& state) {
  const int N = static_cast<int>(state.range(0));
  const int C = static_cast<int>(state.range(1));
  const int OC = static_cast<int>(state.range(2));
  auto inp = random_vector<S>(static_cast<std::size_t>(N) * C, 1);
  auto weight = random_vector<S>(static_cast<std::size_t>(OC) * C, 2);
  auto bias = random_vector<S>(OC, 3);
  std::vector<S> out(static_cast<std::size_t>(N) * OC);
  for (auto _ : state) {
    ebb::nn::cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * N * C * OC, benchmark::Counter::kIsIterationInvariantRate);
}

template <Storage S>
void matmul_backward(benchmark::State& state) {
  const int N = static_cast<int>(state.range(0));
  const int C = static_cast<int>(state.range(1));
  const int OC = static_cast<int>(state.range(2));
  auto inp = random_vector<S>(static_cast<std::size_t>(N) * C, 1);
  auto weight = random_vector<S>(static_cast<std::size_t>(OC) * C, 2);
  auto dout = random_vector<S>(static_cast<std::size_t>(N) * OC, 3);
  std::vector<S> dinp(inp.size());
  std::vector<float> dweight(weight.size()), dbias(OC);
  for (auto _ : state) {
    ebb::nn::cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(),
                                  inp.data(), weight.data(), N, C, OC);
    benchmark::DoNotOptimize(dinp.data());
    benchmark::DoNotOptimize(dweight.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(4.0 * N * C * OC, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MatmulForward(benchmark::State& state) { matmul_forward<float>(state); }
void BM_MatmulBackward(benchmark::State& state) { matmul_backward<float>(state); }
void BM_MatmulForwardBf16(benchmark::State& state) { matmul_forward<Bf16>(state); }
void BM_MatmulBackwardBf16(benchmark::State& state) { matmul_backward<Bf16>(state); }

// {N, C, OC}: the qkv projection and the MLP's fc at C = 128, B*T = 512; the LM head at V = 512.
BENCHMARK(BM_MatmulForward)
    ->Args({512, 128, 384})
    ->Args({512, 128, 512})
    ->Args({512, 512, 128})
    ->UseRealTime();
BENCHMARK(BM_MatmulBackward)
    ->Args({512, 128, 384})
    ->Args({512, 128, 512})
    ->Args({512, 512, 128})
    ->UseRealTime();
BENCHMARK(BM_MatmulForwardBf16)
    ->Args({512, 128, 384})
    ->Args({512, 128, 512})
    ->Args({512, 512, 128})
    ->UseRealTime();
BENCHMARK(BM_MatmulBackwardBf16)
    ->Args({512, 128, 384})
    ->Args({512, 128, 512})
    ->Args({512, 512, 128})
    ->UseRealTime();

}  // namespace
