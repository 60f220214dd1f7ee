// The scheduler's planners: from a Profile, a budget and a hardware model, a Plan of evictions
// (engine/schema/plan.h) that the executor applies in the steady-state iterations.
//
//  - keep: nothing evicted (speed-centric); fails when the iteration does not fit.
//  - recompute-all: every recomputable activation of the forward pass dropped after its last
//    forward use and recomputed at its next use (memory-centric).
//  - sqrt: Chen et al. 2016: the outputs of every ceil(sqrt(F))-th op of the forward pass are
//    kept as checkpoints, every other forward activation is dropped as in recompute-all and
//    rebuilt in the backward pass by replaying from the nearest checkpoint.
//  - swap-all: vDNN: every forward activation swapped to host after its last forward use and
//    prefetched one op ahead of its next use (needs a host link).
//  - plan: cost-aware (planner.cc): evicts only what would push the peak over the budget,
//    choosing at the worst op by bytes freed over the over-budget span per second of cost. With
//    a host link it plans three ways (swaps by score, swaps that hide behind compute first,
//    recompute only) and also checks swap-all, and returns the fastest plan that fits on the sim:
//    a link never makes `plan` slower than planning without one, nor than swap-all. It also
//    writes down as plans what the engine's dynamic eviction does (up to 4,096 ops) and what
//    DTR's own simulator does (engine/planner/dtr_reference.h, recompute only, any length), so
//    that `plan` is never behind either wherever their plan fits on the sim.
//
// The forward pass: a profile does not say where the backward pass starts (a DTR log carries no
// annotation). The planners take the ops up to the op with the most live bytes (the first one
// when several tie) as the forward pass: a training iteration's live bytes grow while the
// forward pass stores activations and shrink as the backward pass frees them.
//
// Every plan is checked by running it on the sim device (engine/planner/simulator.h). A `plan`
// whose sim run passes the budget (allocator rounding and fragmentation, replays' transient
// outputs) is re-planned to a tighter internal target, a few rounds. A budget no plan of the policy
// fits is kOutOfMemory naming the budget and the smallest feasible budget found, in bytes and as a
// percentage of the profile's peak live bytes.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

enum class PlanPolicy : std::uint8_t { kKeep, kRecomputeAll, kSqrt, kSwapAll, kPlan };
// "keep", "recompute-all", "sqrt", "swap-all", "plan".
std::string_view plan_policy_name(PlanPolicy policy);
std::optional<PlanPolicy> plan_policy_from_name(std::string_view name);

struct PlannerOptions {
  PlanPolicy policy = PlanPolicy::kPlan;
  std::size_t budget_bytes = 0;     // REQUIRES: > 0
  HardwareModel hardware;           // without a host link, nothing is swapped
  bool expandable_segments = true;  // the allocator the sim check runs
  // Sim checks of `plan` (each may tighten the target and re-plan); 0: the model alone, and the
  // plan's prediction is the model's (checked_on_sim false).
  int check_rounds = 4;
  // The host tier's size; 0: unbounded. Swaps past it go to the NVMe tier, priced at its
  // bandwidth (engine/planner/plan_tiers.h); without NVMe in `hardware` such a plan is refused.
  std::size_t host_tier_bytes = 0;
};

// The plan for `profile` under options.budget_bytes. kOutOfMemory when no plan of the policy
// fits (see the file comment); kInvalidArgument for a budget of 0 or swap-all without a host
// link.
Result<Plan> make_plan(const Profile& profile, const PlannerOptions& options);

}  // namespace ebb
