// plan_state_placement (engine/planner/state_placement.h): against brute force over every
// assignment on small generated cases (byte sizes that are whole granules, where the search is
// exact), feasible on large ones, and the known answers at the ends: an ample budget keeps
// everything, the smallest feasible one keeps nothing, and one below it says the smallest.
#include "engine/planner/state_placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace ebb {
namespace {

constexpr StateChoice kChoices[] = {StateChoice::kResident, StateChoice::kSwapped,
                                    StateChoice::kHost, StateChoice::kNvme};

bool fits(const StatePlacementInputs& in, const std::vector<StateChoice>& choice) {
  std::size_t resident = 0;
  std::size_t swapped = 0;
  for (std::size_t k = 0; k < choice.size(); ++k) {
    if (choice[k] == StateChoice::kResident) resident += in.slices[k].state_bytes;
    if (choice[k] == StateChoice::kSwapped) {
      swapped = std::max(swapped, in.slices[k].state_bytes);
    }
  }
  return in.other_peak_bytes + resident <= in.budget_bytes &&
         in.step_other_bytes + resident + swapped <= in.budget_bytes;
}

double total_seconds(const StatePlacementInputs& in, const std::vector<StateChoice>& choice) {
  double t = 0;
  for (std::size_t k = 0; k < choice.size(); ++k) t += state_choice_seconds(in, k, choice[k]);
  return t;
}

// The least total time over every feasible assignment (infinity: none).
double brute_force(const StatePlacementInputs& in) {
  const std::size_t n = in.slices.size();
  std::vector<StateChoice> choice(n);
  double best = std::numeric_limits<double>::infinity();
  std::size_t combos = 1;
  for (std::size_t k = 0; k < n; ++k) combos *= 4;
  for (std::size_t code = 0; code < combos; ++code) {
    std::size_t c = code;
    for (std::size_t k = 0; k < n; ++k, c /= 4) choice[k] = kChoices[c % 4];
    if (fits(in, choice)) best = std::min(best, total_seconds(in, choice));
  }
  return best;
}

StatePlacementInputs random_case(std::mt19937_64& rng, std::size_t max_bytes) {
  std::uniform_int_distribution<std::size_t> slices(1, 6);
  std::uniform_int_distribution<std::size_t> bytes(1, max_bytes);
  std::uniform_real_distribution<double> rate(0.5, 8.0);
  StatePlacementInputs in;
  const std::size_t n = slices(rng);
  std::size_t state = 0;
  for (std::size_t k = 0; k < n; ++k) {
    StateSliceCost s{.name = "s" + std::to_string(k),
                     .state_bytes = bytes(rng),
                     .gradient_bytes = bytes(rng) / 4,
                     .parameter_bytes = bytes(rng) / 4};
    state += s.state_bytes;
    in.slices.push_back(s);
  }
  in.other_peak_bytes = bytes(rng);
  in.step_other_bytes = bytes(rng);
  // From below the smallest feasible budget to everything resident.
  const std::size_t floor = std::max(in.other_peak_bytes, in.step_other_bytes);
  in.budget_bytes = floor - std::min(floor, max_bytes / 8) +
                    std::uniform_int_distribution<std::size_t>(0, state + max_bytes)(rng);
  in.link_bytes_per_s = rate(rng);
  in.device_state_bytes_per_s = 4 * rate(rng);
  in.cpu_state_bytes_per_s = rate(rng);
  const bool nvme = rng() % 2 == 0;
  in.nvme_read_bytes_per_s = nvme ? rate(rng) : 0;
  in.nvme_write_bytes_per_s = nvme ? rate(rng) : 0;
  in.allow_swap = rng() % 4 != 0;
  return in;
}

TEST(StatePlacement, MatchesBruteForceWhereTheBytesAreWholeGranules) {
  std::mt19937_64 rng(20261204);
  int feasible = 0;
  for (int trial = 0; trial < 400; ++trial) {
    // Free bytes below 4096: one granule is one byte, so the search is exact.
    const StatePlacementInputs in = random_case(rng, 600);
    const double best = brute_force(in);
    Result<StatePlacementPlan> plan = plan_state_placement(in);
    if (!std::isfinite(best)) {
      // Infeasible only below the smallest budget (every slice can move to the host).
      ASSERT_FALSE(plan.ok()) << "trial " << trial;
      EXPECT_EQ(plan.status().code(), StatusCode::kOutOfMemory);
      continue;
    }
    ASSERT_TRUE(plan.ok()) << "trial " << trial << ": " << plan.status().to_string();
    ++feasible;
    std::vector<StateChoice> choice;
    for (const StateSliceChoice& c : plan->slices) choice.push_back(c.choice);
    EXPECT_TRUE(fits(in, choice)) << "trial " << trial;
    EXPECT_NEAR(plan->predicted_s, best, 1e-9 * best) << "trial " << trial;
    EXPECT_NEAR(total_seconds(in, choice), plan->predicted_s, 1e-9 * best);
    EXPECT_LE(plan->forward_peak_bytes, in.budget_bytes);
    EXPECT_LE(plan->step_peak_bytes, in.budget_bytes);
  }
  EXPECT_GT(feasible, 300) << "the generator should mostly make feasible cases";
}

TEST(StatePlacement, LargeCasesFitAndAreNeverBelowTheOptimum) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    // MiB-scale slices: granules of many bytes, rounded up; the plan still fits.
    const StatePlacementInputs in = random_case(rng, std::size_t{64} << 20);
    const double best = brute_force(in);
    Result<StatePlacementPlan> plan = plan_state_placement(in);
    if (!std::isfinite(best)) {
      EXPECT_FALSE(plan.ok());
      continue;
    }
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    std::vector<StateChoice> choice;
    for (const StateSliceChoice& c : plan->slices) choice.push_back(c.choice);
    EXPECT_TRUE(fits(in, choice)) << "trial " << trial;
    EXPECT_GE(plan->predicted_s, best * (1 - 1e-12)) << "trial " << trial;
  }
}

