// Host tier copy bandwidth on the cpu backend against a plain memcpy of the same size, measured
// in one run: a swap-out (device -> host tier buffer) and a swap-in (back) through the transfer
// engine's dedicated copy streams, each waited for on its Event as the engine waits.
//   build/bench/offload_benchmark --benchmark_repetitions=3 --benchmark_report_aggregates_only
// compares the medians' bytes_per_second.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "offload/host_tier.h"
#include "offload/transfer_engine.h"

namespace ebb {
namespace {

std::unique_ptr<Device> make_device() {
  DeviceOptions options;
  options.capacity_bytes = 512 * kMiB;
  return create_device(options).value();
}

void BM_Memcpy(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> src(bytes, std::byte{1});
  std::vector<std::byte> dst(bytes, std::byte{0});
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

// direction 0: device -> host tier (swap-out); 1: host tier -> device (swap-in).
void BM_HostTierCopy(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  const bool to_device = state.range(1) == 1;
  std::unique_ptr<Device> device = make_device();
  auto tier = HostTier::create(*device, bytes + 4 * kMiB).value();
  auto transfers = TransferEngine::create(*device, nullptr).value();
  void* dev = device->allocate(bytes).value();
  void* host = tier->allocate("bench", bytes).value();
  std::memset(host, 1, bytes);
  if (!device->default_stream().memset_async(dev, 2, bytes).ok() ||
      !device->default_stream().synchronize().ok()) {
    state.SkipWithError("could not fill the device buffer");
    return;
  }
  for (auto _ : state) {
    Result<std::shared_ptr<Transfer>> t = to_device
                                              ? transfers->copy_to_device(dev, host, bytes, nullptr)
                                              : transfers->copy_to_host(host, dev, bytes, nullptr);
    if (!t.ok() || !(*t)->wait().ok()) {
      state.SkipWithError("copy failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  transfers.reset();
  (void)tier->free(host);
  (void)device->free(dev);
}

BENCHMARK(BM_Memcpy)->Arg(4 << 20)->Arg(64 << 20)->UseRealTime();
BENCHMARK(BM_HostTierCopy)
    ->ArgNames({"bytes", "to_device"})
    ->Args({4 << 20, 0})
    ->Args({4 << 20, 1})
    ->Args({64 << 20, 0})
    ->Args({64 << 20, 1})
    ->UseRealTime();

}  // namespace
}  // namespace ebb
