// `ebb bench alloc`: the cost of an alloc+free pair that the caching allocator serves from its
// cache, on one stream, from one thread. `ebb bench chip` and `ebb bench suite` (the matrix of
// workloads x budgets x policies, tools/bench_suite.h) register here too.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "allocator/caching_allocator.h"
#include "engine/schema/atomic_file.h"
#include "kernels/statistics.h"
#include "tools/bench_chip.h"
#include "tools/bench_suite.h"
#include "tools/commands.h"

namespace ebb::cli {
namespace {

struct BenchAllocArgs {
  bool json = false;
  std::string bytes = "4096";
  std::size_t iterations = 100'000;  // pairs per repetition
  std::size_t repetitions = 5;
  bool classic = false;
  std::string device = "cpu";
};

// Times `repetitions` runs of `iterations` alloc+free pairs; returns ns per pair per run.
Result<std::vector<double>> time_pairs(CachingAllocator& allocator, Stream& stream,
                                       std::size_t bytes, std::size_t iterations,
                                       std::size_t repetitions) {
  // Warm-up: the first allocation takes memory from the device; later ones hit the cache.
  EBB_ASSIGN_OR_RETURN(void* warm, allocator.allocate(bytes, stream));
  EBB_RETURN_IF_ERROR(allocator.free(warm));
  std::vector<double> pair_ns;
  for (std::size_t r = 0; r < repetitions; ++r) {
    auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < iterations; ++i) {
      Result<void*> p = allocator.allocate(bytes, stream);
      if (!p.ok()) return p.status();
      EBB_RETURN_IF_ERROR(allocator.free(*p));
    }
    std::chrono::duration<double, std::nano> elapsed = std::chrono::steady_clock::now() - start;
    pair_ns.push_back(elapsed.count() / static_cast<double>(iterations));
  }
  return pair_ns;
}

int run_bench_alloc(const BenchAllocArgs& args) {
  Result<std::size_t> bytes = parse_byte_size(args.bytes, "--bytes");
  if (!bytes.ok()) return report_error(bytes.status());
  if (args.iterations == 0 || args.repetitions == 0) {
    return report_error(invalid_argument("--iterations and --repetitions must be positive"));
  }
  Result<DeviceKind> kind = parse_device_kind(args.device);
  if (!kind.ok()) return report_error(kind.status());

  DeviceOptions device_options;
  device_options.kind = *kind;
  device_options.capacity_bytes =
      *kind == DeviceKind::kCuda ? 0 : std::max(kGiB, 2 * round_block_bytes(*bytes) + 64 * kMiB);
  Result<std::unique_ptr<Device>> device = create_device(device_options);
  if (!device.ok()) return report_error(device.status());
  CachingAllocatorOptions options;
  options.expandable_segments = !args.classic;
  Result<std::unique_ptr<CachingAllocator>> allocator = CachingAllocator::create(**device, options);
  if (!allocator.ok()) return report_error(allocator.status());

  Result<std::vector<double>> pair_ns = time_pairs(**allocator, (*device)->default_stream(), *bytes,
                                                   args.iterations, args.repetitions);
  if (!pair_ns.ok()) return report_error(pair_ns.status());
  double med = median(*pair_ns);
  double lo = *std::min_element(pair_ns->begin(), pair_ns->end());
  double hi = *std::max_element(pair_ns->begin(), pair_ns->end());

  if (args.json) {
    nlohmann::ordered_json out;
    out["pair_ns_median"] = med;
    out["pair_ns_min"] = lo;
    out["pair_ns_max"] = hi;
    out["bytes"] = *bytes;
    out["repetitions"] = args.repetitions;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("alloc+free of %zu B (%s) from the cache, %s segments, %s, one stream\n", *bytes,
              format_bytes(*bytes).c_str(), options.expandable_segments ? "expandable" : "classic",
              (*device)->name().c_str());
  std::printf("  %zu repetitions of %zu pairs: median %.1f ns per pair (min %.1f, max %.1f)\n",
              args.repetitions, args.iterations, med, lo, hi);
  return 0;
}

int run_bench_chip(const std::string& out, const std::string& memory) {
  Result<std::size_t> bytes = parse_byte_size(memory, "--memory");
  if (!bytes.ok()) return report_error(bytes.status());
  const std::string profile = measured_cpu_chip_json(*bytes);
  // The profile must read back as a chip (every figure positive, every source given).
  Result<ChipSpec> checked = chip_spec_from_json(profile, "ebb bench chip");
  if (!checked.ok()) return report_error(checked.status());
  if (out.empty()) {
    std::fputs(profile.c_str(), stdout);
    return 0;
  }
  Status written = write_file_atomically(out, profile);
  if (!written.ok()) return report_error(written);
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& parent) {
  CLI::App* bench = parent.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchAllocArgs>();
  CLI::App* alloc = bench->add_subcommand(
      "alloc", "Time an alloc+free pair served from the caching allocator's cache");
  alloc->add_flag("--json", args->json,
                  "print {\"pair_ns_median\", \"pair_ns_min\", \"pair_ns_max\", \"bytes\", "
                  "\"repetitions\"}");
  alloc->add_option("--bytes", args->bytes,
                    "request size, e.g. 4096 (small pool) or 8MiB (large pool); default 4096");
  alloc->add_option("--iterations", args->iterations, "pairs per repetition (default 100000)")
      ->check(CLI::PositiveNumber);
  alloc->add_option("--repetitions", args->repetitions, "timed repetitions (default 5)")
      ->check(CLI::PositiveNumber);
  alloc->add_flag("--classic", args->classic, "classic segments instead of expandable");
  alloc->add_option("--device", args->device, "cpu, cuda or sim (default cpu)");
  auto chip_out = std::make_shared<std::string>();
  auto chip_memory = std::make_shared<std::string>("4GiB");
  CLI::App* chip = bench->add_subcommand(
      "chip",
      "Describe this machine's cpu device as a chip (a hardware profile JSON): its fp32 "
      "throughput and memory bandwidth, measured; for checking the cost model "
      "(tools/cost_check.sh)");
  chip->add_option("--out", *chip_out, "write the profile here (default: standard output)");
  chip->add_option("--memory", *chip_memory, "the chip's memory (default 4GiB, the cpu device's)");
  auto suite_options = std::make_shared<BenchSuiteOptions>();
  suite_options->profiles_dir = EBB_PROFILES_DIR;
  suite_options->dtr_logs_dir = EBB_PROFILES_DIR "/../../shared/external/dtr_logs";
  CLI::App* suite = bench->add_subcommand(
      "suite",
      "Run workloads x budgets (100..20% of the peak) x policies (keep, dynamic, recompute-all, "
      "sqrt, swap-all, plan): profiles and DTR logs on the sim device, and with --device cpu or "
      "cuda the reference trainer on that device (measured, and checked bit for bit against its "
      "unconstrained run); write DIR/results.csv, results.json and one SVG per workload");
  suite->add_option("--out", suite_options->out_dir, "directory for the results (made if missing)")
      ->required();
  suite->add_option("--device", suite_options->device,
                    "sim (default: the profiles alone), or cpu or cuda (the trainer there too)");
  suite->add_option("--hw", suite_options->hw_file,
                    "hardware profile JSON (profiles/hw/); overrides --link-gbps");
  suite->add_option("--link-gbps", suite_options->link_gbps,
                    "host<->device GB/s each way (default 16; 0: no host link)");
  suite->add_flag("--quick", suite_options->quick,
                  "the small bundled workload only (all budgets and policies; for CI)");
  suite->add_option("--workload", suite_options->workloads,
                    "a DTR log or profile JSON to add to the matrix (repeatable)");
  suite->add_option("--dtr-logs", suite_options->dtr_logs_dir,
                    "where the README figures' DTR logs (unet, resnet32, lstm) are");
  suite->add_option("--max-overhead", suite_options->max_overhead,
                    "thrash limit of every cell: recompute past this multiple of the op time "
                    "fails the cell (default 2)");
  return Command{bench, [args, alloc, chip, chip_out, chip_memory, suite, suite_options] {
                   if (alloc->parsed()) return run_bench_alloc(*args);
                   if (chip->parsed()) return run_bench_chip(*chip_out, *chip_memory);
                   if (suite->parsed()) return run_bench_suite(*suite_options);
                   return 2;
                 }};
}

}  // namespace ebb::cli
