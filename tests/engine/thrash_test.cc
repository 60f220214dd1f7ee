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

namespace ebb {
namespace {

// A DTR log of one iteration of a binary tree recurrent model of `depth` levels whose states
// are `vec_bytes` each; every op costs 10 us.
std::string tree_recurrent_log(int depth, std::size_t vec_bytes) {
  std::string log;
  int next = 0;
  const auto name = [&] { return "x" + std::to_string(next++); };
  const auto call = [&](const std::string& op, const std::vector<std::string>& args,
                        std::size_t bytes) {
    const std::string out = name();
    std::string a;
    for (const std::string& s : args) a += (a.empty() ? "\"" : ",\"") + s + "\"";
    log += R"({"INSTRUCTION":"CALL","NAME":")" + op + R"(","ARGS":[)" + a + R"(],"RESULT":[")" +
           out + R"("],"TIME":"10000"})" + "\n";
    log += R"({"INSTRUCTION":"MEMORY","NAME":")" + out + R"(","MEMORY":")" + std::to_string(bytes) +
           "\"}\n";
    log += R"({"INSTRUCTION":"ALIAS","NAME":")" + out + R"(","ALIAS":"-1"})" + "\n";
    return out;
  };
  const auto release = [&](const std::string& n) {
    log += R"({"INSTRUCTION":"RELEASE","NAME":")" + n + "\"}\n";
  };
  const std::string weight = name();
  log += R"({"INSTRUCTION":"CONSTANT","NAME":")" + weight + "\"}\n";
  log += R"({"INSTRUCTION":"MEMORY","NAME":")" + weight + R"(","MEMORY":"65536"})" + "\n";
  const int nodes = (1 << depth) - 1;
  const int leaves = 1 << (depth - 1);
  std::vector<std::string> h(nodes + 1), saved(nodes + 1);
  for (int node = nodes; node >= 1; --node) {
    const std::string x = node >= leaves ? call("embedding", {weight}, vec_bytes)
                                         : call("cat", {h[2 * node], h[2 * node + 1]}, vec_bytes);
    saved[node] = call("mv", {weight, x}, vec_bytes);
    h[node] = call("tanh", {saved[node]}, vec_bytes);
    release(x);
  }
  std::vector<std::string> grad(nodes + 1);
  grad[1] = call("ones_like", {h[1]}, vec_bytes);
  for (int node = 1; node <= nodes; ++node) {
    const std::string g = call("tanh_backward", {grad[node], saved[node], h[node]}, vec_bytes);
    release(grad[node]);
    release(saved[node]);
    release(h[node]);
    if (node < leaves) {
      grad[2 * node] = call("slice", {g}, vec_bytes);
      grad[2 * node + 1] = call("slice", {g}, vec_bytes);
    }
    release(g);
  }
  return log;
}

Profile tree_recurrent_profile(int depth, std::size_t vec_bytes) {
  Result<DtrLog> log = parse_dtr_log(tree_recurrent_log(depth, vec_bytes), "tree_recurrent");
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
