// `ebb simulate FILE`: runs one profiled iteration (a profile JSON or a DTR log) through the
// engine on a sim device under a memory budget and an eviction policy, and reports what the
// budget costs: peak reserved bytes, extra (recompute) compute, swapped bytes, evictions and the
// simulated time. Ops run as empty closures whose cost is their profiled duration, so the
// workload may be far larger than this machine.
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

#include "allocator/dtr_log.h"
#include "engine/engine.h"
#include "engine/profile.h"
#include "kernels/sim/sim_device.h"
#include "tools/commands.h"

namespace ebb::cli {
namespace {

struct SimulateArgs {
  std::string file;
  std::string budget;
  std::string policy;
  double link_gbps = 16;
  bool classic = false;
  bool json = false;
};

// "60%" of peak_live_bytes, or a byte size.
Result<std::size_t> budget_bytes(const std::string& text, std::size_t peak_live_bytes) {
  EBB_ASSIGN_OR_RETURN(BudgetArg budget, parse_budget(text));
  if (budget.bytes > 0) return budget.bytes;
  const auto bytes =
      static_cast<std::size_t>(std::floor(static_cast<double>(peak_live_bytes) * budget.fraction));
  if (bytes == 0) return invalid_argument("--budget \"" + text + "\" is zero bytes");
  return bytes;
}

// A profile JSON, or a DTR log (told from its first non-blank line, as `ebb replay` does).
Result<Profile> load_profile(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(bool dtr, file_is_dtr_log(path, "profile"));
  if (!dtr) return read_profile(path);
  EBB_ASSIGN_OR_RETURN(DtrLog log, read_dtr_log(path));
  return profile_from_dtr_log(log);
}

std::size_t round_up(std::size_t bytes, std::size_t to) { return (bytes + to - 1) / to * to; }

struct SimulateResult {
  std::size_t peak_reserved_bytes = 0;
  std::size_t budget_bytes = 0;
  EngineStats stats;
  std::chrono::nanoseconds simulated{0};
};

// One iteration of `profile` through an engine on `device`. An op without outputs (the engine
// requires one) writes a 1-byte placeholder, released right after it.
Result<SimulateResult> simulate(const Profile& profile, Device& device, EngineOptions options) {
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(options));
  std::vector<std::optional<Tensor>> tensors(profile.tensors.size());
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.producer.has_value()) continue;
    TensorSpec spec{
        t.name, {static_cast<std::int64_t>(std::max<std::size_t>(t.bytes, 1))}, DType::kU8, t.kind};
    Result<Tensor> made = t.kind == TensorKind::kInput ? engine->input(spec, nullptr)
                                                       : engine->parameter(spec, nullptr);
    if (!made.ok()) return made.status();
    tensors[t.id] = *made;
  }
  EBB_RETURN_IF_ERROR(engine->begin_iteration());
  for (const ProfiledOp& op : profile.ops) {
    std::vector<Tensor> inputs;
    inputs.reserve(op.inputs.size());
    for (std::size_t id : op.inputs) {
      if (!tensors[id].has_value()) {
        return internal_error("op " + std::to_string(op.index) + " \"" + op.name +
                              "\" reads tensor " + std::to_string(id) + " that is not live");
      }
      inputs.push_back(*tensors[id]);
    }
    std::vector<TensorSpec> outputs;
    for (std::size_t id : op.outputs) {
      const ProfiledTensor& t = profile.tensors[id];
      outputs.push_back({t.name,
                         {static_cast<std::int64_t>(std::max<std::size_t>(t.bytes, 1))},
                         DType::kU8,
                         t.kind});
    }
    const bool placeholder = outputs.empty();
    if (placeholder) outputs.push_back({op.name + ".placeholder", {1}, DType::kU8});
    EBB_ASSIGN_OR_RETURN(
        std::vector<Tensor> made,
        engine->run(
            "op " + std::to_string(op.index) + " " + op.name, inputs, std::move(outputs),
            [](const OpArgs&) {}, std::chrono::nanoseconds(op.duration_ns)));
    if (placeholder) {
      EBB_RETURN_IF_ERROR(engine->release(made[0]));
    } else {
      for (std::size_t i = 0; i < op.outputs.size(); ++i) tensors[op.outputs[i]] = made[i];
    }
    for (std::size_t id : op.frees) {
      if (!tensors[id].has_value()) continue;
      EBB_RETURN_IF_ERROR(engine->release(*tensors[id]));
      tensors[id].reset();
    }
  }
  EBB_RETURN_IF_ERROR(engine->synchronize());
  SimulateResult result;
  const AllocatorStats stats = engine->allocator().stats();
  result.peak_reserved_bytes = static_cast<std::size_t>(stats.all.reserved_bytes.peak);
  result.budget_bytes = stats.budget_bytes;
  result.stats = engine->stats();
  EBB_ASSIGN_OR_RETURN(result.simulated, simulated_time(device));
  EBB_RETURN_IF_ERROR(engine->end_iteration());
  return result;
}

