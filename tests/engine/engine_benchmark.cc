// Engine overhead per op on the cache-hit path: a chain of trivial ops (the closure does
// nothing) under a budget that never evicts, so what is measured is run() itself: checks,
// residency, allocation from the cache, the tape, the launch and its timing events.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "engine/ebb.h"

namespace ebb {
namespace {

// range(0): ops per iteration of the engine.
void BM_RunTrivialOpChain(benchmark::State& state) {
  DeviceOptions device_options;
  device_options.capacity_bytes = 1 * kGiB;
  auto device = create_device(device_options).value();
  auto engine = Engine::create({.device = *device, .policy = EvictionPolicy::kNone}).value();
  const auto ops = static_cast<int>(state.range(0));
  const std::vector<std::int64_t> shape{256};  // 1 KiB: served from the small pool's cache
  Tensor x = engine->input({"x", shape, DType::kF32, TensorKind::kInput}, nullptr).value();
  const OpFn nothing = [](const OpArgs&) {};
  const std::string name = "trivial";
  for (auto _ : state) {
    if (!engine->begin_iteration().ok()) state.SkipWithError("begin_iteration failed");
    Tensor y = x;
    for (int i = 0; i < ops; ++i) {
      Result<std::vector<Tensor>> out =
          engine->run(name, {y}, {{"y", shape, DType::kF32, TensorKind::kActivation}}, nothing);
      if (!out.ok()) {
        state.SkipWithError(out.status().to_string().c_str());
        break;
      }
      y = (*out)[0];
    }
    state.PauseTiming();
    if (!engine->end_iteration().ok()) state.SkipWithError("end_iteration failed");
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * ops);
  state.counters["evictions"] = static_cast<double>(engine->stats().evictions);
}
BENCHMARK(BM_RunTrivialOpChain)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ebb
