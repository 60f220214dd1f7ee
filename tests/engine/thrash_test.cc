// The thrash limit of dynamic eviction (EngineOptions::max_recompute_overhead), on generated
// DTR logs of a tree-structured recurrent model: every node's state depends on its whole
// subtree and the backward pass reads the states from the root down, so under a tight budget
// the replay chains reach back to the leaves (the shape of tools/make_workload.py's
// tree_recurrent_train).
#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "allocator/dtr_log.h"
#include "engine/planner/simulator.h"
#include "engine/schema/profile.h"
#include "tests/engine/tree_recurrent_log.h"

namespace ebb {
namespace {

Profile tree_recurrent_profile(int depth, std::size_t vec_bytes) {
  Result<DtrLog> log =
      parse_dtr_log(test_logs::tree_recurrent_log(depth, vec_bytes), "tree_recurrent");
  EXPECT_TRUE(log.ok()) << log.status().to_string();
  Result<Profile> profile = profile_from_dtr_log(*log);
  EXPECT_TRUE(profile.ok()) << profile.status().to_string();
  return *profile;
}

constexpr std::size_t kVecBytes = 256 * 1024;

TEST(ThrashLimit, EndsAThrashingIterationNamingTheBudgetAndTheOverhead) {
  const Profile p = tree_recurrent_profile(8, kVecBytes);
  SimulationOptions o;
  o.budget_bytes = profile_figures(p).peak_live_bytes / 10;
  o.policy = EvictionPolicy::kRecompute;
  o.max_recompute_overhead = 2;  // the commands' default, DTR's
  Result<SimulationResult> r = simulate_profile(p, o);
  ASSERT_EQ(r.status().code(), StatusCode::kOutOfMemory) << r.status().to_string();
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("thrashed under the budget of " + std::to_string(o.budget_bytes) + " bytes"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("past the limit of 2.000x"), std::string::npos) << m;
}

TEST(ThrashLimit, StaysQuietUnderTheLimitAndHonoursAHigherOne) {
  const Profile p = tree_recurrent_profile(6, kVecBytes);
  const ProfileFigures f = profile_figures(p);
  SimulationOptions o;
  o.budget_bytes = f.peak_live_bytes / 4;
  o.policy = EvictionPolicy::kRecompute;
  o.max_recompute_overhead = 0;  // no limit: the thrash runs to its end
  Result<SimulationResult> unlimited = simulate_profile(p, o);
  ASSERT_TRUE(unlimited.ok()) << unlimited.status().to_string();
  const double overhead =
      static_cast<double>(unlimited->stats.recompute_ns) / static_cast<double>(f.total_op_time_ns);
  ASSERT_GT(overhead, 2.0) << "the workload no longer thrashes at 25%";
  // A limit above what the run reaches lets it finish with the same figures.
  o.max_recompute_overhead = overhead + 0.5;
  Result<SimulationResult> limited = simulate_profile(p, o);
  ASSERT_TRUE(limited.ok()) << limited.status().to_string();
  EXPECT_EQ(limited->stats.recompute_ns, unlimited->stats.recompute_ns);
  // Just below it, the limit fires.
  o.max_recompute_overhead = overhead - 0.01;
  EXPECT_EQ(simulate_profile(p, o).status().code(), StatusCode::kOutOfMemory);
}

}  // namespace
}  // namespace ebb
