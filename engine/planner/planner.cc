// make_plan: a policy's evictions, checked on the sim device, re-planned to a tighter target
// when the sim's peak reserved passes the budget, and the smallest feasible budget when none
// fits.
#include "engine/planner/planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>

#include "engine/planner/dtr_reference.h"
#include "engine/planner/plan_model.h"
#include "engine/planner/plan_tiers.h"
#include "engine/planner/planner_policies.h"
#include "engine/planner/simulator.h"

namespace ebb {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kPageBytes = 2 * kMiB;  // what expandable segments map at a time

// The checkpointing baselines: `plan`'s candidates where nothing cheaper fits (their replays
// rebuild whole chains at a high price, in little memory).
constexpr PlanPolicy kLastResort[] = {PlanPolicy::kSqrt, PlanPolicy::kRecomputeAll};

// One planning attempt at an internal target: the policy's evictions in the model.
struct Attempt {
  std::vector<Eviction> evictions;
  std::optional<std::vector<Hold>> holds;  // from the model; unset: found for the evictions
  PlanPrediction predicted;
  bool reached = true;  // the model's peak is within the target
  double seconds = 0;
};

Attempt plan_once(const Profile& profile, const PlannerOptions& options, std::size_t target_bytes,
                  bool keep_rebuilt_ancestors, SwapUse swaps, bool holds) {
  const Clock::time_point start = Clock::now();
  PlanModel model(profile, options.hardware, keep_rebuilt_ancestors, holds);
  Attempt a;
  switch (options.policy) {
    case PlanPolicy::kKeep:
      break;
    case PlanPolicy::kRecomputeAll:
      add_recompute_all(model, /*sqrt_checkpoints=*/false);
      break;
    case PlanPolicy::kSqrt:
      add_recompute_all(model, /*sqrt_checkpoints=*/true);
      break;
    case PlanPolicy::kSwapAll:
      add_swap_all(model);
      break;
    case PlanPolicy::kPlan:
      a.reached = add_cost_aware(model, target_bytes, swaps);
      break;
  }
  a.evictions = model.sorted_evictions();
  a.holds = model.holds();
  a.predicted = model.predict();
  // A baseline's plan does not depend on the budget: the sim says whether it fits, or without
  // sim checks the model (fit() compares its peak with the budget).
  if (options.policy != PlanPolicy::kPlan) a.reached = true;
  a.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return a;
}

// The cost-aware planner keeps the ancestors a replay rebuilds (a chain is replayed once, but its
// tensors take memory from then on); when that cannot reach the target, it plans again dropping
// them after each replay (less memory, a replay per use). The baselines drop them (planner.h).
// `holds`: whether a replay may read a released tensor without a producer kept for it
// (Plan::holds); the baselines never do.
Attempt plan_at(const Profile& profile, const PlannerOptions& options, std::size_t target_bytes,
                SwapUse swaps, bool holds) {
  if (options.policy != PlanPolicy::kPlan) {
    return plan_once(profile, options, target_bytes, false, swaps, /*holds=*/false);
  }
  Attempt kept = plan_once(profile, options, target_bytes, true, swaps, holds);
  if (kept.reached) return kept;
  Attempt dropped = plan_once(profile, options, target_bytes, false, swaps, holds);
  dropped.seconds += kept.seconds;
  return dropped;
}

Plan plan_of(const Profile& profile, const PlannerOptions& options, Attempt attempt) {
  Plan plan;
  plan.policy = std::string(plan_policy_name(options.policy));
  plan.budget_bytes = options.budget_bytes;
  plan.profile = profile_key(profile);
  plan.hardware = options.hardware;
  plan.holds = attempt.holds.has_value() ? std::move(*attempt.holds)
                                         : plan_holds(profile, options.hardware, attempt.evictions);
  plan.evictions = std::move(attempt.evictions);
  plan.predicted = attempt.predicted;
  return plan;
}

// The sim device at the planner's budget, hardware and allocator; no plan, no eviction.
SimulationOptions sim_options(const PlannerOptions& options) {
  SimulationOptions sim;
  sim.budget_bytes = options.budget_bytes;
  sim.hardware = options.hardware;
  sim.expandable_segments = options.expandable_segments;
  return sim;
}

// Runs the plan on the sim device: its prediction on success; the sim's error otherwise
// (kOutOfMemory when it does not fit).
Status check_on_sim(const Profile& profile, const PlannerOptions& options, Plan& plan) {
  SimulationOptions sim = sim_options(options);
  sim.plan = &plan;
  EBB_ASSIGN_OR_RETURN(SimulationResult r, simulate_profile(profile, sim));
  PlanPrediction& p = plan.predicted;
  p.peak_reserved_bytes = r.peak_reserved_bytes;
  p.base_compute_ns = r.base_compute_ns;
  p.extra_compute_ns = r.stats.recompute_ns;
  p.recomputed_ops = r.stats.recomputed_ops;
  p.swapped_bytes = static_cast<std::size_t>(r.stats.swapped_out_bytes + r.stats.swapped_in_bytes);
  p.step_ns = r.simulated.count();
  p.checked_on_sim = true;
  if (r.peak_reserved_bytes > options.budget_bytes) {
    return out_of_memory("the plan's peak reserved " + std::to_string(r.peak_reserved_bytes) +
                         " bytes passes the budget");
  }
  return ok_status();
}

// The plan at `options.budget_bytes`, re-planned to tighter targets while the sim says it does
// not fit. kOutOfMemory when no round fits.
Result<Plan> fit(const Profile& profile, const PlannerOptions& options, SwapUse swaps, bool holds,
                 double* planner_seconds) {
  const std::size_t budget = options.budget_bytes;
  // Room for page rounding and for a replay's transient outputs, before the sim has spoken.
  std::size_t target = budget > 2 * kPageBytes ? budget - kPageBytes - budget / 100 : budget / 2;
  Status last = ok_status();
  for (int round = 0; round <= std::max(options.check_rounds, 0); ++round) {
    Attempt a = plan_at(profile, options, target, swaps, holds);
    *planner_seconds += a.seconds;
    if (!a.reached) return out_of_memory("the planner cannot reach the target");
    Plan plan = plan_of(profile, options, std::move(a));
    if (options.check_rounds == 0) {
      if (plan.predicted.peak_reserved_bytes > budget) {
        return out_of_memory("the model's peak passes the budget");
      }
      return plan;
    }
    last = check_on_sim(profile, options, plan);
    if (last.ok()) return plan;
    if (last.code() != StatusCode::kOutOfMemory || options.policy != PlanPolicy::kPlan) {
      return last;
    }
    // Tighten by the overshoot when the sim measured one, else by 3% of the budget.
    std::size_t step = budget / 33;
    if (plan.predicted.peak_reserved_bytes > budget && plan.predicted.checked_on_sim) {
      step = std::max(step / 2, plan.predicted.peak_reserved_bytes - budget + kPageBytes);
    }
    if (step >= target) break;
    target -= step;
  }
  return last;
}

// Moves each swap's copy back earlier, to the op from which the compute up to its read covers the
// copy's link time (never before the op after the swap-out); false when none moved.
bool prefetch_ahead(const Profile& profile, const HardwareModel& hw,
                    std::vector<Eviction>& evictions) {
  if (!hw.has_host_link()) return false;
  bool moved = false;
  for (Eviction& e : evictions) {
    if (e.method != EvictionMethod::kSwap || !e.needed_at.has_value()) continue;
    const double copy_ns =
        static_cast<double>(profile.tensors[e.tensor].bytes) / hw.host_to_device_bytes_per_s * 1e9 +
        static_cast<double>(hw.link_latency.count());
    std::size_t at = e.prefetch_at;
    double covered = 0;
    while (at > e.evict_after + 1 && covered < copy_ns) {
      --at;
      covered += static_cast<double>(profile.ops[at].duration_ns);
    }
    if (at < e.prefetch_at) {
      e.prefetch_at = at;
      moved = true;
    }
  }
  return moved;
}

// Moves written down as plan evictions (dynamic eviction's on the sim, or the DTR reference's)
// made a plan that fits alone. Frees in another order leave other holes in the allocator's pages,
// and a run written down may have fitted by another measure (DTR counts tensor bytes, not the
// allocator's pages), so the plan alone may not fit: then it runs again on the sim with dynamic
// eviction by `rescue` making room where it does not, and what that run moved (the plan's moves
// and the rescues) is the next plan, until one fits alone.
Result<Plan> fit_written_down(const Profile& profile, const PlannerOptions& options,
                              std::vector<Eviction> taken, EvictionPolicy rescue,
                              double* planner_seconds) {
  SimulationOptions sim = sim_options(options);
  sim.policy = rescue;
  sim.evictions_taken = &taken;
  Status last = ok_status();
  for (int round = 0; round <= std::max(options.check_rounds, 0); ++round) {
    Attempt a;
    a.evictions = taken;
    Plan plan = plan_of(profile, options, std::move(a));
    last = check_on_sim(profile, options, plan);
    if (last.ok()) {
      // Dynamic eviction copies back on demand; the plan knows the future: each copy back
      // starts early enough to hide behind the compute before its read, where the budget holds.
      Plan ahead = plan;
      if (prefetch_ahead(profile, options.hardware, ahead.evictions) &&
          check_on_sim(profile, options, ahead).ok() &&
          ahead.predicted.step_ns < plan.predicted.step_ns) {
        return ahead;
      }
      return plan;
    }
    if (last.code() != StatusCode::kOutOfMemory) return last;
    const Clock::time_point again = Clock::now();
    sim.plan = &plan;
    sim.plan_fallback = true;
    Result<SimulationResult> rescued = simulate_profile(profile, sim);
    sim.plan = nullptr;
    *planner_seconds += std::chrono::duration<double>(Clock::now() - again).count();
    if (!rescued.ok()) return last;
  }
  return last;
}

// The engine's own dynamic eviction (no profile needed) run on the sim at the budget, what it
// did written down as a plan (SimulationOptions::evictions_taken): so `plan` has a candidate
// wherever dynamic eviction fits, and knows its swaps and replays before the step runs.
// `to_beat`: the predicted step of the best plan in hand; a dynamic run no faster is not
// written down (kFailedPrecondition).
Result<Plan> from_dynamic(const Profile& profile, const PlannerOptions& options,
                          EvictionPolicy policy, std::int64_t to_beat, double* planner_seconds) {
  const Clock::time_point start = Clock::now();
  std::vector<Eviction> taken;
  SimulationOptions sim = sim_options(options);
  sim.policy = policy;
  sim.evictions_taken = &taken;
  Result<SimulationResult> dynamic = simulate_profile(profile, sim);
  *planner_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  EBB_RETURN_IF_ERROR(dynamic.status());
  if (dynamic->simulated.count() >= to_beat) {
    return failed_precondition("dynamic eviction is no faster than the plan in hand");
  }
  return fit_written_down(profile, options, std::move(taken), policy, planner_seconds);
}

// DTR's own simulator with h_DTR^eq (engine/planner/dtr_reference.h) at the budget, what it
// evicted written down as a plan (recompute only): so `plan` is never behind DTR wherever that
// plan fits on the sim. `to_beat` as for from_dynamic, against DTR's base plus remat compute.
// DTR evicts between the rebuilds of one op's inputs, a plan only between ops
// (dtr_plan_evictions): first the plan that drops such a tensor after the op (DTR's compute);
// where that does not fit alone, the one that drops it before (DTR's memory, more compute),
// rescued as from_dynamic's is, when `rescue` (the rescue rounds are dynamic runs).
Result<Plan> from_dtr_reference(const Profile& profile, const PlannerOptions& options,
                                std::int64_t to_beat, bool rescue, double* planner_seconds) {
  const Clock::time_point start = Clock::now();
  DtrReferenceOptions dtr;
  dtr.budget_bytes = options.budget_bytes;
  Result<DtrReferenceResult> run = run_dtr_reference(profile, dtr);
  *planner_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  EBB_RETURN_IF_ERROR(run.status());
  if (!run->feasible()) {
    return out_of_memory("DTR's simulator: " + std::string(dtr_outcome_name(run->outcome)) + " (" +
                         run->message + ")");
  }
  if (run->base_compute_ns + run->remat_compute_ns >= to_beat) {
    return failed_precondition("DTR's simulator is no faster than the plan in hand");
  }
  Attempt late;
  late.evictions = dtr_plan_evictions(profile, *run, /*after_reads=*/true);
  Plan plan = plan_of(profile, options, std::move(late));
  const Status fits = check_on_sim(profile, options, plan);
  if (fits.ok()) return plan;
  if (!rescue || fits.code() != StatusCode::kOutOfMemory) return fits;
  return fit_written_down(profile, options,
                          dtr_plan_evictions(profile, *run, /*after_reads=*/false),
                          EvictionPolicy::kRecompute, planner_seconds);
}

// Whether the profile has a tensor a plan may hold (Plan::holds): no producer, freed by the
// program, read by an op with outputs.
bool has_released_sources(const Profile& profile) {
  const std::vector<std::size_t> freed = freed_after_ops(profile);
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.producer.has_value() || freed[t.id] == kNeverFreed) continue;
    for (std::size_t op : t.accesses) {
      if (!profile.ops[op].outputs.empty()) return true;
    }
  }
  return false;
}

