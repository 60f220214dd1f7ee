// Profile loading, budgets, hardware and policy runs shared by `ebb plan` and `ebb simulate`.
#include "tools/plan_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "allocator/dtr_log.h"
#include "engine/planner/planner.h"
#include "tools/commands.h"

namespace ebb::cli {

Result<Profile> load_profile_or_dtr_log(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(bool dtr, file_is_dtr_log(path, "profile"));
  if (!dtr) return read_profile(path);
  EBB_ASSIGN_OR_RETURN(DtrLog log, read_dtr_log(path));
  return profile_from_dtr_log(log);
}

Result<std::size_t> resolve_budget(const std::string& text, std::size_t peak_live_bytes) {
  EBB_ASSIGN_OR_RETURN(BudgetArg budget, parse_budget(text));
  if (budget.bytes > 0) return budget.bytes;
  const auto bytes =
      static_cast<std::size_t>(std::floor(static_cast<double>(peak_live_bytes) * budget.fraction));
  if (bytes == 0) return invalid_argument("--budget \"" + text + "\" is zero bytes");
  return bytes;
}

Result<HardwareModel> hardware_from_args(const std::string& hw_file, double link_gbps) {
  if (!hw_file.empty()) return read_hardware_model(hw_file);
  if (!(link_gbps >= 0) || !std::isfinite(link_gbps)) {
    return invalid_argument("--link-gbps must be a number of GB/s >= 0 (0: no host link)");
  }
  return link_hardware_model(link_gbps);
}

Status check_max_overhead(double max_overhead) {
  if (!(max_overhead >= 0) || !std::isfinite(max_overhead)) {
    return invalid_argument(
        "--max-overhead must be a finite multiple of the base compute >= 0 "
        "(0: no limit), got " +
        std::to_string(max_overhead));
  }
  return ok_status();
}

std::string policy_names() {
  return "keep, recompute-all, sqrt, swap-all, plan, dynamic, none, swap, recompute or both";
}

namespace {

Result<Evaluation> run_policy(const Profile& profile, const std::string& policy,
                              std::size_t budget_bytes, const HardwareModel& hardware,
                              bool expandable_segments, double max_overhead) {
  Evaluation e;
  e.policy = policy;
  SimulationOptions sim;
  sim.budget_bytes = budget_bytes;
  sim.hardware = hardware;
  sim.expandable_segments = expandable_segments;
  sim.max_recompute_overhead = max_overhead;
  if (std::optional<PlanPolicy> planner = plan_policy_from_name(policy)) {
    PlannerOptions options;
    options.policy = *planner;
    options.budget_bytes = budget_bytes;
    options.hardware = hardware;
    options.expandable_segments = expandable_segments;
    EBB_ASSIGN_OR_RETURN(e.plan, make_plan(profile, options));
    sim.plan = &*e.plan;
  } else if (policy == "dynamic") {
    sim.policy = hardware.has_host_link() ? EvictionPolicy::kBoth : EvictionPolicy::kRecompute;
  } else {
    Result<EvictionPolicy> dynamic = parse_policy(policy);
    if (!dynamic.ok()) {
      return invalid_argument("--policy \"" + policy + "\" is not " + policy_names());
    }
    sim.policy = *dynamic;
  }
  EBB_ASSIGN_OR_RETURN(e.sim, simulate_profile(profile, sim));
  return e;
}

std::string budget_text(std::size_t bytes, std::size_t peak_live_bytes) {
  char text[96];
  std::snprintf(text, sizeof text, "%zu B (%.1f%% of the peak live bytes)", bytes,
                100.0 * static_cast<double>(bytes) / static_cast<double>(peak_live_bytes));
  return text;
}

}  // namespace

Result<std::size_t> smallest_budget_under_thrash_limit(
    const Profile& profile, const std::string& policy, std::size_t failed_budget_bytes,
    const HardwareModel& hardware, bool expandable_segments, double max_overhead,
    std::chrono::steady_clock::duration allowance, int* tried) {
  const auto start = std::chrono::steady_clock::now();
  const std::size_t peak = profile_figures(profile).peak_live_bytes;
  *tried = 0;
  auto stays_under = [&](std::size_t budget) {
    ++*tried;
    return run_policy(profile, policy, budget, hardware, expandable_segments, max_overhead).ok();
  };
  // The peak live bytes first: a run that thrashes there thrashes at every budget tried.
  std::size_t high = std::max(peak, failed_budget_bytes + 1);
  if (!stays_under(high)) {
    return not_found("no budget tried stayed under the limit, up to " + budget_text(high, peak));
  }
  // Then bisection, to a step of 1% of the peak, within kThrashProbes runs and the allowance.
  std::size_t low = failed_budget_bytes;
  while (*tried < kThrashProbes && high - low > peak / 100 &&
         std::chrono::steady_clock::now() - start < allowance) {
    const std::size_t mid = low + (high - low) / 2;
    (stays_under(mid) ? high : low) = mid;
  }
  return high;
}

Result<Evaluation> evaluate_policy(const Profile& profile, const std::string& policy,
                                   std::size_t budget_bytes, const HardwareModel& hardware,
                                   bool expandable_segments, double max_overhead) {
  const auto start = std::chrono::steady_clock::now();
  Result<Evaluation> e =
      run_policy(profile, policy, budget_bytes, hardware, expandable_segments, max_overhead);
  if (e.ok() || !is_thrash_error(e.status())) return e;
  // Thrashed: the budgets above this one at which the same run stays under the limit, looked
  // for in about as long again as the run took (runs near the limit take as long as it did), or
  // a second.
  int tried = 0;
  const std::size_t peak = profile_figures(profile).peak_live_bytes;
  Result<std::size_t> smallest = smallest_budget_under_thrash_limit(
      profile, policy, budget_bytes, hardware, expandable_segments, max_overhead,
      std::max<std::chrono::steady_clock::duration>(std::chrono::steady_clock::now() - start,
                                                    std::chrono::seconds(1)),
      &tried);
  std::string hint = smallest.ok() ? "the smallest budget tried at which it stayed under the "
                                     "limit is " +
                                         budget_text(*smallest, peak)
                                   : smallest.status().message();
  return Status(e.status().code(), e.status().message() + "; " + hint + " (" +
                                       std::to_string(tried) + " budgets tried; --max-overhead " +
                                       "raises the limit)");
}

}  // namespace ebb::cli
