// Micro-benchmarks of the caching allocator on the cpu device (and on a GPU where present):
// the cost of an alloc+free pair served from the cache, of a burst of mixed sizes, and of
// replaying the bundled training workload.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "allocator/caching_allocator.h"
#include "allocator/replay.h"

namespace ebb {
namespace {

std::unique_ptr<Device> make_device(DeviceKind kind) {
  DeviceOptions options;
  options.kind = kind;
  options.capacity_bytes = kind == DeviceKind::kCpu ? 4 * kGiB : 0;
  auto device = create_device(options);
  return device.ok() ? std::move(device).value() : nullptr;
}

std::unique_ptr<CachingAllocator> make_allocator(Device& device, bool expandable) {
  CachingAllocatorOptions options;
  options.expandable_segments = expandable;
  options.budget_bytes = std::min<std::size_t>(device.capacity_bytes(), 4 * kGiB);
  return std::move(CachingAllocator::create(device, options)).value();
}

// range(0): bytes; range(1): expandable segments (1) or classic (0); range(2): cuda (1) or cpu.
void BM_AllocFreePair(benchmark::State& state) {
  auto device = make_device(state.range(2) ? DeviceKind::kCuda : DeviceKind::kCpu);
  if (device == nullptr) {
    state.SkipWithError("device not present");
    return;
  }
  auto allocator = make_allocator(*device, state.range(1) != 0);
  Stream& stream = device->default_stream();
  const auto bytes = static_cast<std::size_t>(state.range(0));
  void* warm = *allocator->allocate(bytes, stream);
  (void)allocator->free(warm);
  for (auto _ : state) {
    Result<void*> p = allocator->allocate(bytes, stream);
    benchmark::DoNotOptimize(p);
    (void)allocator->free(*p);
  }
  state.SetLabel(device->name());
}
BENCHMARK(BM_AllocFreePair)
    ->ArgNames({"bytes", "expandable", "cuda"})
    ->ArgsProduct({{512, 4096, 1 << 20, 8 << 20}, {1, 0}, {0}});
BENCHMARK(BM_AllocFreePair)
    ->Name("BM_AllocFreePair_cuda")
    ->ArgNames({"bytes", "expandable", "cuda"})
    ->ArgsProduct({{4096, 8 << 20}, {1, 0}, {1}});

// 64 allocations of mixed sizes (512 B .. 4 MiB), then 64 frees in random order; time per op.
void BM_MixedBurst(benchmark::State& state) {
  auto device = make_device(DeviceKind::kCpu);
  auto allocator = make_allocator(*device, state.range(0) != 0);
  Stream& stream = device->default_stream();
  std::mt19937_64 rng(42);
  std::vector<std::size_t> sizes(64);
  for (auto& s : sizes) s = std::size_t{512} << std::uniform_int_distribution<int>(0, 13)(rng);
  std::vector<std::size_t> order(64);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<void*> ptrs(64);
  for (auto _ : state) {
    for (std::size_t i = 0; i < sizes.size(); ++i) ptrs[i] = *allocator->allocate(sizes[i], stream);
    for (std::size_t i : order) (void)allocator->free(ptrs[i]);
  }
  state.SetItemsProcessed(state.iterations() * 128);
}
BENCHMARK(BM_MixedBurst)->ArgNames({"expandable"})->Arg(1)->Arg(0);

// The bundled GPT-block training trace, replayed start to finish (allocator created anew).
void BM_ReplayBundledTrace(benchmark::State& state) {
  auto events = read_alloc_trace(EBB_SOURCE_DIR "/profiles/workloads/gpt_block_train.trace.jsonl");
  if (!events.ok()) {
    state.SkipWithError(events.status().to_string().c_str());
    return;
  }
  auto device = make_device(DeviceKind::kCpu);
  CachingAllocatorOptions options;
  options.expandable_segments = state.range(0) != 0;
  double ratio = 0;
  for (auto _ : state) {
    auto r = replay(*events, *device, options);
    if (!r.ok()) {
      state.SkipWithError(r.status().to_string().c_str());
      return;
    }
    ratio = r->reserved_over_live;
  }
  state.counters["reserved_over_live"] = ratio;
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(events->size()));
}
BENCHMARK(BM_ReplayBundledTrace)->ArgNames({"expandable"})->Arg(1)->Arg(0);

}  // namespace
}  // namespace ebb