std::string percent(std::size_t bytes, std::size_t of) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f%%",
                of > 0 ? 100.0 * static_cast<double>(bytes) / static_cast<double>(of) : 0.0);
  return text;
}

// A plan fit() made at the smallest budget it succeeded at.
struct Feasible {
  std::size_t budget_bytes = 0;
  Plan plan;
};

// The smallest budget at which fit() succeeds, with its plan: from the lowest peak the policy's
// model reaches, up in 10% steps until one fits, then bisected.
std::optional<Feasible> smallest_feasible(const Profile& profile, PlannerOptions options,
                                          bool holds, SwapUse swaps) {
  double ignored = 0;
  Attempt floor = plan_at(profile, options, 0, swaps, holds);
  // The least budget whose internal target (fit()) is the lowest peak the model reaches: below
  // it the model cannot reach the target, so the search starts there.
  std::size_t guess =
      static_cast<std::size_t>(
          std::ceil(static_cast<double>(floor.predicted.peak_live_bytes + kPageBytes) / 0.99)) +
      1;
  std::size_t lo = guess - 1;
  std::optional<Feasible> hi;
  for (int i = 0; i < 8; ++i) {
    options.budget_bytes = guess;
    if (Result<Plan> made = fit(profile, options, swaps, holds, &ignored); made.ok()) {
      hi = Feasible{guess, std::move(*made)};
      break;
    }
    lo = guess;
    guess += std::max(guess / 10, kPageBytes);
  }
  if (!hi.has_value()) return std::nullopt;
  while (hi->budget_bytes - lo > std::max(hi->budget_bytes / 200, kPageBytes)) {
    const std::size_t mid = lo + (hi->budget_bytes - lo) / 2;
    options.budget_bytes = mid;
    if (Result<Plan> made = fit(profile, options, swaps, holds, &ignored); made.ok()) {
      hi = Feasible{mid, std::move(*made)};
    } else {
      lo = mid;
    }
  }
  return hi;
}

