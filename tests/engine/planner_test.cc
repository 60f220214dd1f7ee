#include "engine/planner/planner.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "allocator/dtr_log.h"
#include "engine/planner/simulator.h"
#include "kernels/device.h"
#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

using testing_profiles::training_profile;

const std::string kExternalLogs = EBB_SOURCE_DIR "/../shared/external/dtr_logs";
const std::string kFixture = EBB_SOURCE_DIR "/profiles/workloads/mlp4_train.profile.json";

HardwareModel link_25gbps() { return link_hardware_model(25); }

std::size_t percent_of_peak(const Profile& p, double fraction) {
  return static_cast<std::size_t>(static_cast<double>(profile_figures(p).peak_live_bytes) *
                                  fraction);
}

PlannerOptions model_only(PlanPolicy policy, std::size_t budget, HardwareModel hw = {}) {
  PlannerOptions o;
  o.policy = policy;
  o.budget_bytes = budget;
  o.hardware = std::move(hw);
  o.check_rounds = 0;
  return o;
}

TEST(PlanPolicy, NamesRoundTrip) {
  for (PlanPolicy p : {PlanPolicy::kKeep, PlanPolicy::kRecomputeAll, PlanPolicy::kSqrt,
                       PlanPolicy::kSwapAll, PlanPolicy::kPlan}) {
    EXPECT_EQ(plan_policy_from_name(plan_policy_name(p)), p);
  }
  EXPECT_FALSE(plan_policy_from_name("dynamic").has_value());
}

TEST(Planner, EveryPolicyMakesAValidPlan) {
  for (unsigned seed = 1; seed <= 4; ++seed) {
    const Profile p = training_profile(12, seed);
    for (PlanPolicy policy : {PlanPolicy::kKeep, PlanPolicy::kRecomputeAll, PlanPolicy::kSqrt,
                              PlanPolicy::kSwapAll, PlanPolicy::kPlan}) {
      Result<Plan> plan =
          make_plan(p, model_only(policy, 4 * percent_of_peak(p, 1), link_25gbps()));
      ASSERT_TRUE(plan.ok()) << plan_policy_name(policy) << ": " << plan.status().to_string();
      EXPECT_EQ(plan->policy, plan_policy_name(policy));
      EXPECT_EQ(plan->profile, profile_key(p));
      EXPECT_TRUE(validate_plan(*plan, p, "plan").ok())
          << plan_policy_name(policy) << ": " << validate_plan(*plan, p, "plan").to_string();
      EXPECT_FALSE(plan->predicted.checked_on_sim);
    }
  }
}

TEST(Planner, BaselinesEvictWhatTheySay) {
  const Profile p = training_profile(16, 3);
  const std::size_t budget = 4 * percent_of_peak(p, 1);
  Plan keep = make_plan(p, model_only(PlanPolicy::kKeep, budget)).value();
  EXPECT_TRUE(keep.evictions.empty());
  Plan all = make_plan(p, model_only(PlanPolicy::kRecomputeAll, budget)).value();
  Plan sqrt = make_plan(p, model_only(PlanPolicy::kSqrt, budget)).value();
  Plan swap = make_plan(p, model_only(PlanPolicy::kSwapAll, budget, link_25gbps())).value();
  // Every forward activation but the last two (read by the first backward op, the peak) is
  // evicted.
  EXPECT_EQ(all.evictions.size(), 14u);
  EXPECT_LT(sqrt.evictions.size(), all.evictions.size());
  EXPECT_GT(sqrt.evictions.size(), 0u);
  EXPECT_EQ(swap.evictions.size(), 14u);
  for (const Eviction& e : all.evictions) EXPECT_EQ(e.method, EvictionMethod::kRecompute);
  for (const Eviction& e : swap.evictions) {
    EXPECT_EQ(e.method, EvictionMethod::kSwap);
    EXPECT_EQ(e.prefetch_at, std::max(e.evict_after + 1, *e.needed_at - 1));
  }
  // Checkpoints cut the replay chains: less extra compute than recompute-all.
  EXPECT_LT(sqrt.predicted.extra_compute_ns, all.predicted.extra_compute_ns);
  EXPECT_LT(all.predicted.peak_live_bytes, keep.predicted.peak_live_bytes);
}

