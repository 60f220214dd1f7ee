// `ebb plan FILE --budget B`: plans one profiled iteration (a profile JSON or a DTR log) under a
// budget for a hardware model (--hw, or --link-gbps; 0 = recompute only), checks the plan on the
// sim device and prints what it costs; --out writes the plan JSON. A budget no plan of the
// policy fits exits 1 with the smallest feasible budget. Recompute only, it prints the lower
// bound that no recompute-only plan beats (engine/planner/plan_bounds.h) and what DTR's own
// simulator does at the budget (engine/planner/dtr_reference.h) too.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/planner/dtr_reference.h"
#include "engine/planner/hardware_probe.h"
#include "engine/planner/plan_bounds.h"
#include "engine/planner/planner.h"
#include "engine/planner/state_placement.h"
#include "tools/commands.h"
#include "tools/plan_config_command.h"
#include "tools/plan_eval.h"
#include "tools/report/run_reports.h"

namespace ebb::cli {
namespace {

struct PlanArgs {
  std::string file;
  std::string budget;
  std::string policy = "plan";
  std::string hw_file;
  std::string out;
  double link_gbps = 0;
  std::string optimizer_state;  // "auto": also place each slice's state (or empty)
  double cpu_state_gbps = 0;    // the CPU step's rate for it; 0: measured here
  bool classic = false;
  bool json = false;
  double max_overhead = 2.0;
  ConfigArgs config;  // --model: the configuration mode
  // --report, --chrome-trace
  report::ReportPaths reports;
};

int run_plan(const PlanArgs& args) {
  if (!args.config.model.empty() || args.config.compare_hw) {
    if (!args.reports.empty() && args.config.compare_hw) {
      return report_error(invalid_argument(
          "ebb plan --compare-hw: --report and --chrome-trace report one configuration; give "
          "--hw FILE instead"));
    }
    if (!args.file.empty()) {
      return report_error(invalid_argument("ebb plan: give a profile FILE or --model, not both (" +
                                           args.file + ")"));
    }
    if (args.config.model.empty()) {
      return report_error(invalid_argument("ebb plan --compare-hw needs --model"));
    }
    ConfigArgs config = args.config;
    config.hw_file = args.hw_file;
    config.reports = args.reports;
    config.policy = args.policy;
    config.budget = args.budget;
    config.json = args.json;
    config.optimizer_state = args.optimizer_state;
    return run_plan_config(config);
  }
  if (args.file.empty() || args.budget.empty()) {
    return report_error(invalid_argument(
        "ebb plan: give a profile FILE and --budget, or --model for a configuration"));
  }
  if (Status s = check_max_overhead(args.max_overhead); !s.ok()) return report_error(s);
  if (Status s = report::check_report_paths(args.reports); !s.ok()) return report_error(s);
  Result<HardwareModel> hardware = hardware_from_args(args.hw_file, args.link_gbps);
  if (!hardware.ok()) return report_error(hardware.status());
  Result<Profile> profile = load_profile_or_dtr_log(args.file);
  if (!profile.ok()) return report_error(profile.status());
  const ProfileFigures figures = profile_figures(*profile);
  Result<std::size_t> budget = resolve_budget(args.budget, figures.peak_live_bytes);
  if (!budget.ok()) return report_error(budget.status());
  // Recompute only: what no plan can beat (engine/planner/plan_bounds.h), beside what this one
  // does.
  std::optional<RecomputeBound> bound;
  if (!hardware->has_host_link()) bound = recompute_lower_bound(*profile, *budget);
  const auto bound_json = [&](nlohmann::ordered_json& out) {
    if (!bound.has_value()) return;
    nlohmann::ordered_json b;
    b["min_budget_bytes"] = bound->min_budget_bytes;
    b["min_budget_op"] = bound->min_budget_op;
    b["extra_compute_s"] = static_cast<double>(bound->extra_compute_ns) * 1e-9;
    b["extra_compute_fraction"] = figures.total_op_time_ns > 0
                                      ? static_cast<double>(bound->extra_compute_ns) /
                                            static_cast<double>(figures.total_op_time_ns)
                                      : 0.0;
    b["extra_compute_op"] = bound->extra_compute_op;
    out["recompute_lower_bound"] = b;
  };
  // Recompute only: DTR's simulator at the same budget (its default remat limit, 1x the base
  // compute, as its authors ran it), on the profile as the engine runs it, as the planner does.
  std::optional<DtrReferenceResult> dtr;
  double dtr_seconds = 0;
  if (!hardware->has_host_link()) {
    DtrReferenceOptions dtr_options;
    dtr_options.budget_bytes = *budget;
    const auto start = std::chrono::steady_clock::now();
    Result<DtrReferenceResult> ran = run_dtr_reference(as_engine_runs(*profile), dtr_options);
    if (!ran.ok()) return report_error(ran.status());
    dtr = *std::move(ran);
    dtr_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const auto dtr_json = [&](nlohmann::ordered_json& out) {
    if (!dtr.has_value()) return;
    nlohmann::ordered_json d;
    d["feasible"] = dtr->feasible();
    d["outcome"] = std::string(dtr_outcome_name(dtr->outcome));
    d["extra_compute"] = dtr->extra_compute();
    d["evictions"] = dtr->evictions;
    d["rematerializations"] = dtr->rematerializations;
    d["peak_bytes"] = dtr->peak_bytes;
    d["remat_limit"] = DtrReferenceOptions{}.max_remat_overhead;
    d["seconds"] = dtr_seconds;
    if (!dtr->feasible()) d["message"] = dtr->message;
    out["dtr_reference"] = d;
  };
  Result<Evaluation> result =
      evaluate_policy(*profile, args.policy, *budget, *hardware, !args.classic, args.max_overhead);
  if (!result.ok()) {
    const Status status(result.status().code(), args.file + ": " + result.status().message());
    if (args.json) {
      nlohmann::ordered_json out;
      out["file"] = args.file;
      out["policy"] = args.policy;
      out["budget_bytes"] = *budget;
      out["feasible"] = false;
      out["error"] = status.to_string();
      bound_json(out);
      dtr_json(out);
      std::printf("%s\n", out.dump().c_str());
    }
    return report_error(status);
  }
  // --optimizer-state auto: each slice's master weights and moments, placed for the budget.
  std::optional<StatePlacementPlan> state;
  if (!args.optimizer_state.empty()) {
    if (args.optimizer_state != "auto") {
      return report_error(invalid_argument("--optimizer-state \"" + args.optimizer_state +
                                           "\": `ebb plan` places state only with auto"));
    }
    const double cpu =
        args.cpu_state_gbps > 0 ? args.cpu_state_gbps * 1e9 : measure_host_optimizer_bytes_per_s();
    Result<StatePlacementInputs> inputs = state_placement_inputs(*profile, *budget, *hardware, cpu);
    if (!inputs.ok()) return report_error(inputs.status());
    Result<StatePlacementPlan> placed = plan_state_placement(*inputs);
    if (!placed.ok()) return report_error(placed.status());
    state = *std::move(placed);
    if (result->plan.has_value()) result->plan->state_placement = state_decisions(*state);
  }
  if (!args.out.empty() && result->plan.has_value()) {
    Status written = write_plan(*result->plan, args.out);
    if (!written.ok()) return report_error(written);
  }
  if (Status s =
          report::write_plan_reports(*profile, args.file, result->plan, *budget, args.reports);
      !s.ok()) {
    return report_error(s);
  }

  const SimulationResult& r = result->sim;
  const double base_s = static_cast<double>(r.base_compute_ns) * 1e-9;
  const double extra_s = static_cast<double>(r.stats.recompute_ns) * 1e-9;
  const double step_s = std::chrono::duration<double>(r.simulated).count();
  const double planner_s = result->plan ? result->plan->planner_seconds : 0.0;
  const std::int64_t swapped = r.stats.swapped_out_bytes + r.stats.swapped_in_bytes;
  const std::size_t evictions = result->plan ? result->plan->evictions.size() : 0;
  if (args.json) {
    nlohmann::ordered_json out;
    out["file"] = args.file;
    out["policy"] = args.policy;
    out["hardware"] = hardware->name;
    out["feasible"] = true;
    out["ops"] = profile->ops.size();
    out["budget_bytes"] = r.budget_bytes;
    out["peak_live_bytes"] = figures.peak_live_bytes;
    out["peak_reserved_bytes"] = r.peak_reserved_bytes;
    out["base_compute_s"] = base_s;
    out["extra_compute_s"] = extra_s;
    out["extra_compute_fraction"] = base_s > 0 ? extra_s / base_s : 0.0;
    out["predicted_step_s"] = step_s;
    out["extra_time_fraction"] = base_s > 0 ? step_s / base_s - 1 : 0.0;
    out["swapped_bytes"] = swapped;
    out["recomputed_ops"] = r.stats.recomputed_ops;
    out["planned_evictions"] = evictions;
    out["planner_seconds"] = planner_s;
    if (state.has_value()) {
      nlohmann::ordered_json slices = nlohmann::ordered_json::array();
      for (const StateSliceDecision& d : state_decisions(*state)) {
        slices.push_back({{"slice", d.slice},
                          {"choice", d.choice},
                          {"state_bytes", d.state_bytes},
                          {"predicted_s", d.predicted_s}});
      }
      out["state_placement"] = slices;
      out["state_predicted_s"] = state->predicted_s;
      out["state_smallest_budget_bytes"] = state->smallest_budget_bytes;
    }
    bound_json(out);
    dtr_json(out);
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("plan %s (%zu ops), policy %s, hardware %s\n", args.file.c_str(), profile->ops.size(),
              args.policy.c_str(), hardware->name.c_str());
  std::printf("  budget           %zu B (%s)\n", r.budget_bytes,
              format_bytes(r.budget_bytes).c_str());
  std::printf("  peak reserved    %zu B (%s) on the sim device\n", r.peak_reserved_bytes,
              format_bytes(r.peak_reserved_bytes).c_str());
  std::printf("  compute          %.6f s base, %.6f s extra (%.4f of base)\n", base_s, extra_s,
              base_s > 0 ? extra_s / base_s : 0.0);
  std::printf("  predicted step   %.6f s (%.4f over base)\n", step_s,
              base_s > 0 ? step_s / base_s - 1 : 0.0);
  std::printf("  evictions        %zu planned; %lld recomputed ops, %lld B swapped\n", evictions,
              static_cast<long long>(r.stats.recomputed_ops), static_cast<long long>(swapped));
  std::printf("  planner          %.3f s\n", planner_s);
  if (state.has_value()) {
    std::printf("  optimizer state  placed per slice for the budget: %.6f s predicted\n",
                state->predicted_s);
    for (const StateSliceChoice& c : state->slices) {
      std::printf("    %-14s %-8s %12zu B  %.6f s\n", c.name.c_str(),
                  std::string(state_choice_name(c.choice)).c_str(), c.state_bytes, c.predicted_s);
    }
  }
  if (bound.has_value()) {
    std::printf(
        "  lower bound      %.6f s extra (%.4f of base) for any recompute-only plan; none "
        "fits below %zu B\n",
        static_cast<double>(bound->extra_compute_ns) * 1e-9,
        base_s > 0 ? static_cast<double>(bound->extra_compute_ns) * 1e-9 / base_s : 0.0,
        bound->min_budget_bytes);
  }
  if (dtr.has_value()) {
    if (dtr->feasible()) {
      std::printf("  DTR reference    %.6f s extra (%.4f of base), %zu evictions\n",
                  static_cast<double>(dtr->remat_compute_ns) * 1e-9, dtr->extra_compute(),
                  dtr->evictions);
    } else {
      std::printf("  DTR reference    %s (%s)\n",
                  std::string(dtr_outcome_name(dtr->outcome)).c_str(), dtr->message.c_str());
    }
  }
  return 0;
}

}  // namespace

Command add_plan_command(CLI::App& parent) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* app = parent.add_subcommand(
      "plan",
      "Plan one profiled iteration (profile JSON or DTR log) under a budget and check the "
      "plan on a sim device; or, with --model, whether a model trains on N of a chip, how, and "
      "how fast");
  app->add_option("FILE", args->file, "profile JSON or DTR log (detected from the first line)");
  app->add_option("--budget", args->budget,
                  "device memory budget: bytes (4GiB, 512MiB) or a percentage of the peak live "
                  "bytes (60%); with --model, bytes per GPU (default: the chip's memory)");
  app->add_option("--policy", args->policy,
                  "plan (default), keep, recompute-all, sqrt, swap-all, or dynamic (no plan)");
  app->add_option("--hw", args->hw_file,
                  "hardware profile JSON (profiles/hw/); overrides --link-gbps");
  app->add_option("--link-gbps", args->link_gbps,
                  "host<->device bandwidth of each direction in GB/s (default 0: no host link, "
                  "recompute only)");
  app->add_option("--out", args->out, "write the plan JSON here");
  app->add_option(
      "--report", args->reports.html,
      "write an HTML report of the plan (with --model: of the configuration answered) here");
  app->add_option("--chrome-trace", args->reports.chrome_trace,
                  "write the plan's timeline as Chrome trace JSON here");
  app->add_option("--optimizer-state", args->optimizer_state,
                  "auto: also place each slice's master weights and optimizer state (device, "
                  "swapped, host or nvme) for the budget, shown per slice and in --out; with "
                  "--model: device (default), host, nvme or auto");
  app->add_option("--cpu-state-gbps", args->cpu_state_gbps,
                  "with --optimizer-state auto: GB of state the CPU step updates per second "
                  "(default: measured on this machine)");
  app->add_flag("--classic", args->classic,
                "classic (cudaMalloc-style) segments instead of expandable segments");
  app->add_flag("--json", args->json, "print one JSON object instead of the summary");
  app->add_option("--max-overhead", args->max_overhead,
                  "thrash limit: fail once recompute exceeds this multiple of the base compute "
                  "(default 2; 0: no limit)");
  // The configuration mode (tools/config_plan.h).
  ConfigArgs& c = args->config;
  c.hw_dir = EBB_PROFILES_DIR "/hw";
  app->add_option("--model", c.model,
                  "a model preset (gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b, llama-7b-like, "
                  "llama-13b-like): plan a configuration of it on --hw's chip instead of a "
                  "profile; data parallelism with ZeRO only (no tensor or pipeline parallelism)");
  app->add_option("--gpus", c.gpus, "--model: GPUs (default 1)");
  app->add_option("--zero", c.zero, "--model: ZeRO stage 0-3 (default: 0 with several GPUs)");
  app->add_option("--micro-batch", c.micro_batch, "--model: sequences per GPU per micro-batch");
  app->add_option("--seq", c.seq, "--model: tokens per sequence (default: the preset's)");
  app->add_option("--grad-accum", c.grad_accum, "--model: micro-batches per GPU per step");
  app->add_option("--global-batch", c.global_batch,
                  "--model: sequences per step over all GPUs (sets --grad-accum)");
  app->add_option("--precision", c.precision, "--model: bf16 (default) or fp32");
  app->add_flag("--search", c.search,
                "--model: try ZeRO stages, keep and plan, the state on the device, the host or "
                "NVMe, and micro-batches at the same global batch; print the fastest that fit");
  app->add_flag("--compare-hw", c.compare_hw,
                "--model: the best configuration on --gpus of every chip in --hw-dir");
  app->add_option("--hw-dir", c.hw_dir, "--compare-hw: the hardware profiles (default: ebb's)");
  app->add_option("--host-memory", c.host_memory,
                  "--model: host memory per GPU for the state off the device, bytes (default: "
                  "the chip profile's)");
  app->add_option("--nvme-bandwidth", c.nvme_gbps,
                  "--model: NVMe bandwidth per node in GB/s (default: the chip profile's)");
  return Command{app, [args] { return run_plan(*args); }};
}

}  // namespace ebb::cli