// The ways a policy may use the host link: the cost-aware planner tries three (planner_policies.h);
// an error of the first is the one reported when none fits.
std::vector<SwapUse> swap_variants(const PlannerOptions& options) {
  if (!options.hardware.has_host_link()) return {SwapUse::kNone};
  if (options.policy != PlanPolicy::kPlan) return {SwapUse::kScored};
  return {SwapUse::kScored, SwapUse::kHiddenFirst, SwapUse::kNone};
}

}  // namespace

std::string_view plan_policy_name(PlanPolicy policy) {
  switch (policy) {
    case PlanPolicy::kKeep:
      return "keep";
    case PlanPolicy::kRecomputeAll:
      return "recompute-all";
    case PlanPolicy::kSqrt:
      return "sqrt";
    case PlanPolicy::kSwapAll:
      return "swap-all";
    case PlanPolicy::kPlan:
      return "plan";
  }
  return "plan";
}

std::optional<PlanPolicy> plan_policy_from_name(std::string_view name) {
  for (PlanPolicy p : {PlanPolicy::kKeep, PlanPolicy::kRecomputeAll, PlanPolicy::kSqrt,
                       PlanPolicy::kSwapAll, PlanPolicy::kPlan}) {
    if (plan_policy_name(p) == name) return p;
  }
  return std::nullopt;
}

