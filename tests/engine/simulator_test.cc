#include "engine/planner/simulator.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/ebb.h"
#include "engine/planner/planner.h"
#include "tests/engine/test_ops.h"
#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

using testing_profiles::training_profile;

const std::string kMlpProfile = EBB_SOURCE_DIR "/profiles/workloads/mlp4_train.profile.json";

TEST(Simulator, RunsTheFixtureWithoutEvictionAboveItsPeak) {
  const Profile p = read_profile(kMlpProfile).value();
  const ProfileFigures f = profile_figures(p);
  SimulationOptions o;
  o.budget_bytes = 2 * f.peak_live_bytes;
  Result<SimulationResult> r = simulate_profile(p, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->budget_bytes, o.budget_bytes);
  EXPECT_GE(r->peak_reserved_bytes, f.peak_live_bytes);
  EXPECT_LE(r->peak_reserved_bytes, o.budget_bytes);
  EXPECT_EQ(r->stats.evictions, 0);
  EXPECT_EQ(r->base_compute_ns, f.total_op_time_ns);
  EXPECT_GE(r->simulated.count(), f.total_op_time_ns);
}

TEST(Simulator, DynamicRecomputeFitsUnderThePeak) {
  const Profile p = training_profile(12, 4);
  const ProfileFigures f = profile_figures(p);
  SimulationOptions o;
  o.budget_bytes = f.peak_live_bytes * 7 / 10;
  o.policy = EvictionPolicy::kRecompute;
  Result<SimulationResult> r = simulate_profile(p, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_LE(r->peak_reserved_bytes, o.budget_bytes);
  EXPECT_GT(r->stats.recomputed_ops, 0);
  EXPECT_GT(r->stats.recompute_ns, 0);

  o.policy = EvictionPolicy::kNone;
  EXPECT_EQ(simulate_profile(p, o).status().code(), StatusCode::kOutOfMemory);
}

TEST(Simulator, RefusesSwappingWithoutAHostLinkAndAZeroBudget) {
  const Profile p = training_profile(4, 1);
  SimulationOptions o;
  o.budget_bytes = profile_figures(p).peak_live_bytes;
  o.policy = EvictionPolicy::kSwap;
  Result<SimulationResult> r = simulate_profile(p, o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("has no host link"), std::string::npos);
  o.hardware = link_hardware_model(25);
  EXPECT_TRUE(simulate_profile(p, o).ok());
  o.budget_bytes = 0;
  EXPECT_EQ(simulate_profile(p, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(Simulator, RefusesAPlanForAnotherProfile) {
  const Profile p = training_profile(4, 1);
  Plan plan;
  plan.profile = profile_key(training_profile(5, 1));
  SimulationOptions o;
  o.budget_bytes = 2 * profile_figures(p).peak_live_bytes;
  o.plan = &plan;
  Result<SimulationResult> r = simulate_profile(p, o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("another profile"), std::string::npos);
}

// A step that updates its parameter in place (Engine::update) records an op with no outputs that
// says what it writes. The simulator runs it as an in-place op, not with a placeholder output,
// so that a plan made for the profile the engine recorded is a plan the simulator accepts.
TEST(Simulator, RunsInPlaceOpsAsRecordedAndTakesPlansForThatProfile) {
  constexpr std::size_t kN = 4096;
  auto device = test_ops::make_cpu_device();
  auto engine = Engine::create({.device = *device, .warmup_iterations = 1}).value();
  Tensor w = engine
                 ->parameter(test_ops::f32("w", {kN}, TensorKind::kParameter),
                             std::vector<float>(kN, 0.5F).data())
                 .value();
  {
    IterationScope it(*engine);
    Tensor a = engine->run("a", {w}, {test_ops::f32("a", {kN})}, test_ops::tanh_op(kN)).value()[0];
    Tensor g =
        engine->run("g", {a}, {test_ops::f32("g", {kN})}, test_ops::scale(kN, 0.1F)).value()[0];
    ASSERT_TRUE(engine->update("sgd", {g}, {w}, test_ops::scale(kN, 1.0F)).ok());
  }
  const Profile recorded = engine->profile().value();
  ASSERT_EQ(recorded.ops.size(), 3U);
  ASSERT_EQ(recorded.ops[2].writes.size(), 1U);
  EXPECT_EQ(as_engine_runs(recorded), recorded) << "no placeholder for an in-place op";

  PlannerOptions planner;
  planner.budget_bytes = 8 * kMiB;
  planner.policy = PlanPolicy::kPlan;
  Result<Plan> plan = make_plan(recorded, planner);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_EQ(plan->profile, profile_key(recorded));
  SimulationOptions o;
  o.budget_bytes = planner.budget_bytes;
  o.plan = &*plan;
  Result<SimulationResult> r = simulate_profile(recorded, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->base_compute_ns, profile_figures(recorded).total_op_time_ns);
}

}  // namespace
}  // namespace ebb