StatePlacementInputs four_slices() {
  StatePlacementInputs in;
  for (int k = 0; k < 4; ++k) {
    in.slices.push_back({.name = "s" + std::to_string(k),
                         .state_bytes = 1000,
                         .gradient_bytes = 100,
                         .parameter_bytes = 100});
  }
  in.other_peak_bytes = 5000;
  in.step_other_bytes = 3000;
  in.link_bytes_per_s = 1e3;
  in.device_state_bytes_per_s = 1e5;
  in.cpu_state_bytes_per_s = 1e4;
  return in;
}

TEST(StatePlacement, KnownAnswersAtTheEndsOfTheBudget) {
  StatePlacementInputs in = four_slices();
  // Ample: everything stays, at the device's time.
  in.budget_bytes = 100000;
  StatePlacementPlan all = plan_state_placement(in).value();
  for (const StateSliceChoice& c : all.slices) EXPECT_EQ(c.choice, StateChoice::kResident);
  EXPECT_DOUBLE_EQ(all.predicted_s, 4 * 1000 / 1e5);
  EXPECT_EQ(all.forward_peak_bytes, 9000U);
  // Two slices' room: two stay; the others take the cheaper move. Host: 1000/1e4 + 200/1e3 =
  // 0.3 s; swapped: 0.01 + 2000/1e3 = 2.01 s. The host wins.
  in.budget_bytes = 7000;
  StatePlacementPlan two = plan_state_placement(in).value();
  int resident = 0;
  for (const StateSliceChoice& c : two.slices) {
    resident += c.choice == StateChoice::kResident ? 1 : 0;
    if (c.choice != StateChoice::kResident) EXPECT_EQ(c.choice, StateChoice::kHost);
  }
  EXPECT_EQ(resident, 2);
  // The smallest feasible budget: nothing stays.
  in.budget_bytes = 5000;
  StatePlacementPlan none = plan_state_placement(in).value();
  for (const StateSliceChoice& c : none.slices) EXPECT_NE(c.choice, StateChoice::kResident);
  EXPECT_EQ(none.smallest_budget_bytes, 5000U);
  // Below it: an error that says the smallest.
  in.budget_bytes = 4999;
  Result<StatePlacementPlan> below = plan_state_placement(in);
  ASSERT_FALSE(below.ok());
  EXPECT_EQ(below.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(below.status().message().find("5000 bytes"), std::string::npos)
      << below.status().message();
}

TEST(StatePlacement, SwapsWhenTheLinkIsFastAndTheCpuSlow) {
  StatePlacementInputs in = four_slices();
  in.link_bytes_per_s = 1e6;
  in.cpu_state_bytes_per_s = 10;
  // Forward and backward leave room for two slices; the step has room for one more swapped in.
  in.other_peak_bytes = 5000;
  in.step_other_bytes = 2000;
  in.budget_bytes = 7000;
  StatePlacementPlan plan = plan_state_placement(in).value();
  int resident = 0;
  int swapped = 0;
  for (const StateSliceChoice& c : plan.slices) {
    resident += c.choice == StateChoice::kResident ? 1 : 0;
    swapped += c.choice == StateChoice::kSwapped ? 1 : 0;
  }
  EXPECT_EQ(resident, 2);
  EXPECT_EQ(swapped, 2);
  EXPECT_EQ(plan.step_peak_bytes, 2000U + 2000 + 1000);
  // The engine may not swap: the host it is.
  in.allow_swap = false;
  const StatePlacementPlan no_swap = plan_state_placement(in).value();  // kept: the loop reads it
  for (const StateSliceChoice& c : no_swap.slices) {
    EXPECT_NE(c.choice, StateChoice::kSwapped);
  }
}

// A step of one slice: a forward op, then the update that writes the master and a moment.
TEST(StatePlacement, InputsFromAProfileGroupTheStateBySlice) {
  Profile p;
  const auto tensor = [&](std::string name, std::size_t bytes, TensorKind kind) {
    ProfiledTensor t;
    t.id = p.tensors.size();
    t.name = std::move(name);
    t.bytes = bytes;
    t.kind = kind;
    p.tensors.push_back(t);
    return t.id;
  };
  const std::size_t params = tensor("decay.s0.params", 100, TensorKind::kParameter);
  const std::size_t grads = tensor("decay.s0.grads", 100, TensorKind::kGradient);
  const std::size_t master = tensor("decay.s0.master", 200, TensorKind::kOptimizerState);
  const std::size_t m = tensor("decay.s0.adamw_m", 200, TensorKind::kOptimizerState);
  const std::size_t act = tensor("act", 1000, TensorKind::kActivation);
  p.tensors[act].producer = 0;
  p.tensors[act].accesses = {};
  p.tensors[params].accesses = {0};
  p.tensors[grads].accesses = {1};
  p.tensors[master].accesses = {1};
  p.tensors[m].accesses = {1};
  p.ops.push_back({.index = 0,
                   .name = "forward",
                   .inputs = {params},
                   .outputs = {act},
                   .duration_ns = 1000,
                   .frees = {act},
                   .writes = {}});
  p.ops.push_back({.index = 1,
                   .name = "adamw",
                   .inputs = {grads, master, m},
                   .outputs = {},
                   .duration_ns = 400,
                   .frees = {},
                   .writes = {master, m}});
  p.memory = {{1600, 0}, {600, 0}};
  HardwareModel hw;
  hw.host_to_device_bytes_per_s = 2e9;
  hw.device_to_host_bytes_per_s = 1e9;
  StatePlacementInputs in = state_placement_inputs(p, 1200, hw, 5e8).value();
  ASSERT_EQ(in.slices.size(), 1U);
  EXPECT_EQ(in.slices[0].name, "decay.s0");
  EXPECT_EQ(in.slices[0].state_bytes, 400U);
  EXPECT_EQ(in.slices[0].gradient_bytes, 100U);
  EXPECT_EQ(in.slices[0].parameter_bytes, 100U);
  EXPECT_DOUBLE_EQ(in.device_state_bytes_per_s, 400 / 400e-9);
  EXPECT_EQ(in.other_peak_bytes, 1600U - 400);
  EXPECT_EQ(in.step_other_bytes, 200U);
  EXPECT_DOUBLE_EQ(in.link_bytes_per_s, 1e9) << "the slower direction";
  EXPECT_TRUE(in.allow_swap);
  // 1200 B of budget leaves none for the state beside the 1200 B of the rest: off it goes.
  StatePlacementPlan plan = plan_state_placement(in).value();
  EXPECT_NE(plan.slices[0].choice, StateChoice::kResident);
  EXPECT_EQ(state_decisions(plan)[0].slice, "decay.s0");
  // No optimizer state: said so.
  Profile bare = p;
  for (ProfiledTensor& t : bare.tensors) {
    if (t.kind == TensorKind::kOptimizerState) t.kind = TensorKind::kParameter;
  }
  EXPECT_EQ(state_placement_inputs(bare, 1200, hw, 5e8).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(StatePlacement, RefusesBadInputByName) {
  StatePlacementInputs in = four_slices();
  in.budget_bytes = 100000;
  in.cpu_state_bytes_per_s = 0;
  EXPECT_EQ(plan_state_placement(in).status().code(), StatusCode::kInvalidArgument);
  in = four_slices();
  in.slices.clear();
  EXPECT_EQ(plan_state_placement(in).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ebb
