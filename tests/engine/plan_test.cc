#include "engine/schema/plan.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "kernels/device.h"
#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

using testing_profiles::training_profile;

HardwareModel link25() {
  HardwareModel m;
  m.name = "pcie4-25gbps";
  m.host_to_device_bytes_per_s = 25e9;
  m.device_to_host_bytes_per_s = 25e9;
  m.link_latency = std::chrono::microseconds(5);
  return m;
}

// Layers 4: ops 0-3 forward (a_i at op i), 4-7 backward (layer 3 at op 4 ... layer 0 at op 7).
// Tensors: w0-w3 are 0-3, x is 4, a0-a3 are 5-8, g0-g3 are 9-12. a0 is read by ops 1 and 6,
// a1 by ops 2 and 5.
Plan sample_plan(const Profile& p) {
  Plan plan;
  plan.policy = "plan";
  plan.budget_bytes = 123456789;
  plan.profile = profile_key(p);
  plan.hardware = link25();
  plan.evictions = {
      Eviction{5, EvictionMethod::kSwap, OffloadTier::kHost, 1, 4, 6},
      Eviction{6, EvictionMethod::kRecompute, OffloadTier::kHost, 2, 5, 5},
  };
  plan.predicted.peak_reserved_bytes = 4 * kMiB;
  plan.predicted.peak_live_bytes = 3 * kMiB + 7;
  plan.predicted.base_compute_ns = 1000;
  plan.predicted.extra_compute_ns = 17;
  plan.predicted.step_ns = 1100;
  plan.predicted.swapped_bytes = 99;
  plan.predicted.recomputed_ops = 1;
  plan.predicted.checked_on_sim = true;
  plan.planner_seconds = 0.125;
  return plan;
}

Profile four_layers() { return training_profile(4, 7, /*skips=*/false); }