Result<Plan> make_plan(const Profile& recorded, const PlannerOptions& options) {
  const Profile profile = as_engine_runs(recorded);
  if (options.budget_bytes == 0) return invalid_argument("plan: a budget of 0 bytes");
  if (options.policy == PlanPolicy::kSwapAll && !options.hardware.has_host_link()) {
    return invalid_argument("plan: policy swap-all needs a host link, and hardware \"" +
                            options.hardware.name + "\" has none");
  }
  double seconds = 0;
  // The cost-aware planner is greedy: with a host link, swaps chosen by score alone can take link
  // time and block replay chains (a swapped input is not replayed) that a recompute-only plan
  // never needs, and cheap replays can outscore swaps that the link hides for free. It plans each
  // way and keeps the fastest sim-checked plan, so that a link never makes a plan worse.
  const std::vector<SwapUse> variants = swap_variants(options);
  Result<Plan> plan = fit(profile, options, variants.front(), /*holds=*/false, &seconds);
  const auto keep_faster = [&plan](Result<Plan> other) {
    if (other.ok() && (!plan.ok() || other->predicted.step_ns < plan->predicted.step_ns)) {
      plan = std::move(other);
    }
  };
  // Every plan runs every op: none beats one that already costs no more than the op time (lstm
  // with a link, where the recompute-only search is the slowest to make).
  const auto at_op_time = [&plan] {
    return plan.ok() && plan->predicted.step_ns <= plan->predicted.base_compute_ns;
  };
  for (std::size_t v = 1; v < variants.size() && !at_op_time(); ++v) {
    keep_faster(fit(profile, options, variants[v], /*holds=*/false, &seconds));
  }
  // Holds open plans that drop what is downstream of a released constant (a batch norm's
  // statistics an in-place update rebound), at the holds' bytes: one more candidate, where the
  // profile has such a tensor.
  const bool holdable = options.policy == PlanPolicy::kPlan && has_released_sources(profile);
  if (holdable && !at_op_time()) {
    keep_faster(fit(profile, options, SwapUse::kNone, /*holds=*/true, &seconds));
  }
  if (options.policy == PlanPolicy::kPlan && options.hardware.has_host_link() && !at_op_time()) {
    // The greedy search evicts at the worst op only, and the allocator's pages can fragment past
    // the budget where its swaps leave holes; swap-all (every forward activation out after its
    // last forward use) frees in program order and fits on the sim where the search may not. Its
    // plan is one more candidate, so that `plan` is never slower than swap-all either.
    PlannerOptions swap_all = options;
    swap_all.policy = PlanPolicy::kSwapAll;
    Result<Plan> other = fit(profile, swap_all, SwapUse::kScored, /*holds=*/false, &seconds);
    if (other.ok()) other->policy = std::string(plan_policy_name(PlanPolicy::kPlan));
    keep_faster(std::move(other));
  }
  // Dynamic eviction ranks every resident tensor at each eviction, so its sim run grows faster
  // than the search's on long profiles: there it is run only when nothing else fits.
  constexpr std::size_t kDynamicCandidateOps = 4096;
  if (options.policy == PlanPolicy::kPlan && options.check_rounds > 0 && !at_op_time() &&
      (!plan.ok() || profile.ops.size() <= kDynamicCandidateOps)) {
    // With a link, dynamic eviction by swap and recompute, and by recompute alone: either may be
    // the faster.
    std::vector<EvictionPolicy> dynamic{EvictionPolicy::kRecompute};
    if (options.hardware.has_host_link()) dynamic.insert(dynamic.begin(), EvictionPolicy::kBoth);
    for (EvictionPolicy policy : dynamic) {
      keep_faster(from_dynamic(
          profile, options, policy,
          plan.ok() ? plan->predicted.step_ns : std::numeric_limits<std::int64_t>::max(),
          &seconds));
    }
  }
  if (options.policy == PlanPolicy::kPlan && options.check_rounds > 0 && !at_op_time()) {
    // DTR's run written down is one sim check; the rounds that rescue it where it does not fit
    // alone are dynamic runs, bounded as the dynamic candidate is.
    keep_faster(from_dtr_reference(
        profile, options,
        plan.ok() ? plan->predicted.step_ns : std::numeric_limits<std::int64_t>::max(),
        !plan.ok() || profile.ops.size() <= kDynamicCandidateOps, &seconds));
  }
  if (!plan.ok() && options.policy == PlanPolicy::kPlan) {
    // Nothing cheaper fits: the last resort.
    for (PlanPolicy baseline : kLastResort) {
      PlannerOptions other = options;
      other.policy = baseline;
      Result<Plan> made = fit(profile, other, SwapUse::kNone, /*holds=*/false, &seconds);
      if (made.ok()) made->policy = std::string(plan_policy_name(PlanPolicy::kPlan));
      keep_faster(std::move(made));
    }
  }
  const auto finish = [&](Plan made) -> Result<Plan> {
    made.planner_seconds = seconds;
    if (options.host_tier_bytes > 0) {
      EBB_RETURN_IF_ERROR(assign_offload_tiers(made, profile, options.host_tier_bytes).status());
    }
    return made;
  };
  if (plan.ok()) return finish(std::move(*plan));
  if (plan.status().code() != StatusCode::kOutOfMemory) return plan.status();
  // The search for the smallest feasible budget. fit() is greedy and its internal target moves
  // with the budget, so it can fail at a budget and succeed below it; a plan whose sim-checked
  // peak fits the smaller budget fits this one, so the planner is monotone in the budget: that
  // plan is the answer, not an error.
  std::optional<Feasible> smallest;
  const auto consider = [&smallest](std::optional<Feasible> found, PlanPolicy made_by) {
    if (!found.has_value()) return;
    if (smallest.has_value() && found->budget_bytes >= smallest->budget_bytes) return;
    smallest = std::move(found);
    smallest->plan.policy = std::string(plan_policy_name(made_by));
  };
  for (SwapUse swaps : variants) {
    for (bool holds : {false, true}) {
      if (holds && !holdable) continue;
      consider(smallest_feasible(profile, options, holds, swaps), options.policy);
    }
  }
  if (options.policy == PlanPolicy::kPlan && options.hardware.has_host_link()) {
    PlannerOptions swap_all = options;
    swap_all.policy = PlanPolicy::kSwapAll;
    consider(smallest_feasible(profile, swap_all, false, SwapUse::kScored), PlanPolicy::kPlan);
  }
  if (options.policy == PlanPolicy::kPlan) {
    for (PlanPolicy baseline : kLastResort) {
      PlannerOptions other = options;
      other.policy = baseline;
      consider(smallest_feasible(profile, other, false, SwapUse::kNone), PlanPolicy::kPlan);
    }
  }
  if (smallest.has_value() && smallest->budget_bytes <= options.budget_bytes) {
    return finish(std::move(smallest->plan));
  }
  const std::size_t peak = profile_figures(profile).peak_live_bytes;
  std::string message = "budget " + std::to_string(options.budget_bytes) + " bytes (" +
                        percent(options.budget_bytes, peak) + " of the peak live " +
                        std::to_string(peak) + " bytes) is infeasible for policy " +
                        std::string(plan_policy_name(options.policy)) + " (" +
                        plan.status().message() + ")";
  if (smallest.has_value()) {
    message += "; the smallest feasible budget is " + std::to_string(smallest->budget_bytes) +
               " bytes (" + percent(smallest->budget_bytes, peak) + ")";
  } else {
    message += "; no budget up to twice the lowest the policy reaches fits either";
  }
  return out_of_memory(message);
}

}  // namespace ebb