int run_simulate(const SimulateArgs& args) {
  Result<EvictionPolicy> policy = parse_policy(args.policy);
  if (!policy.ok()) return report_error(policy.status());
  if (!(args.link_gbps > 0) || !std::isfinite(args.link_gbps)) {
    return report_error(invalid_argument("--link-gbps must be a positive number of GB/s"));
  }
  Result<Profile> profile = load_profile(args.file);
  if (!profile.ok()) return report_error(profile.status());
  const ProfileFigures figures = profile_figures(*profile);
  Result<std::size_t> budget = budget_bytes(args.budget, figures.peak_live_bytes);
  if (!budget.ok()) return report_error(budget.status());

  DeviceOptions device_options;
  device_options.kind = DeviceKind::kSim;
  device_options.capacity_bytes =
      round_up(std::max({*budget, 2 * figures.peak_live_bytes, std::size_t{1}}), 2 * kMiB);
  const LinkModel link{args.link_gbps * 1e9, std::chrono::microseconds(5)};
  device_options.host_to_device = link;
  device_options.device_to_host = link;
  Result<std::unique_ptr<Device>> device = create_sim_device(device_options);
  if (!device.ok()) return report_error(device.status());

  EngineOptions options{.device = **device};
  options.budget_bytes = *budget;
  options.expandable_segments = !args.classic;
  // Address space only on sim: generous, so that swapping is never limited by the host tier.
  options.host_tier_bytes = round_up(std::max(4 * figures.peak_live_bytes, kGiB), 2 * kMiB);
  options.policy = *policy;
  options.host_link_bytes_per_s = args.link_gbps * 1e9;
  Result<SimulateResult> result = simulate(*profile, **device, options);
  if (!result.ok()) {
    return report_error(
        Status(result.status().code(), args.file + ": " + result.status().message()));
  }

  const SimulateResult& r = *result;
  const double base_s = static_cast<double>(figures.total_op_time_ns) * 1e-9;
  const double extra_s = static_cast<double>(r.stats.recompute_ns) * 1e-9;
  const double extra_fraction = base_s > 0 ? extra_s / base_s : 0;
  const std::int64_t swapped = r.stats.swapped_out_bytes + r.stats.swapped_in_bytes;
  const double simulated_s = std::chrono::duration<double>(r.simulated).count();
  if (args.json) {
    nlohmann::ordered_json out;
    out["file"] = args.file;
    out["policy"] = std::string(eviction_policy_name(*policy));
    out["expandable_segments"] = options.expandable_segments;
    out["link_gbps"] = args.link_gbps;
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
              (*device)->name().c_str(), std::string(eviction_policy_name(*policy)).c_str());
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
  app->add_option("--policy", args->policy, "eviction policy: none, swap, recompute or both")
      ->required();
  app->add_option("--link-gbps", args->link_gbps,
                  "host<->device bandwidth of each direction in GB/s (default 16)");
  app->add_flag("--classic", args->classic,
                "classic (cudaMalloc-style) segments instead of expandable segments");
  app->add_flag("--json", args->json, "print one JSON object instead of the summary");
  return Command{app, [args] { return run_simulate(*args); }};
}

}  // namespace ebb::cli