TEST(Planner, SwapAllNeedsAHostLinkAndABudgetIsRequired) {
  const Profile p = training_profile(4, 1);
  Result<Plan> plan = make_plan(p, model_only(PlanPolicy::kSwapAll, 1 << 30));
  EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("needs a host link"), std::string::npos);
  EXPECT_EQ(make_plan(p, model_only(PlanPolicy::kPlan, 0)).status().code(),
            StatusCode::kInvalidArgument);
}

// Where a plan must exist, it does: above the peak live bytes (105%: room for the allocator's
// 512 B rounding and 2 MiB pages) nothing needs evicting, and wherever the sqrt or recompute-all
// baseline fits, `plan` fits too (they are its last resort). Below those, a budget may be
// infeasible (kOutOfMemory); a plan that is made stays within the budget on its model.
TEST(Planner, CostAwarePlanStaysWithinTheBudgetOnItsModel) {
  int must_fit = 0;
  int fits = 0;
  for (unsigned seed = 1; seed <= 20; ++seed) {
    const Profile p = training_profile(8 + seed % 9, seed);
    for (double fraction : {1.05, 0.9, 0.7, 0.55}) {
      for (bool link : {false, true}) {
        const std::size_t budget = percent_of_peak(p, fraction);
        const HardwareModel hw = link ? link_25gbps() : HardwareModel{};
        const bool must = fraction > 1 ||
                          make_plan(p, model_only(PlanPolicy::kSqrt, budget, hw)).ok() ||
                          make_plan(p, model_only(PlanPolicy::kRecomputeAll, budget, hw)).ok();
        must_fit += must ? 1 : 0;
        Result<Plan> plan = make_plan(p, model_only(PlanPolicy::kPlan, budget, hw));
        if (!plan.ok()) {
          EXPECT_FALSE(must) << "seed " << seed << " at " << fraction
                             << (link ? " with" : " without")
                             << " a link: " << plan.status().to_string();
          EXPECT_EQ(plan.status().code(), StatusCode::kOutOfMemory) << plan.status().to_string();
          continue;
        }
        ++fits;
        EXPECT_TRUE(validate_plan(*plan, p, "plan").ok());
        EXPECT_LE(plan->predicted.peak_reserved_bytes, budget) << "seed " << seed;
        if (!link) {
          for (const Eviction& e : plan->evictions) EXPECT_EQ(e.method, EvictionMethod::kRecompute);
        }
      }
    }
  }
  // At least the 40 budgets above the peak (20 profiles, with and without a link).
  EXPECT_GE(must_fit, 40);
  EXPECT_GE(fits, must_fit);
}

TEST(Planner, NothingIsEvictedWhenTheIterationFits) {
  const Profile p = training_profile(10, 5);
  Plan plan = make_plan(p, model_only(PlanPolicy::kPlan, 2 * percent_of_peak(p, 1))).value();
  EXPECT_TRUE(plan.evictions.empty());
  EXPECT_EQ(plan.predicted.extra_compute_ns, 0);
}

// A tensor the program frees long after its last read is given up at that read, for free.
TEST(Planner, ReleasesEarlyATensorThatIsNotReadAgain) {
  Profile p = training_profile(6, 2, /*skips=*/false);
  // Keep a0 (tensor 7 with 6 layers: w 0-5, x 6, a 7-12) to the end of the iteration.
  ProfiledTensor& a0 = p.tensors[7];
  a0.bytes = 12 * kMiB;
  for (ProfiledOp& op : p.ops) std::erase(op.frees, a0.id);
  // ... and read by nothing in the backward pass: drop the read by backward of layer 1.
  ProfiledOp& backward1 = p.ops[10];
  std::replace(backward1.inputs.begin(), backward1.inputs.end(), a0.id, std::size_t{6});
  a0.accesses = {1};
  p.tensors[6].accesses.push_back(10);
  std::sort(p.tensors[6].accesses.begin(), p.tensors[6].accesses.end());
  const std::vector<std::size_t> live = recompute_live_bytes(p);
  for (std::size_t k = 0; k < p.ops.size(); ++k) p.memory[k].live_bytes = live[k];
  ASSERT_TRUE(validate_profile(p, "test").ok()) << validate_profile(p, "test").to_string();

  const std::size_t budget = profile_figures(p).peak_live_bytes - a0.bytes / 2;  // 6 MiB less
  Plan plan = make_plan(p, model_only(PlanPolicy::kPlan, budget)).value();
  ASSERT_FALSE(plan.evictions.empty());
  EXPECT_EQ(plan.evictions[0].tensor, a0.id);
  EXPECT_EQ(plan.evictions[0].evict_after, 1u);
  EXPECT_FALSE(plan.evictions[0].needed_at.has_value());
  EXPECT_EQ(plan.evictions.size(), 1u);
  EXPECT_EQ(plan.predicted.extra_compute_ns, 0);
}

