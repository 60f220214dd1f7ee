// NvmeChunkStore::stream over 256 MiB of state against the streaming bound measured on the same
// tier in the same run: state / (the tier's sequential read bandwidth) + state / (its sequential
// write bandwidth), both measured with chunk-sized extents, one call at a time, as the store
// issues them. The update is trivial (one float per part), so the stream is I/O bound:
// stream_s near stream_io_s (the stream's own time inside the tier's reads and writes, which the
// tier serializes) means the pipeline hides everything but the disk, and stream_over_bound
// compares that with the tier's standalone bandwidth (a shared or virtual disk varies by tens of
// percent between measurements, so read it over repetitions).
//   build/bench/chunk_store_benchmark --benchmark_repetitions=5 --benchmark_report_aggregates_only
// The files go to $TMPDIR (default /tmp), which must take O_DIRECT (not a tmpfs before 6.6).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "offload/chunk_store.h"

namespace ebb {
namespace {

constexpr std::size_t kStateBytes = 256 * kMiB;
constexpr std::size_t kParts = 3;  // master, m, v

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// The tier's sequential write and read bandwidth (bytes/s), chunk-sized extents one call at a
// time; the extents are freed again.
struct Bandwidth {
  double write_bytes_per_s = 0;
  double read_bytes_per_s = 0;
};
Result<Bandwidth> measure_tier(NvmeTier& tier, std::size_t chunk_bytes) {
  std::vector<std::byte> buffer(chunk_bytes, std::byte{7});
  std::vector<ExtentId> extents;
  const auto w0 = std::chrono::steady_clock::now();
  for (std::size_t done = 0; done < kStateBytes; done += chunk_bytes) {
    EBB_ASSIGN_OR_RETURN(ExtentId e, tier.write("bandwidth", buffer.data(), chunk_bytes));
    extents.push_back(e);
  }
  const auto w1 = std::chrono::steady_clock::now();
  for (ExtentId e : extents) EBB_RETURN_IF_ERROR(tier.read(e, buffer.data(), chunk_bytes));
  const auto r1 = std::chrono::steady_clock::now();
  for (ExtentId e : extents) EBB_RETURN_IF_ERROR(tier.free(e));
  const double bytes = double(extents.size() * chunk_bytes);
  return Bandwidth{bytes / seconds(w1 - w0), bytes / seconds(r1 - w1)};
}

void BM_ChunkStoreStream(benchmark::State& state) {
  const auto chunk_bytes = static_cast<std::size_t>(state.range(0));
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  Result<std::unique_ptr<NvmeTier>> tier =
      NvmeTier::create({.directories = {dir.string()}, .capacity_bytes = 3 * kStateBytes});
  if (!tier.ok()) {
    state.SkipWithError(tier.status().to_string().c_str());
    return;
  }
  std::unique_ptr<Device> device = create_device({}).value();
  std::unique_ptr<HostTier> host = HostTier::create(*device, 4 * chunk_bytes).value();
  std::vector<ChunkShape> shapes(
      kStateBytes / chunk_bytes,
      ChunkShape{std::vector<std::size_t>(kParts, chunk_bytes / kParts / 64 * 64)});
  Result<std::unique_ptr<NvmeChunkStore>> store =
      NvmeChunkStore::create(**tier, *host, {.name = "bench", .chunks = shapes}, nullptr);
  if (!store.ok()) {
    state.SkipWithError(store.status().to_string().c_str());
    return;
  }
  Result<Bandwidth> bandwidth = measure_tier(**tier, chunk_bytes);
  if (!bandwidth.ok()) {
    state.SkipWithError(bandwidth.status().to_string().c_str());
    return;
  }
  const double bytes = double((*store)->stats().extent_bytes);
  const double bound_s = bytes / bandwidth->read_bytes_per_s + bytes / bandwidth->write_bytes_per_s;
  double read_s = 0;
  double write_s = 0;
  double compute_s = 0;
  double wall_s = 0;
  for (auto _ : state) {
    Status s = (*store)->stream([](std::size_t, std::span<const std::span<std::byte>> parts) {
      for (std::span<std::byte> part : parts) {
        float x = 0;
        std::memcpy(&x, part.data(), sizeof x);
        x += 1;
        std::memcpy(part.data(), &x, sizeof x);
      }
      return ok_status();
    });
    if (!s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      return;
    }
    const ChunkStoreStats stats = (*store)->stats();
    read_s += stats.last_read_s;
    write_s += stats.last_write_s;
    compute_s += stats.last_compute_s;
    wall_s += stats.last_wall_s;
  }
  const auto n = double(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["tier_read_GBps"] = bandwidth->read_bytes_per_s / 1e9;
  state.counters["tier_write_GBps"] = bandwidth->write_bytes_per_s / 1e9;
  state.counters["stream_read_GBps"] = bytes * n / read_s / 1e9;
  state.counters["stream_write_GBps"] = bytes * n / write_s / 1e9;
  state.counters["compute_s"] = compute_s / n;
  state.counters["stream_io_s"] = (read_s + write_s) / n;
  state.counters["stream_s"] = wall_s / n;
  state.counters["bound_s"] = bound_s;
  state.counters["stream_over_bound"] = wall_s / n / bound_s;
}

BENCHMARK(BM_ChunkStoreStream)
    ->ArgName("chunk_bytes")
    ->Arg(1 << 20)
    ->Arg(4 << 20)
    ->Arg(16 << 20)
    ->Arg(32 << 20)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ebb
