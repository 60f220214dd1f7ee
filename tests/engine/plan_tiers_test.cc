// Offload tiers of a plan's swaps: the host tier holds what fits, in eviction order; the rest
// goes to NVMe and the prediction prices it at NVMe's bandwidth; without NVMe, or with a host
// tier of 0 bytes, the assignment is refused naming what was wrong.
#include "engine/planner/plan_tiers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "engine/planner/planner.h"
#include "engine/planner/simulator.h"
#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

using testing_profiles::training_profile;

HardwareModel link_and_nvme(double nvme_gbps) {
  HardwareModel hw = link_hardware_model(25);
  hw.nvme_read_bytes_per_s = nvme_gbps * 1e9;
  hw.nvme_write_bytes_per_s = nvme_gbps * 1e9;
  return hw;
}

Plan swap_all(const Profile& p, const HardwareModel& hw) {
  PlannerOptions o;
  o.policy = PlanPolicy::kSwapAll;
  o.budget_bytes = 4 * profile_figures(p).peak_live_bytes;
  o.hardware = hw;
  o.check_rounds = 0;
  return make_plan(p, o).value();
}

std::size_t largest_swap_bytes(const Plan& plan, const Profile& p) {
  std::size_t most = 0;
  for (const Eviction& e : plan.evictions) most = std::max(most, p.tensors[e.tensor].bytes);
  return most;
}

TEST(PlanTiers, AHostTierThatHoldsEverySwapKeepsThemAll) {
  const Profile p = training_profile(16, 3);
  Plan plan = swap_all(p, link_and_nvme(2));
  const std::int64_t step = plan.predicted.step_ns;
  Result<TierAssignment> a = assign_offload_tiers(plan, p, profile_figures(p).peak_live_bytes);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->nvme_swaps, 0u);
  EXPECT_EQ(a->host_swaps, plan.evictions.size());
  EXPECT_EQ(a->added_step_ns, 0);
  EXPECT_EQ(plan.predicted.step_ns, step);
  for (const Eviction& e : plan.evictions) EXPECT_EQ(e.tier, OffloadTier::kHost);
}

TEST(PlanTiers, SwapsPastTheHostTierGoToNvmeAtItsBandwidth) {
  const Profile p = training_profile(16, 3);
  const std::size_t host = 2 * largest_swap_bytes(swap_all(p, link_and_nvme(2)), p);
  // The slower NVMe is, the more its swaps add; a valid plan either way.
  std::int64_t added_fast = 0;
  for (double gbps : {8.0, 0.5}) {
    Plan plan = swap_all(p, link_and_nvme(gbps));
    const std::int64_t step = plan.predicted.step_ns;
    Result<TierAssignment> a = assign_offload_tiers(plan, p, host);
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    EXPECT_GT(a->nvme_swaps, 0u);
    EXPECT_GT(a->host_swaps, 0u);
    EXPECT_EQ(a->host_swaps + a->nvme_swaps, plan.evictions.size());
    EXPECT_LE(a->peak_host_bytes, host);
    EXPECT_GT(a->added_step_ns, 0);
    EXPECT_EQ(plan.predicted.step_ns, step + a->added_step_ns);
    EXPECT_TRUE(validate_plan(plan, p, "plan").ok()) << validate_plan(plan, p, "plan").to_string();
    // The first swap finds the host tier empty.
    EXPECT_EQ(plan.evictions.front().tier, OffloadTier::kHost);
    if (gbps == 8.0) {
      added_fast = a->added_step_ns;
    } else {
      EXPECT_GT(a->added_step_ns, added_fast);
    }
  }
}

TEST(PlanTiers, MakePlanSendsSwapsToNvmeWhenTheHostTierIsFull) {
  const Profile p = training_profile(16, 3);
  PlannerOptions o;
  o.policy = PlanPolicy::kSwapAll;
  o.budget_bytes = 4 * profile_figures(p).peak_live_bytes;
  o.hardware = link_and_nvme(2);
  o.check_rounds = 0;
  o.host_tier_bytes = 2 * largest_swap_bytes(swap_all(p, o.hardware), p);
  Plan plan = make_plan(p, o).value();
  EXPECT_TRUE(std::any_of(plan.evictions.begin(), plan.evictions.end(),
                          [](const Eviction& e) { return e.tier == OffloadTier::kNvme; }));
  EXPECT_GT(plan.predicted.step_ns, swap_all(p, o.hardware).predicted.step_ns);
}

TEST(PlanTiers, RefusedWithoutNvmeOrWithoutAHostTier) {
  const Profile p = training_profile(16, 3);
  Plan plan = swap_all(p, link_hardware_model(25));
  Result<TierAssignment> a = assign_offload_tiers(plan, p, 1);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("has no NVMe tier"), std::string::npos)
      << a.status().message();
  EXPECT_NE(a.status().message().find("tensor "), std::string::npos) << a.status().message();
  Result<TierAssignment> none = assign_offload_tiers(plan, p, 0);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("0 bytes"), std::string::npos);
}

}  // namespace
}  // namespace ebb