TEST(Planner, AnInfeasibleBudgetNamesTheSmallestFeasibleOne) {
  const Profile p = training_profile(10, 9);
  const std::size_t peak = profile_figures(p).peak_live_bytes;
  for (PlanPolicy policy : {PlanPolicy::kPlan, PlanPolicy::kKeep, PlanPolicy::kSqrt}) {
    Result<Plan> plan = make_plan(p, model_only(policy, peak / 20));
    ASSERT_EQ(plan.status().code(), StatusCode::kOutOfMemory) << plan_policy_name(policy);
    const std::string& m = plan.status().message();
    EXPECT_NE(m.find("budget " + std::to_string(peak / 20) + " bytes (5.0% of the peak live"),
              std::string::npos)
        << m;
    const std::string key = "the smallest feasible budget is ";
    const std::size_t at = m.find(key);
    ASSERT_NE(at, std::string::npos) << m;
    const std::size_t smallest = std::stoull(m.substr(at + key.size()));
    EXPECT_GT(smallest, peak / 20);
    EXPECT_TRUE(make_plan(p, model_only(policy, smallest)).ok()) << m;
  }
}

TEST(Planner, PlansNeverPassTheBudgetOnTheSim) {
  std::vector<Profile> profiles;
  for (unsigned seed = 1; seed <= 6; ++seed) profiles.push_back(training_profile(10, seed));
  profiles.push_back(read_profile(kFixture).value());
  int checked_with_evictions = 0;
  int planned = 0;
  for (const Profile& p : profiles) {
    for (double fraction : {1.05, 0.8, 0.6}) {
      for (PlanPolicy policy : {PlanPolicy::kPlan, PlanPolicy::kRecomputeAll, PlanPolicy::kSqrt}) {
        PlannerOptions o;
        o.policy = policy;
        o.budget_bytes = percent_of_peak(p, fraction);
        Result<Plan> plan = make_plan(p, o);
        if (!plan.ok()) {
          // Above the peak keep needs no eviction, and the baselines' replays only rebuild what
          // keep would have kept: every policy must plan there.
          EXPECT_LT(fraction, 1) << plan_policy_name(policy) << ": " << plan.status().to_string();
          EXPECT_EQ(plan.status().code(), StatusCode::kOutOfMemory) << plan.status().to_string();
          EXPECT_NE(plan.status().message().find("smallest feasible budget"), std::string::npos);
          continue;
        }
        EXPECT_TRUE(plan->predicted.checked_on_sim);
        EXPECT_LE(plan->predicted.peak_reserved_bytes, o.budget_bytes);
        SimulationOptions sim;
        sim.budget_bytes = o.budget_bytes;
        sim.plan = &*plan;
        Result<SimulationResult> r = simulate_profile(p, sim);
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        EXPECT_LE(r->peak_reserved_bytes, o.budget_bytes);
        checked_with_evictions += plan->evictions.empty() ? 0 : 1;
        ++planned;
      }
    }
  }
  // At least every budget above the peak: 7 profiles x 3 policies.
  EXPECT_GE(planned, static_cast<int>(profiles.size()) * 3);
  // Not only the budgets that need no eviction fit.
  EXPECT_GE(checked_with_evictions, 6);
}

