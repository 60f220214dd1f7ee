#include "engine/planner/simulator.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

using testing_profiles::training_profile;

const std::string kFixture = EBB_SOURCE_DIR "/profiles/workloads/mlp4_train.profile.json";

TEST(Simulator, RunsTheFixtureWithoutEvictionAboveItsPeak) {
  const Profile p = read_profile(kFixture).value();
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

}  // namespace
}  // namespace ebb