TEST(Plan, JsonRoundTripsAndTheFileIsAtomic) {
  const Profile p = four_layers();
  Plan plan = sample_plan(p);
  plan.evictions.push_back(
      Eviction{9, EvictionMethod::kRecompute, OffloadTier::kHost, 4, 4, std::nullopt});
  plan.holds = {Hold{.tensor = 4, .until = 6}};
  Result<Plan> back = plan_from_json(plan_to_json(plan), "plan.json");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, plan);
  // With the optimizer state placed per slice (--optimizer-state auto).
  Plan placed = plan;
  placed.state_placement = {{"decay.s0", "host", 4096, 0.25}, {"no_decay.s0", "device", 512, 0.5}};
  Result<Plan> placed_back = plan_from_json(plan_to_json(placed), "plan.json");
  ASSERT_TRUE(placed_back.ok()) << placed_back.status().to_string();
  EXPECT_EQ(*placed_back, placed);
  std::string bad = plan_to_json(placed);
  bad.replace(bad.find("\"host\""), 6, "\"disk\"");
  Result<Plan> refused = plan_from_json(bad, "plan.json");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("state_placement[0].choice"), std::string::npos)
      << refused.status().message();

  const std::string dir = ::testing::TempDir() + "ebb_plan_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/plan.json";
  ASSERT_TRUE(write_plan(plan, path).ok());
  Result<Plan> read = read_plan(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_EQ(*read, plan);
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files += entry.exists();
  EXPECT_EQ(files, 1u);  // no temporary file left behind
  EXPECT_EQ(read_plan(dir + "/missing.json").status().code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

void expect_error(const Status& status, const std::string& text) {
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.to_string();
  EXPECT_NE(status.message().find(text), std::string::npos)
      << "expected \"" << text << "\" in: " << status.message();
}

TEST(Plan, JsonErrorsNameTheField) {
  const Plan plan = sample_plan(four_layers());
  std::string text = plan_to_json(plan);
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  expect_error(plan_from_json(replaced("\"version\": 1", "\"version\": 2"), "p.json").status(),
               "p.json: version: plan schema version 2 is not supported");
  expect_error(plan_from_json(replaced("\"method\":\"recompute\"", "\"method\":\"drop\""), "p.json")
                   .status(),
               "p.json: evictions[1].method: expected \"swap\" or \"recompute\"");
  expect_error(
      plan_from_json(replaced("\"evict_after\":2", "\"evict_after\":-2"), "p.json").status(),
      "p.json: evictions[1].evict_after: expected a non-negative integer");
  expect_error(plan_from_json(replaced("\"tensor\":6,", ""), "p.json").status(),
               "p.json: evictions[1].tensor: missing");
  expect_error(
      plan_from_json(replaced("\"fingerprint\":\"", "\"fingerprint\":\"xyz"), "p.json").status(),
      "p.json: profile.fingerprint: expected 16 hex digits");
  expect_error(plan_from_json("[1, 2]", "p.json").status(), "p.json: (document)");
  expect_error(plan_from_json("{\"version\":", "p.json").status(), "not valid JSON");
}

TEST(Plan, ValidateAcceptsTheSampleAndRejectsEachBrokenRule) {
  const Profile p = four_layers();
  const Plan good = sample_plan(p);
  ASSERT_TRUE(validate_plan(good, p, "plan.json").ok())
      << validate_plan(good, p, "plan.json").to_string();

  Plan other = good;
  expect_error(validate_plan(other, training_profile(5, 7, false), "plan.json"),
               "plan.json: profile: the plan was made for another profile");
  other.version = 3;
  expect_error(validate_plan(other, p, "plan.json"), "plan.json: version");

  Plan bad = good;
  bad.evictions[1].tensor = 99;
  expect_error(validate_plan(bad, p, "plan.json"),
               "evictions[1].tensor: tensor 99 is out of range");
  bad = good;
  bad.evictions[1].needed_at = 6;  // op 6 reads g2, a0 and w1, not a1
  bad.evictions[1].prefetch_at = 6;
  expect_error(validate_plan(bad, p, "plan.json"),
               "plan.json: evictions[1].needed_at: op 6 does not read tensor 6 \"a1\"");
  bad = good;
  bad.evictions[1].evict_after = 1;  // op 2 reads a1 inside (1, 5)
  expect_error(validate_plan(bad, p, "plan.json"), "evictions[1].needed_at: op 2 reads tensor 6");
  bad = good;
  bad.evictions[0] = Eviction{1, EvictionMethod::kRecompute, OffloadTier::kHost, 1, 6, 6};  // w1
  expect_error(validate_plan(bad, p, "plan.json"), "evictions[0].method: recompute of tensor 1");
  bad = good;
  bad.evictions[1].evict_after = 12;
  expect_error(validate_plan(bad, p, "plan.json"),
               "evictions[1].evict_after: op 12 is out of range");
  bad = good;
  bad.evictions[0].prefetch_at = 1;
  expect_error(validate_plan(bad, p, "plan.json"), "evictions[0].prefetch_at: op 1 is not in");
  bad = good;
  bad.hardware = HardwareModel{.name = "none"};
  expect_error(validate_plan(bad, p, "plan.json"),
               "evictions[0].method: swap to host, but hardware \"none\" has no host link");
  bad = good;
  std::swap(bad.evictions[0], bad.evictions[1]);
  expect_error(validate_plan(bad, p, "plan.json"), "evictions are not sorted");
  bad = good;
  bad.evictions.push_back(bad.evictions[1]);
  expect_error(validate_plan(bad, p, "plan.json"), "overlaps an earlier eviction of tensor 6");
  // Holds: only of a tensor without a producer, between the program's free and the last op.
  bad = good;
  bad.holds = {Hold{.tensor = 5, .until = 6}};
  expect_error(validate_plan(bad, p, "plan.json"),
               "holds[0].tensor: tensor 5 \"a0\" has a producer");
  bad.holds = {Hold{.tensor = 4, .until = 6}};  // x: never freed
  expect_error(validate_plan(bad, p, "plan.json"), "holds[0].until: op 6 is not between the free");
  bad.holds = {Hold{.tensor = 40, .until = 6}};
  expect_error(validate_plan(bad, p, "plan.json"), "holds[0].tensor: tensor 40 is out of range");
}

TEST(Plan, ActionsListEvictionsAndPrefetchesByOp) {
  const Profile p = four_layers();
  const Plan plan = sample_plan(p);
  const std::vector<OpActions> actions = plan_actions(plan, p.ops.size());
  ASSERT_EQ(actions.size(), p.ops.size());
  EXPECT_EQ(actions[1].evict_after, std::vector<std::size_t>{0});
  EXPECT_EQ(actions[2].evict_after, std::vector<std::size_t>{1});
  EXPECT_EQ(actions[4].prefetch_before, std::vector<std::size_t>{0});
  EXPECT_TRUE(actions[5].prefetch_before.empty());  // a recompute is not a prefetch
}

TEST(Plan, ProfileKeyIgnoresTimingsButNotTheWork) {
  const Profile p = four_layers();
  Profile slower = p;
  for (ProfiledOp& op : slower.ops) op.duration_ns *= 3;
  EXPECT_EQ(profile_key(slower), profile_key(p));
  Profile bigger = p;
  bigger.tensors[5].bytes += 1;
  EXPECT_NE(profile_key(bigger).fingerprint, profile_key(p).fingerprint);
  Profile renamed = p;
  renamed.ops[0].name = "other";
  EXPECT_NE(profile_key(renamed).fingerprint, profile_key(p).fingerprint);
}

TEST(HardwareModel, BundledProfilesParse) {
  for (const char* name : {"pcie4-25gbps", "h100-sxm"}) {
    Result<HardwareModel> m =
        read_hardware_model(std::string(EBB_SOURCE_DIR "/profiles/hw/") + name + ".json");
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    EXPECT_EQ(m->name, name);
    EXPECT_TRUE(m->has_host_link());
  }
  Result<HardwareModel> back =
      hardware_model_from_json(hardware_model_to_json(link25()), "hw.json");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, link25());
}

TEST(HardwareModel, ErrorsNameTheField) {
  const std::string ok =
      R"({"name":"x","host_to_device_bytes_per_s":1e9,"device_to_host_bytes_per_s":1e9,)"
      R"("link_latency_ns":0,"duplex":true})";
  ASSERT_TRUE(hardware_model_from_json(ok, "hw.json").ok());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = ok;
    t.replace(t.find(from), from.size(), to);
    return hardware_model_from_json(t, "hw.json").status();
  };
  expect_error(with("\"host_to_device_bytes_per_s\":1e9,", ""),
               "hw.json: host_to_device_bytes_per_s: missing");
  expect_error(with("\"device_to_host_bytes_per_s\":1e9", "\"device_to_host_bytes_per_s\":-1"),
               "hw.json: device_to_host_bytes_per_s: must be a finite number");
  expect_error(with("\"device_to_host_bytes_per_s\":1e9", "\"device_to_host_bytes_per_s\":0"),
               "hw.json: device_to_host_bytes_per_s: is 0 while the other direction is not");
  expect_error(with("\"link_latency_ns\":0", "\"link_latency_ns\":-5"),
               "hw.json: link_latency_ns: must be >= 0");
  expect_error(with("\"duplex\":true", "\"duplex\":1"), "hw.json: duplex: expected true or false");
  expect_error(
      with("\"host_to_device_bytes_per_s\":1e9", "\"host_to_device_bytes_per_s\":\"fast\""),
      "hw.json: host_to_device_bytes_per_s: expected a number");
  EXPECT_EQ(read_hardware_model("/nonexistent/hw.json").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ebb
