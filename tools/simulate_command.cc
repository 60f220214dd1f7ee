// `ebb simulate FILE`: runs one profiled iteration (a profile JSON or a DTR log) through the
// engine on a sim device (engine/planner/simulator.h) under a memory budget and a policy (a
// planner's plan or dynamic eviction), and reports what the budget costs: peak reserved bytes,
// extra (recompute) compute, swapped bytes, evictions and the simulated time. Ops run as empty
// closures whose cost is their profiled duration, so the workload may be far larger than this
// machine.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/planner/simulator.h"
#include "engine/schema/profile.h"
#include "tools/commands.h"
#include "tools/plan_eval.h"

namespace ebb::cli {
namespace {

struct SimulateArgs {
  std::string file;
  std::string budget;
  std::string policy;
  std::string hw_file;
  double link_gbps = 16;
  bool classic = false;
  bool json = false;
  double max_overhead = 2.0;
};

int run_simulate(const SimulateArgs& args) {
  if (Status s = check_max_overhead(args.max_overhead); !s.ok()) return report_error(s);
  Result<HardwareModel> hardware = hardware_from_args(args.hw_file, args.link_gbps);
  if (!hardware.ok()) return report_error(hardware.status());
  Result<Profile> profile = load_profile_or_dtr_log(args.file);
  if (!profile.ok()) return report_error(profile.status());
  const ProfileFigures figures = profile_figures(*profile);
  Result<std::size_t> budget = resolve_budget(args.budget, figures.peak_live_bytes);
  if (!budget.ok()) return report_error(budget.status());
  Result<Evaluation> result =
      evaluate_policy(*profile, args.policy, *budget, *hardware, !args.classic, args.max_overhead);
  if (!result.ok()) {
    return report_error(
        Status(result.status().code(), args.file + ": " + result.status().message()));
  }

  const SimulationResult& r = result->sim;
  const double base_s = static_cast<double>(figures.total_op_time_ns) * 1e-9;
  const double extra_s = static_cast<double>(r.stats.recompute_ns) * 1e-9;
  const double extra_fraction = base_s > 0 ? extra_s / base_s : 0;
  const std::int64_t swapped = r.stats.swapped_out_bytes + r.stats.swapped_in_bytes;
  const double simulated_s = std::chrono::duration<double>(r.simulated).count();
  if (args.json) {
    nlohmann::ordered_json out;
    out["file"] = args.file;
    out["policy"] = args.policy;
    out["expandable_segments"] = !args.classic;
    out["link_gbps"] = hardware->host_to_device_bytes_per_s * 1e-9;
    out["hardware"] = hardware->name;
    out["ops"] = profile->ops.size();
    out["budget_bytes"] = r.budget_bytes;
    out["peak_live_bytes"] = figures.peak_live_bytes;
    out["peak_reserved_bytes"] = r.peak_reserved_bytes;
    out["base_compute_s"] = base_s;
    out["extra_compute_s"] = extra_s;
    out["extra_compute_fraction"] = extra_fraction;
    out["swapped_bytes"] = swapped;
    out["swapped_out_bytes"] = r.stats.swapped_out_bytes;
    out["swapped_in_bytes"] = r.stats.swapped_in_bytes;
    out["evictions"] = r.stats.evictions;
    out["drops"] = r.stats.drops;
    out["swap_outs"] = r.stats.swap_outs;
    out["recomputed_ops"] = r.stats.recomputed_ops;
    out["simulated_s"] = simulated_s;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("simulate %s (%zu ops) on %s, policy %s\n", args.file.c_str(), profile->ops.size(),
              "a sim device", args.policy.c_str());
  std::printf("  budget           %zu B (%s)\n", r.budget_bytes,
              format_bytes(r.budget_bytes).c_str());
  std::printf("  peak live        %zu B (%s)\n", figures.peak_live_bytes,
              format_bytes(figures.peak_live_bytes).c_str());
  std::printf("  peak reserved    %zu B (%s)\n", r.peak_reserved_bytes,
              format_bytes(r.peak_reserved_bytes).c_str());
  std::printf("  compute          %.6f s base, %.6f s extra (%.4f of base)\n", base_s, extra_s,
              extra_fraction);
  std::printf("  evictions        %lld (%lld drops, %lld swap-outs), %lld recomputed ops\n",
              static_cast<long long>(r.stats.evictions), static_cast<long long>(r.stats.drops),
              static_cast<long long>(r.stats.swap_outs),
              static_cast<long long>(r.stats.recomputed_ops));
  std::printf("  swapped          %lld B (%s)\n", static_cast<long long>(swapped),
              format_bytes(static_cast<std::size_t>(swapped)).c_str());
  std::printf("  simulated time   %.6f s\n", simulated_s);
  return 0;
}

}  // namespace

Command add_simulate_command(CLI::App& parent) {
  auto args = std::make_shared<SimulateArgs>();
  CLI::App* app = parent.add_subcommand(
      "simulate",
      "Run one profiled iteration (profile JSON or DTR log) through the engine on a sim device "
      "under a budget");
  app->add_option("FILE", args->file, "profile JSON or DTR log (detected from the first line)")
      ->required();
  app->add_option("--budget", args->budget,
                  "device memory budget: bytes (4GiB, 512MiB) or a percentage of the peak live "
                  "bytes (60%)")
      ->required();
  app->add_option("--policy", args->policy,
                  "a planner (keep, recompute-all, sqrt, swap-all, plan) or dynamic eviction "
                  "(dynamic; none, swap, recompute, both)")
      ->required();
  app->add_option("--hw", args->hw_file,
                  "hardware profile JSON (profiles/hw/); overrides --link-gbps");
  app->add_option(
      "--link-gbps", args->link_gbps,
      "host<->device bandwidth of each direction in GB/s (default 16; 0: no host link)");
  app->add_flag("--classic", args->classic,
                "classic (cudaMalloc-style) segments instead of expandable segments");
  app->add_flag("--json", args->json, "print one JSON object instead of the summary");
  app->add_option("--max-overhead", args->max_overhead,
                  "thrash limit: fail once recompute exceeds this multiple of the base compute "
                  "(default 2; 0: no limit)");
  return Command{app, [args] { return run_simulate(*args); }};
}

}  // namespace ebb::cli
