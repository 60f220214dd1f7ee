// What `ebb plan` and `ebb simulate` share: loading a profile or a DTR log, resolving --budget
// against its peak, the hardware model from --hw or --link-gbps, and running a policy (a
// planner's plan, or dynamic eviction) on the sim device.
//
// Thread safety: used from main's thread only.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "engine/planner/simulator.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb::cli {

// A profile JSON, or a DTR log (told from its first non-blank line, as `ebb replay` does).
Result<Profile> load_profile_or_dtr_log(const std::string& path);
// "60%" of peak_live_bytes, or a byte size.
Result<std::size_t> resolve_budget(const std::string& text, std::size_t peak_live_bytes);
// --hw FILE when given, else a duplex link of `link_gbps` GB/s each way (0: no host link).
Result<HardwareModel> hardware_from_args(const std::string& hw_file, double link_gbps);

// One policy run on the sim device: the plan (for a planner policy) and the sim's figures.
// `max_overhead`: the thrash limit of the run (SimulationOptions::max_recompute_overhead).
struct Evaluation {
  std::string policy;        // as the user named it
  std::optional<Plan> plan;  // absent for dynamic eviction
  SimulationResult sim;
};
// `policy`: keep, recompute-all, sqrt, swap-all, plan (planners, engine/planner/planner.h); dynamic
// (dynamic eviction: recompute, or both with a host link); none, swap, recompute, both (dynamic
// eviction with that victim policy).
Result<Evaluation> evaluate_policy(const Profile& profile, const std::string& policy,
                                   std::size_t budget_bytes, const HardwareModel& hardware,
                                   bool expandable_segments, double max_overhead);
// When the run thrashes (passes the thrash limit), its error also names the smallest budget at
// which the same policy stayed under the limit, found by smallest_budget_under_thrash_limit.

// At most this many runs look for the smallest budget under the thrash limit.
inline constexpr int kThrashProbes = 7;
// The smallest budget above `failed_budget_bytes` at which `policy` runs under the thrash limit:
// first at the profile's peak live bytes, then bisection to 1% of the peak, within kThrashProbes
// runs, starting no run after `allowance` has passed (`*tried` says how many ran). NotFound when
// the run thrashes (or fails) at the peak too.
Result<std::size_t> smallest_budget_under_thrash_limit(
    const Profile& profile, const std::string& policy, std::size_t failed_budget_bytes,
    const HardwareModel& hardware, bool expandable_segments, double max_overhead,
    std::chrono::steady_clock::duration allowance, int* tried);
// --max-overhead: a finite multiple of the base compute >= 0 (0: no thrash limit).
Status check_max_overhead(double max_overhead);
// The policy names evaluate_policy takes, for messages: "keep, recompute-all, ...".
std::string policy_names();

}  // namespace ebb::cli
