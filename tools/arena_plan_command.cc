// `ebb arena-plan FILE`: plans the offsets of a static allocation problem (a MiniMalloc CSV, or
// the storages of a DTR log) in one arena and reports the height against the lower bound and
// the capacity; --replay also runs the workload through the planned arena and through the
// caching allocator and sets their reserved peaks side by side.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "allocator/arena_csv.h"
#include "allocator/arena_plan.h"
#include "allocator/dtr_log.h"
#include "allocator/planned_arena.h"
#include "allocator/replay.h"
#include "tools/commands.h"

namespace ebb::cli {
namespace {

struct ArenaPlanArgs {
  std::string file;
  bool json = false;
  std::string out;
  double time_limit_seconds = 10;
  std::size_t alignment = 0;  // 0: 1 for a CSV (or its own column), 512 for a DTR log
  bool replay = false;
  bool greedy_only = false;
};

// The problem, whichever format it came in, and the events to replay it with.
struct LoadedProblem {
  ArenaProblem problem;            // for a DTR log: one buffer per storage, no lines
  std::vector<AllocEvent> events;  // in time order
  std::size_t capacity_bytes = 0;  // from the file name; 0 when it names none
  const char* format = "";
};

// Alloc and free events in time order (frees first at equal times: lifetimes are half-open).
std::vector<AllocEvent> events_of(const std::vector<PlanBuffer>& buffers) {
  std::vector<std::pair<std::pair<std::int64_t, int>, AllocEvent>> timed;
  for (const PlanBuffer& b : buffers) {
    AllocEvent alloc;
    alloc.id = b.id;
    alloc.bytes = b.size_bytes;
    AllocEvent free = alloc;
    free.op = AllocEvent::Op::kFree;
    free.bytes = 0;
    timed.emplace_back(std::make_pair(b.lower, 1), std::move(alloc));
    timed.emplace_back(std::make_pair(b.upper, 0), std::move(free));
  }
  std::stable_sort(timed.begin(), timed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<AllocEvent> events;
  events.reserve(timed.size());
  for (auto& [when, event] : timed) events.push_back(std::move(event));
  return events;
}

Result<LoadedProblem> load(const ArenaPlanArgs& args) {
  LoadedProblem loaded;
  EBB_ASSIGN_OR_RETURN(bool dtr, file_is_dtr_log(args.file, "MiniMalloc CSV"));
  if (dtr) {
    loaded.format = "dtr_log";
    EBB_ASSIGN_OR_RETURN(DtrLog log, read_dtr_log(args.file));
    EBB_ASSIGN_OR_RETURN(loaded.events, dtr_to_alloc_events(log));
    EBB_ASSIGN_OR_RETURN(
        loaded.problem.buffers,
        plan_buffers_from_events(loaded.events, args.alignment ? args.alignment : kMinBlockBytes));
    for (const PlanBuffer& b : loaded.problem.buffers) {
      loaded.problem.ids.push_back(std::to_string(b.id));
    }
    loaded.problem.path = args.file;
    return loaded;
  }
  loaded.format = "minimalloc_csv";
  EBB_ASSIGN_OR_RETURN(loaded.problem, read_arena_csv(args.file));
  if (args.alignment != 0) {
    for (PlanBuffer& b : loaded.problem.buffers)
      b.alignment = std::max(b.alignment, args.alignment);
  }
  loaded.capacity_bytes = capacity_from_file_name(args.file);
  loaded.events = events_of(loaded.problem.buffers);
  return loaded;
}

// The file line of a buffer live at the peak (the one whose start reaches it), for messages.
std::size_t peak_line(const ArenaProblem& problem) {
  std::vector<std::tuple<std::int64_t, std::int64_t, std::size_t>> events;  // time, delta, index
  for (std::size_t i = 0; i < problem.buffers.size(); ++i) {
    const PlanBuffer& b = problem.buffers[i];
    events.emplace_back(b.lower, static_cast<std::int64_t>(b.size_bytes), i);
    events.emplace_back(b.upper, -static_cast<std::int64_t>(b.size_bytes), i);
  }
  std::sort(events.begin(), events.end());
  std::int64_t live = 0;
  std::int64_t peak = -1;
  std::size_t at = 0;
  for (const auto& [time, delta, index] : events) {
    live += delta;
    if (live > peak) {
      peak = live;
      at = index;
    }
  }
  return at < problem.lines.size() ? problem.lines[at] : 0;
}

struct ReplayFigures {
  ReplayResult caching;
  PlannedReplayResult planned;
};

Result<ReplayFigures> replay_both(const LoadedProblem& loaded, const ArenaPlan& plan) {
  const std::size_t peak = events_peak_live_bytes(loaded.events);
  DeviceOptions device_options;
  device_options.kind = DeviceKind::kCpu;
  // The replay never touches its memory: a generous capacity costs address space only.
  device_options.capacity_bytes = std::max({2 * peak, 2 * plan.height_bytes, kGiB});
  device_options.capacity_bytes =
      (device_options.capacity_bytes + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB);
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<Device> device, create_device(device_options));
  ReplayFigures figures;
  EBB_ASSIGN_OR_RETURN(figures.caching, replay(loaded.events, *device, {}));
  EBB_ASSIGN_OR_RETURN(figures.planned,
                       replay_planned(loaded.events, loaded.problem.buffers, plan, *device, {}));
  return figures;
}

int run_arena_plan(const ArenaPlanArgs& args) {
  Result<LoadedProblem> loaded = load(args);
  if (!loaded.ok()) return report_error(loaded.status());
  const ArenaProblem& problem = loaded->problem;
  PlanOptions options;
  options.capacity_bytes = loaded->capacity_bytes;
  options.time_limit_seconds = args.time_limit_seconds;
  options.search = !args.greedy_only;
  Result<ArenaPlan> planned = plan_arena(problem.buffers, options);
  if (!planned.ok())
    return report_error(
        Status(planned.status().code(), args.file + ": " + planned.status().message()));
  const ArenaPlan& plan = *planned;
  if (Status valid = validate_plan(problem.buffers, plan); !valid.ok()) {
    return report_error(
        internal_error(args.file + ": the planner's packing is wrong: " + valid.message()));
  }
  std::optional<ReplayFigures> replayed;
  if (args.replay) {
    Result<ReplayFigures> figures = replay_both(*loaded, plan);
    if (!figures.ok()) return report_error(figures.status());
    replayed = *figures;
  }
  const double ratio =
      plan.lower_bound_bytes == 0
          ? 1.0
          : static_cast<double>(plan.height_bytes) / static_cast<double>(plan.lower_bound_bytes);
  if (args.json) {
    nlohmann::ordered_json out;
    out["file"] = args.file;
    out["format"] = loaded->format;
    out["buffers"] = problem.buffers.size();
    out["height"] = plan.height_bytes;
    out["lower_bound"] = plan.lower_bound_bytes;
    out["height_over_lower_bound"] = ratio;
    out["capacity"] = plan.capacity_bytes;
    out["fits"] = plan.fits;
    out["optimal"] = plan.optimal;
    out["infeasible"] = plan.infeasible;
    out["method"] = plan.method;
    out["greedy_height"] = plan.greedy_height_bytes;
    out["search_nodes"] = plan.search_nodes;
    out["seconds"] = plan.seconds;
    if (replayed) {
      out["replay_peak_live"] = replayed->caching.peak_live_bytes;
      out["replay_caching_peak_reserved"] = replayed->caching.peak_reserved_bytes;
      out["replay_planned_peak_reserved"] = replayed->planned.replay.peak_reserved_bytes;
      out["replay_planned_fallback_allocs"] = replayed->planned.arena.fallback_allocs;
    }
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("arena-plan %s (%s, %zu buffers)\n", args.file.c_str(), loaded->format,
                problem.buffers.size());
    std::printf("  height           %zu B (%s)\n", plan.height_bytes,
                format_bytes(plan.height_bytes).c_str());
    std::printf("  lower bound      %zu B (%s)\n", plan.lower_bound_bytes,
                format_bytes(plan.lower_bound_bytes).c_str());
    std::printf("  height / lower   %.4f%s\n", ratio, plan.optimal ? " (optimal, proved)" : "");
    if (plan.capacity_bytes != 0) {
      std::printf("  capacity         %zu B: %s\n", plan.capacity_bytes,
                  plan.fits         ? "fits"
                  : plan.infeasible ? "INFEASIBLE (proved)"
                                    : "not reached within the time limit");
    }
    std::printf("  method           %s (best greedy %zu B, %lld search nodes)\n",
                plan.method.c_str(), plan.greedy_height_bytes,
                static_cast<long long>(plan.search_nodes));
    std::printf("  seconds          %.6f\n", plan.seconds);
    if (replayed) {
      std::printf("  replay peak live %zu B\n", replayed->caching.peak_live_bytes);
      std::printf("  reserved peak    caching allocator %zu B (%s), planned arena %zu B (%s)\n",
                  replayed->caching.peak_reserved_bytes,
                  format_bytes(replayed->caching.peak_reserved_bytes).c_str(),
                  replayed->planned.replay.peak_reserved_bytes,
                  format_bytes(replayed->planned.replay.peak_reserved_bytes).c_str());
      std::printf("  arena fallbacks  %lld\n",
                  static_cast<long long>(replayed->planned.arena.fallback_allocs));
    }
  }
  if (!plan.fits) {
    std::string what = "capacity " + std::to_string(plan.capacity_bytes) + " ";
    if (plan.lower_bound_bytes > plan.capacity_bytes) {
      const std::size_t line = peak_line(problem);
      what = args.file + (line ? ":" + std::to_string(line) : "") + ": " + what +
             "cannot hold the lower bound " + std::to_string(plan.lower_bound_bytes) +
             " (the bytes live when this buffer starts)";
    } else {
      what = args.file + ": " + what +
             (plan.infeasible ? "is infeasible (proved by the search)"
                              : "was not reached within the time limit");
    }
    return report_error(
        out_of_memory(what + "; best height found " + std::to_string(plan.height_bytes)));
  }
  if (!args.out.empty()) {
    if (Status written = write_arena_csv(args.out, problem, plan.offsets); !written.ok()) {
      return report_error(written);
    }
  }
  return 0;
}

}  // namespace

Command add_arena_plan_command(CLI::App& parent) {
  auto args = std::make_shared<ArenaPlanArgs>();
  CLI::App* app = parent.add_subcommand(
      "arena-plan",
      "Plan every buffer's offset in one arena (MiniMalloc CSV or DTR log) and report the height");
  app->add_option("FILE", args->file,
                  "MiniMalloc CSV (id,lower,upper,size; a capacity in the name, e.g. "
                  "A.1048576.csv) or DTR log (detected from the first line)")
      ->required();
  app->add_flag("--json", args->json, "print one JSON object instead of the summary");
  app->add_option("--out", args->out, "write the CSV with an offset column (MiniMalloc's output)");
  app->add_option("--time-limit", args->time_limit_seconds,
                  "seconds the planner may take, greedy included (default 10)")
      ->check(CLI::PositiveNumber);
  app->add_option("--alignment", args->alignment,
                  "offset alignment in bytes (default: 1 for a CSV, 512 for a DTR log)")
      ->check(CLI::PositiveNumber);
  app->add_flag("--replay", args->replay,
                "also replay the workload through the planned arena and the caching allocator "
                "and print both reserved peaks");
  app->add_flag("--greedy-only", args->greedy_only, "skip the search (the greedy packing only)");
  return Command{app, [args] { return run_arena_plan(*args); }};
}

}  // namespace ebb::cli
