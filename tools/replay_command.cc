// `ebb replay FILE`: replays an alloc trace or a DTR log through the caching allocator and
// reports how much memory it reserved for the workload's live bytes.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "allocator/alloc_trace.h"
#include "allocator/caching_allocator.h"
#include "allocator/dtr_log.h"
#include "allocator/replay.h"
#include "tools/commands.h"

namespace ebb::cli {
namespace {

struct ReplayArgs {
  std::string file;
  bool json = false;
  std::string budget;  // empty: no budget beyond the device
  bool classic = false;
  std::string device = "cpu";
};

enum class TraceFormat { kAllocTrace, kDtrLog };

// Reads the first non-blank line to tell an ebb alloc trace from a DTR log.
Result<TraceFormat> detect_format(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(bool dtr, file_is_dtr_log(path, "alloc trace"));
  return dtr ? TraceFormat::kDtrLog : TraceFormat::kAllocTrace;
}

Result<std::vector<AllocEvent>> load_events(const std::string& path, TraceFormat format) {
  if (format == TraceFormat::kAllocTrace) return read_alloc_trace(path);
  EBB_ASSIGN_OR_RETURN(DtrLog log, read_dtr_log(path));
  return dtr_to_alloc_events(log);
}

// A device large enough for the replay. The cpu device maps pages on demand and the replay
// never touches them, so a generous capacity costs address space only (on sim, always).
Result<std::unique_ptr<Device>> make_device(DeviceKind kind, std::size_t budget_bytes,
                                            std::size_t peak_live_bytes) {
  DeviceOptions options;
  options.kind = kind;
  if (kind == DeviceKind::kCuda) {
    options.capacity_bytes = 0;  // the GPU's free memory; the allocator's budget caps use
  } else {
    std::size_t twice_peak = (2 * peak_live_bytes + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB);
    options.capacity_bytes = std::max({budget_bytes, twice_peak, kGiB});
  }
  return create_device(options);
}

int run_replay(const ReplayArgs& args) {
  std::size_t budget_bytes = 0;
  if (!args.budget.empty()) {
    Result<std::size_t> budget = parse_byte_size(args.budget, "--budget");
    if (!budget.ok()) return report_error(budget.status());
    budget_bytes = *budget;
  }
  Result<DeviceKind> kind = parse_device_kind(args.device);
  if (!kind.ok()) return report_error(kind.status());

  Result<TraceFormat> format = detect_format(args.file);
  if (!format.ok()) return report_error(format.status());
  Result<std::vector<AllocEvent>> events = load_events(args.file, *format);
  if (!events.ok()) return report_error(events.status());

  Result<std::unique_ptr<Device>> device =
      make_device(*kind, budget_bytes, events_peak_live_bytes(*events));
  if (!device.ok()) return report_error(device.status());
  CachingAllocatorOptions options;
  options.budget_bytes = budget_bytes;
  options.expandable_segments = !args.classic;
  Result<ReplayResult> result = replay(*events, **device, options);
  if (!result.ok()) {
    return report_error(
        Status(result.status().code(), args.file + ": " + result.status().message()));
  }

  const ReplayResult& r = *result;
  const char* format_name = *format == TraceFormat::kDtrLog ? "dtr_log" : "alloc_trace";
  if (args.json) {
    nlohmann::ordered_json out;
    out["file"] = args.file;
    out["format"] = format_name;
    out["device"] = (*device)->name();
    out["expandable_segments"] = options.expandable_segments;
    out["budget_bytes"] = r.stats.budget_bytes;
    out["peak_live_bytes"] = r.peak_live_bytes;
    out["peak_reserved_bytes"] = r.peak_reserved_bytes;
    out["reserved_over_live"] = r.reserved_over_live;
    out["allocs"] = r.allocs;
    out["frees"] = r.frees;
    out["streams"] = r.streams;
    out["seconds"] = r.seconds;
    out["segments_peak"] = r.stats.all.segment.peak;
    out["num_device_alloc"] = r.stats.num_device_alloc;
    out["num_device_free"] = r.stats.num_device_free;
    out["num_alloc_retries"] = r.stats.num_alloc_retries;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("replay %s (%s, %zu events, %zu stream%s) on %s\n", args.file.c_str(), format_name,
              events->size(), r.streams, r.streams == 1 ? "" : "s", (*device)->name().c_str());
  std::printf("  allocator        %s segments, budget %s\n",
              options.expandable_segments ? "expandable" : "classic",
              format_bytes(r.stats.budget_bytes).c_str());
  std::printf("  peak live        %zu B (%s)\n", r.peak_live_bytes,
              format_bytes(r.peak_live_bytes).c_str());
  std::printf("  peak reserved    %zu B (%s)\n", r.peak_reserved_bytes,
              format_bytes(r.peak_reserved_bytes).c_str());
  std::printf("  reserved / live  %.4f\n", r.reserved_over_live);
  std::printf("  allocs / frees   %zu / %zu\n", r.allocs, r.frees);
  std::printf("  seconds          %.6f (%.0f ns per event)\n", r.seconds,
              events->empty() ? 0.0 : r.seconds * 1e9 / static_cast<double>(events->size()));
  std::printf("  segments         %lld at peak; device allocs %lld, device frees %lld\n",
              static_cast<long long>(r.stats.all.segment.peak),
              static_cast<long long>(r.stats.num_device_alloc),
              static_cast<long long>(r.stats.num_device_free));
  return 0;
}

}  // namespace

Command add_replay_command(CLI::App& parent) {
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* app = parent.add_subcommand(
      "replay",
      "Replay an ebb alloc trace (JSON lines) or a DTR log through the caching allocator");
  app->add_option("FILE", args->file, "alloc trace or DTR log (detected from the first line)")
      ->required();
  app->add_flag("--json", args->json, "print one JSON object instead of the summary");
  app->add_option("--budget", args->budget,
                  "ceiling on reserved bytes, e.g. 4GiB, 512MiB or plain bytes (default: none)");
  app->add_flag("--classic", args->classic,
                "classic (cudaMalloc-style) segments instead of expandable segments");
  app->add_option("--device", args->device, "cpu, cuda or sim (default cpu)");
  return Command{app, [args] { return run_replay(*args); }};
}

}  // namespace ebb::cli
