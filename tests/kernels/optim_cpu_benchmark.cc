// Throughput of the cpu optimizer step (kernels/optim.h) where it runs over offloaded optimizer
// state: 64 Mi elements, so that every buffer (256 MiB in fp32) is far past any L3 and the step is
// bound by memory, against a STREAM triad (a[i] = b[i] + s c[i]) in the same process, cut into
// the same TBB tasks (nn::cpu::for_each_chunk, kElementwiseChunk).
//
// Counters, over wall time (the work runs on TBB threads):
// - bytes_per_second: bytes of state one step reads plus those it writes, each buffer counted
//   once per step: AdamW 28 B per element (bf16 parameter with fp32 master and bf16 gradient:
//   reads master, m, v 12 + grad 2, writes master, m, v 12 + param 2; fp32 parameter without a
//   master: reads param, m, v, grad 16, writes param, m, v 12); Adafactor and SM3 (bf16 parameter
//   with master, bf16 gradient, no first moment) 12 B (reads grad 2 + master 4, writes master 4 +
//   param 2) plus 8 B per row and per column statistic. Write-allocate traffic is not counted,
//   as STREAM does not count it. Adafactor's matrix step reads the gradient four times and SM3's
//   twice (optim_cpu.cc), so their ratio to the triad also measures those extra passes;
// - triad_bytes_per_second: the triad on three fp32 buffers of the same state (12 B per element),
//   run after each step, outside the step's time;
// - vs_triad: bytes_per_second / triad_bytes_per_second.
// The *Level variants force a SimdLevel (0 scalar, 1 avx2, 2 avx512); a level this CPU lacks is
// reported as skipped.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/nn_cpu_launch.h"
#include "kernels/nn_scalar.h"
#include "kernels/optim.h"

namespace {

using ebb::LaunchContext;
using ebb::nn::Bf16;
using ebb::nn::cpu::for_each_chunk;
using ebb::nn::cpu::Index;
using ebb::nn::cpu::kElementwiseChunk;
using ebb::optim::FloatType;
using ebb::optim::cpu::SimdLevel;

const LaunchContext kCpu{ebb::DeviceKind::kCpu, nullptr};
constexpr Index kElements = Index{1} << 26;  // 64 Mi
constexpr Index kRows = 8192;                // Adafactor's and SM3's matrix: 8192 x 8192 = 64 Mi
constexpr Index kCols = kElements / kRows;

// Fills p[0, n) with f(i) on the TBB tasks that later touch it (first touch places the pages).
template <typename T, typename F>
void fill(std::vector<T>& v, const F& f) {
  for_each_chunk(static_cast<Index>(v.size()), kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) v[i] = f(i);
  });
}

// A value in [-1, 1) from i, cheap enough for 64 Mi elements.
float noise(Index i, std::uint32_t seed) {
  std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761U + seed * 40503U;
  h ^= h >> 15;
  h *= 2246822519U;
  h ^= h >> 13;
  return static_cast<float>(h >> 8) * 0x1p-23F - 1.0F;
}

// STREAM's triad over the same task split as the optimizer kernels.
void triad(float* a, const float* b, const float* c, float scalar, Index n) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) a[i] = b[i] + scalar * c[i];
  });
}

// Runs the benchmark loop: step() timed (manual time), then the triad on (a, b, c), timed apart;
// sets the three counters of the file comment.
template <typename Step>
void run(benchmark::State& state, double step_bytes, float* a, const float* b, const float* c,
         const Step& step) {
  using Clock = std::chrono::steady_clock;
  double step_seconds = 0;
  double triad_seconds = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    step();
    const auto t1 = Clock::now();
    triad(a, b, c, 1e-3F, kElements);
    const auto t2 = Clock::now();
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(seconds);
    step_seconds += seconds;
    triad_seconds += std::chrono::duration<double>(t2 - t1).count();
  }
  const double iterations = static_cast<double>(state.iterations());
  const double triad_rate = 12.0 * kElements * iterations / triad_seconds;
  state.counters["bytes_per_second"] =
      benchmark::Counter(step_bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["triad_bytes_per_second"] = triad_rate;
  state.counters["vs_triad"] = step_bytes * iterations / step_seconds / triad_rate;
}

// Forces state.range(0)'s level for one benchmark, or marks the benchmark skipped.
bool force_level(benchmark::State& state) {
  const auto level = static_cast<SimdLevel>(state.range(0));
  if (level > ebb::optim::cpu::detected_simd_level()) {
    state.SkipWithError("this CPU lacks the level");
    return false;
  }
  ebb::optim::cpu::set_simd_level(level);
  state.SetLabel(std::string(ebb::optim::cpu::simd_level_name(level)));
  return true;
}

