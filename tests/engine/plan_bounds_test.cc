// recompute_lower_bound: exact on a profile worked by hand, and never above what a plan (or the
// engine's dynamic eviction) achieves; a budget below its floor fits no recompute-only plan.
#include "engine/planner/plan_bounds.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/planner/planner.h"
#include "engine/planner/simulator.h"
#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

// op0 makes A (100 B, 10 ns); op1 reads A, makes B (100 B, 20 ns); op2 reads B, makes C (100 B,
// 5 ns); op3 reads A and C, makes D (1 B). B is freed after op2, the rest after op3.
Profile hand_profile() {
  Profile p;
  p.source = "hand";
  const char* names[] = {"A", "B", "C", "D"};
  const std::size_t bytes[] = {100, 100, 100, 1};
  for (std::size_t i = 0; i < 4; ++i) {
    ProfiledTensor t;
    t.id = i;
    t.name = names[i];
    t.bytes = bytes[i];
    t.dtype = DType::kU8;
    t.producer = i;
    p.tensors.push_back(t);
  }
  p.tensors[0].accesses = {1, 3};
  p.tensors[1].accesses = {2};
  p.tensors[2].accesses = {3};
  const std::int64_t ns[] = {10, 20, 5, 1};
  for (std::size_t k = 0; k < 4; ++k) {
    ProfiledOp op;
    op.index = k;
    op.name = "op" + std::to_string(k);
    if (k == 1) op.inputs = {0};
    if (k == 2) op.inputs = {1};
    if (k == 3) op.inputs = {0, 2};
    op.outputs = {k};
    op.duration_ns = ns[k];
    p.ops.push_back(op);
  }
  p.ops[2].frees = {1};
  p.ops[3].frees = {0, 2, 3};
  const std::vector<std::size_t> live = recompute_live_bytes(p);
  for (std::size_t k = 0; k < 4; ++k) p.memory.push_back({live[k], 0});
  EXPECT_TRUE(validate_profile(p, "hand").ok());
  return p;
}

TEST(RecomputeBound, WorkedByHand) {
  const Profile p = hand_profile();
  // Op 3 must hold A, C and D: 201 bytes; op 1 and op 2 hold 200.
  RecomputeBound b = recompute_lower_bound(p, 250);
  EXPECT_EQ(b.min_budget_bytes, 201u);
  EXPECT_EQ(b.min_budget_op, 3u);
  EXPECT_TRUE(b.feasible);
  // At op 2, A (read again by op 3) is the only droppable tensor: 50 of its 100 bytes over the
  // budget, at 10 ns for the whole of it.
  EXPECT_EQ(b.extra_compute_ns, 5);
  EXPECT_EQ(b.extra_compute_op, 2u);
  EXPECT_EQ(recompute_lower_bound(p, 201).extra_compute_ns, 9);  // 99 bytes: 9.9 ns, down
  EXPECT_EQ(recompute_lower_bound(p, 300).extra_compute_ns, 0);
  RecomputeBound below = recompute_lower_bound(p, 200);
  EXPECT_FALSE(below.feasible);
  EXPECT_EQ(below.extra_compute_ns, 0);
}

TEST(RecomputeBound, NoPlanNorDynamicEvictionBeatsIt) {
  int compared = 0;
  for (unsigned seed = 1; seed <= 6; ++seed) {
    const Profile p = testing_profiles::training_profile(12, seed);
    const std::size_t peak = profile_figures(p).peak_live_bytes;
    for (double fraction : {0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5}) {
      const auto budget = static_cast<std::size_t>(static_cast<double>(peak) * fraction);
      const RecomputeBound bound = recompute_lower_bound(p, budget);
      PlannerOptions o;
      o.policy = PlanPolicy::kPlan;
      o.budget_bytes = budget;
      Result<Plan> plan = make_plan(p, o);
      SimulationOptions sim;
      sim.budget_bytes = budget;
      sim.policy = EvictionPolicy::kRecompute;
      Result<SimulationResult> dynamic = simulate_profile(p, sim);
      if (!bound.feasible) {
        EXPECT_FALSE(plan.ok()) << "seed " << seed << " at " << fraction;
        EXPECT_FALSE(dynamic.ok()) << "seed " << seed << " at " << fraction;
        continue;
      }
      if (plan.ok()) {
        EXPECT_GE(plan->predicted.extra_compute_ns, bound.extra_compute_ns)
            << "seed " << seed << " at " << fraction;
        ++compared;
      }
      if (dynamic.ok()) {
        EXPECT_GE(dynamic->stats.recompute_ns, bound.extra_compute_ns)
            << "seed " << seed << " at " << fraction;
      }
    }
  }
  EXPECT_GE(compared, 20);
}

}  // namespace
}  // namespace ebb