// A host link gives the cost-aware planner more choices, never fewer: at every budget where the
// recompute-only plan or swap-all fits, the plan with the link fits too and its sim-checked step
// is no longer.
TEST(Planner, AHostLinkNeverMakesThePlanWorse) {
  std::vector<Profile> profiles;
  for (unsigned seed = 1; seed <= 3; ++seed) profiles.push_back(training_profile(10, seed));
  profiles.push_back(read_profile(kFixture).value());
  int compared = 0;
  for (const Profile& p : profiles) {
    for (double fraction : {0.9, 0.8, 0.7, 0.6, 0.5, 0.4}) {
      PlannerOptions o;
      o.budget_bytes = percent_of_peak(p, fraction);
      Result<Plan> recompute_only = make_plan(p, o);
      for (double gbps : {1.0, 25.0}) {
        o.hardware = link_hardware_model(gbps);
        o.policy = PlanPolicy::kSwapAll;
        Result<Plan> swap_all = make_plan(p, o);
        o.policy = PlanPolicy::kPlan;
        Result<Plan> linked = make_plan(p, o);
        for (const Result<Plan>* other : {&recompute_only, &swap_all}) {
          if (!other->ok()) continue;
          ASSERT_TRUE(linked.ok())
              << fraction << " " << gbps << ": " << linked.status().to_string();
          EXPECT_TRUE(linked->predicted.checked_on_sim);
          EXPECT_EQ(linked->policy, "plan");
          EXPECT_LE(linked->predicted.peak_reserved_bytes, o.budget_bytes);
          EXPECT_LE(linked->predicted.step_ns, (*other)->predicted.step_ns)
              << fraction << " " << gbps << " against " << (*other)->policy;
          ++compared;
        }
      }
    }
  }
  EXPECT_GE(compared, 8);
}

// What dynamic eviction did on the sim, written down, is a plan of the profile. Recompute only,
// `plan` fits wherever dynamic eviction does (it has that plan as a candidate). With a host link
// dynamic eviction may also fit where the parameters alone pass the budget (it swaps them out as
// they are made, before the iteration), which no plan can start from: most such budgets fit.
TEST(Planner, FitsWhereverDynamicEvictionFits) {
  int compared = 0;
  int fits = 0;
  int parameters_moved = 0;
  for (unsigned seed = 1; seed <= 6; ++seed) {
    const Profile p = training_profile(12, seed);
    for (double gbps : {0.0, 10.0}) {
      for (double fraction : {0.8, 0.75, 0.7, 0.6, 0.5, 0.4}) {
        SimulationOptions sim;
        sim.budget_bytes = percent_of_peak(p, fraction);
        sim.hardware = link_hardware_model(gbps);
        sim.policy = gbps > 0 ? EvictionPolicy::kBoth : EvictionPolicy::kRecompute;
        std::vector<Eviction> taken;
        sim.evictions_taken = &taken;
        Result<SimulationResult> dynamic = simulate_profile(p, sim);
        if (!dynamic.ok()) continue;
        Plan written;
        written.budget_bytes = sim.budget_bytes;
        written.profile = profile_key(p);
        written.hardware = sim.hardware;
        written.evictions = taken;
        const Status valid = validate_plan(written, p, "written down");
        EXPECT_TRUE(valid.ok()) << valid.to_string();
        for (const Eviction& e : taken) {
          parameters_moved += p.tensors[e.tensor].producer.has_value() ? 0 : 1;
        }
        PlannerOptions o;
        o.policy = PlanPolicy::kPlan;
        o.budget_bytes = sim.budget_bytes;
        o.hardware = sim.hardware;
        Result<Plan> plan = make_plan(p, o);
        ++compared;
        if (gbps == 0) {
          EXPECT_TRUE(plan.ok()) << "seed " << seed << " at " << fraction << ": "
                                 << plan.status().to_string();
        }
        if (!plan.ok()) continue;
        EXPECT_LE(plan->predicted.peak_reserved_bytes, o.budget_bytes);
        ++fits;
      }
    }
  }
  EXPECT_GE(compared, 40);
  EXPECT_GE(fits, compared * 4 / 5);
  EXPECT_GT(parameters_moved, 0) << "no budget made dynamic eviction move a parameter";
}

// On a real training log, the cost-aware plan costs less than the baselines at the same budget.
TEST(Planner, OnTheResnetLogPlanBeatsTheBaselines) {
  const std::string path = kExternalLogs + "/resnet32.log";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
  const Profile p = profile_from_dtr_log(read_dtr_log(path).value()).value();
  const std::size_t budget = percent_of_peak(p, 0.5);
  Plan plan = make_plan(p, model_only(PlanPolicy::kPlan, budget)).value();
  Plan sqrt = make_plan(p, model_only(PlanPolicy::kSqrt, budget)).value();
  EXPECT_LE(plan.predicted.peak_reserved_bytes, budget);
  EXPECT_LT(plan.predicted.extra_compute_ns, sqrt.predicted.extra_compute_ns);
  EXPECT_LT(plan.planner_seconds, 5.0);
}

}  // namespace
}  // namespace ebb