// AdamW, mixed precision: bf16 parameter and gradient, fp32 master, m and v.
void adamw_bf16(benchmark::State& state) {
  std::vector<Bf16> param(kElements), grad(kElements);
  std::vector<float> master(kElements), m(kElements), v(kElements);
  fill(master, [](Index i) { return noise(i, 1); });
  fill(param, [&](Index i) { return ebb::nn::from_float<Bf16>(master[i]); });
  fill(grad, [](Index i) { return ebb::nn::from_float<Bf16>(noise(i, 2)); });
  fill(m, [](Index) { return 0.0F; });
  fill(v, [](Index) { return 0.0F; });
  const ebb::optim::AdamWStep s{.weight_decay = 0.01F, .step = 10};
  run(state, 28.0 * kElements, m.data(), v.data(), master.data(), [&] {
    ebb::optim::adamw(kCpu, FloatType::kBF16, param.data(), master.data(), m.data(), v.data(),
                      FloatType::kBF16, grad.data(), kElements, s);
  });
}

void BM_AdamWBf16Master(benchmark::State& state) { adamw_bf16(state); }

void BM_AdamWBf16MasterLevel(benchmark::State& state) {
  const SimdLevel previous = ebb::optim::cpu::simd_level();
  if (force_level(state)) adamw_bf16(state);
  ebb::optim::cpu::set_simd_level(previous);
}

// AdamW on fp32 parameters and gradients, without a master.
void BM_AdamWFp32(benchmark::State& state) {
  std::vector<float> param(kElements), grad(kElements), m(kElements), v(kElements);
  fill(param, [](Index i) { return noise(i, 1); });
  fill(grad, [](Index i) { return noise(i, 2); });
  fill(m, [](Index) { return 0.0F; });
  fill(v, [](Index) { return 0.0F; });
  const ebb::optim::AdamWStep s{.weight_decay = 0.01F, .step = 10};
  run(state, 28.0 * kElements, m.data(), v.data(), param.data(), [&] {
    ebb::optim::adamw(kCpu, FloatType::kF32, param.data(), nullptr, m.data(), v.data(),
                      FloatType::kF32, grad.data(), kElements, s);
  });
}

// The state Adafactor and SM3 share here: a bf16 kRows x kCols parameter with its fp32 master, a
// bf16 gradient, row and column statistics; and two more fp32 buffers for the triad.
struct FactoredState {
  std::vector<Bf16> param = std::vector<Bf16>(kElements);
  std::vector<Bf16> grad = std::vector<Bf16>(kElements);
  std::vector<float> master = std::vector<float>(kElements);
  std::vector<float> row = std::vector<float>(kRows);
  std::vector<float> col = std::vector<float>(kCols);
  std::vector<float> triad_a = std::vector<float>(kElements);
  std::vector<float> triad_b = std::vector<float>(kElements);

  FactoredState() {
    fill(master, [](Index i) { return noise(i, 1); });
    fill(param, [&](Index i) { return ebb::nn::from_float<Bf16>(master[i]); });
    fill(grad, [](Index i) { return ebb::nn::from_float<Bf16>(noise(i, 2)); });
    fill(triad_a, [](Index) { return 0.0F; });
    fill(triad_b, [](Index i) { return noise(i, 3); });
  }
  double step_bytes() const { return 12.0 * kElements + 8.0 * (kRows + kCols); }
};

void BM_Adafactor(benchmark::State& state) {
  FactoredState f;
  std::vector<float> workspace(ebb::optim::adafactor_workspace_floats(kRows, kCols));
  const ebb::optim::AdafactorStep s{.step = 10};
  run(state, f.step_bytes(), f.triad_a.data(), f.triad_b.data(), f.master.data(), [&] {
    ebb::optim::adafactor(kCpu, FloatType::kBF16, f.param.data(), f.master.data(), f.row.data(),
                          f.col.data(), nullptr, nullptr, FloatType::kBF16, f.grad.data(), kRows,
                          kCols, s, workspace.data());
  });
}

void BM_Sm3(benchmark::State& state) {
  FactoredState f;
  std::vector<float> workspace(ebb::optim::sm3_workspace_floats(kRows, kCols));
  const ebb::optim::Sm3Step s{.lr = 1e-3F};
  run(state, f.step_bytes(), f.triad_a.data(), f.triad_b.data(), f.master.data(), [&] {
    ebb::optim::sm3(kCpu, FloatType::kBF16, f.param.data(), f.master.data(), f.row.data(),
                    f.col.data(), nullptr, nullptr, FloatType::kBF16, f.grad.data(), kRows, kCols,
                    s, workspace.data());
  });
}

// The triad alone: 12 B per element (reads b and c, writes a).
void BM_Triad(benchmark::State& state) {
  std::vector<float> a(kElements), b(kElements), c(kElements);
  fill(a, [](Index) { return 0.0F; });
  fill(b, [](Index i) { return noise(i, 1); });
  fill(c, [](Index i) { return noise(i, 2); });
  for (auto _ : state) {
    triad(a.data(), b.data(), c.data(), 1e-3F, kElements);
    benchmark::DoNotOptimize(a.data());
  }
  state.counters["bytes_per_second"] =
      benchmark::Counter(12.0 * kElements, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_Triad)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AdamWBf16Master)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AdamWFp32)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Adafactor)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Sm3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AdamWBf16MasterLevel)
    ->Arg(static_cast<int>(SimdLevel::kScalar))
    ->Arg(static_cast<int>(SimdLevel::kAvx2))
    ->Arg(static_cast<int>(SimdLevel::kAvx512))
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
