// Throughput of the cpu GEMM behind matmul_forward/backward at the reference trainer's sizes
// (N = B*T rows, C channels, OC outputs), where the trainer spends most of its time. FLOP/s counts
// 2*N*C*OC for the forward and 4*N*C*OC for the backward (dinp and dweight), over wall time:
// the work runs on TBB threads, not only on the benchmark thread.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/nn_cpu.h"

namespace {

std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0F, 1.0F);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void BM_MatmulForward(benchmark::State& state) {
  const int N = static_cast<int>(state.range(0));
  const int C = static_cast<int>(state.range(1));
  const int OC = static_cast<int>(state.range(2));
  auto inp = random_vector(static_cast<std::size_t>(N) * C, 1);
  auto weight = random_vector(static_cast<std::size_t>(OC) * C, 2);
  auto bias = random_vector(OC, 3);
  std::vector<float> out(static_cast<std::size_t>(N) * OC);
  for (auto _ : state) {
    ebb::nn::cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * N * C * OC, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MatmulBackward(benchmark::State& state) {
  const int N = static_cast<int>(state.range(0));
  const int C = static_cast<int>(state.range(1));
  const int OC = static_cast<int>(state.range(2));
  auto inp = random_vector(static_cast<std::size_t>(N) * C, 1);
  auto weight = random_vector(static_cast<std::size_t>(OC) * C, 2);
  auto dout = random_vector(static_cast<std::size_t>(N) * OC, 3);
  std::vector<float> dinp(inp.size()), dweight(weight.size()), dbias(OC);
  for (auto _ : state) {
    ebb::nn::cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(),
                                  inp.data(), weight.data(), N, C, OC);
    benchmark::DoNotOptimize(dinp.data());
    benchmark::DoNotOptimize(dweight.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(4.0 * N * C * OC, benchmark::Counter::kIsIterationInvariantRate);
}

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

}  // namespace
