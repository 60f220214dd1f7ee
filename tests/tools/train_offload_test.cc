// Optimizer state off the device, end to end through the trainer on the cpu device: host, NVMe
// and auto placement give the device placement's bits (losses and final parameters), take the
// state off the device, resume bit-exact from checkpoints, also across placements; the delayed
// update runs and reports what it hid; bad options fail before any step, naming what is wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/offload/offload_test_support.h"
#include "tests/tools/train_test_support.h"
#include "tools/train/trainer.h"

namespace ebb::train {
namespace {

TrainOptions tiny(Precision precision, OptimizerKind optimizer) {
  TrainOptions o;
  o.model = {.layers = 2, .d_model = 32, .heads = 2, .seq = 16, .batch = 4, .vocab = 64};
  o.steps = 4;
  o.seed = 5;
  o.precision = precision;
  o.optimizer.kind = optimizer;
  o.grad_accum = 2;
  o.host_tier_bytes = 64 * kMiB;
  return o;
}

std::string offload_temp_dir(const std::string& name) {
  return test_support::temp_dir("train_offload_test", name);
}

bool have_nvme() {
  return probe_io_uring().ok() &&
         ebb::test_support::direct_io_unsupported(ebb::test_support::scratch_base()).empty();
}

// An NVMe tier small enough for a test, in a scratch directory.
void use_nvme(TrainOptions& o, const std::string& dir) {
  o.nvme_directories = {dir};
  o.nvme_tier_bytes = 64 * kMiB;
  o.nvme_chunk_bytes = 16 * kKiB;  // several chunks per slice
}

void expect_same_run(const TrainResult& a, const TrainResult& b, const std::string& what) {
  ASSERT_EQ(a.steps.size(), b.steps.size()) << what;
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_TRUE(same_bits(a.steps[i].loss, b.steps[i].loss))
        << what << " step " << a.steps[i].step << ": " << a.steps[i].loss << " vs "
        << b.steps[i].loss;
  }
  EXPECT_TRUE(same_bits(a.final_parameters, b.final_parameters)) << what;
}

struct Case {
  Precision precision;
  OptimizerKind optimizer;
};

class TrainOffload : public testing::TestWithParam<Case> {};

TEST_P(TrainOffload, EveryPlacementGivesTheDeviceBits) {
  const TrainOptions base = tiny(GetParam().precision, GetParam().optimizer);
  Result<TrainResult> device = train(base);
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  ASSERT_GT(device->optimizer_state_bytes, 0);

  TrainOptions host = base;
  host.optimizer_state = StatePolicy::kHost;
  Result<TrainResult> on_host = train(host);
  ASSERT_TRUE(on_host.ok()) << on_host.status().to_string();
  expect_same_run(*device, *on_host, "host");
  EXPECT_EQ(on_host->optimizer_state_bytes, 0) << "no master weights or moments on the device";
  EXPECT_EQ(on_host->offload.cpu_steps, base.steps);
  EXPECT_GT(on_host->offload.early_gradient_copies, 0);
  for (StatePlacement p : on_host->state_placement) EXPECT_EQ(p, StatePlacement::kHost);

  if (!have_nvme()) GTEST_SKIP() << "no io_uring or O_DIRECT here: NVMe placement not run";
  ebb::test_support::ScratchDir dir;
  TrainOptions nvme = base;
  nvme.optimizer_state = StatePolicy::kNvme;
  use_nvme(nvme, dir.path());
  Result<TrainResult> on_nvme = train(nvme);
  ASSERT_TRUE(on_nvme.ok()) << on_nvme.status().to_string();
  expect_same_run(*device, *on_nvme, "nvme");
  EXPECT_EQ(on_nvme->optimizer_state_bytes, 0);
  EXPECT_GT(on_nvme->offload.nvme_bytes, 0U);
}

INSTANTIATE_TEST_SUITE_P(PrecisionsAndOptimizers, TrainOffload,
                         testing::Values(Case{Precision::kF32, OptimizerKind::kAdamW},
                                         Case{Precision::kBF16, OptimizerKind::kAdamW},
                                         Case{Precision::kF16, OptimizerKind::kAdafactor},
                                         Case{Precision::kBF16, OptimizerKind::kSm3}),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(precision_name(info.param.precision)) + "_" +
                                  std::string(optimizer_name(info.param.optimizer));
                         });

TEST(TrainOffloadAuto, FitsTheBudgetPerSliceAndKeepsTheBits) {
  TrainOptions base = tiny(Precision::kBF16, OptimizerKind::kAdamW);
  base.policy = EvictionPolicy::kBoth;
  Result<TrainResult> device = train(base);
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  TrainOptions o = base;
  o.optimizer_state = StatePolicy::kAuto;
  o.budget_fraction = 0.8;
  Result<TrainResult> r = train(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(r->state_plan.has_value());
  ASSERT_EQ(r->state_plan->slices.size(), r->state_placement.size());
  for (std::size_t k = 0; k < r->state_placement.size(); ++k) {
    EXPECT_EQ(r->state_placement[k], placement_of(r->state_plan->slices[k].choice));
  }
  EXPECT_LE(r->state_plan->forward_peak_bytes, r->budget_bytes);
  EXPECT_LE(r->state_plan->step_peak_bytes, r->budget_bytes);
  expect_same_run(*device, *r, "auto at 80%");
}

// Resume from a checkpoint written with the state on the host (or NVMe), into the same
// placement and into the device placement: the straight run's bits.
TEST(TrainOffloadResume, IsBitExactWithinAndAcrossPlacements) {
  TrainOptions o = tiny(Precision::kBF16, OptimizerKind::kAdamW);
  o.lr_warmup = 1;
  o.lr_min = 1e-5F;
  Result<TrainResult> straight = train(o);
  ASSERT_TRUE(straight.ok()) << straight.status().to_string();
  ebb::test_support::ScratchDir dir;
  const bool nvme = have_nvme();
  TrainOptions first = o;
  first.steps = 2;
  first.optimizer_state = nvme ? StatePolicy::kNvme : StatePolicy::kHost;
  if (nvme) use_nvme(first, dir.path());
  first.checkpoint_dir = offload_temp_dir("resume");
  first.checkpoint_every = 2;
  ASSERT_TRUE(train(first).ok());
  for (StatePolicy placement : {first.optimizer_state, StatePolicy::kDevice, StatePolicy::kHost}) {
    TrainOptions second = o;
    second.optimizer_state = placement;
    if (placement == StatePolicy::kNvme) use_nvme(second, dir.path());
    second.checkpoint_dir = first.checkpoint_dir;
    second.resume = true;
    Result<TrainResult> resumed = train(second);
    ASSERT_TRUE(resumed.ok()) << resumed.status().to_string();
    ASSERT_EQ(resumed->steps.size(), 2U);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_TRUE(same_bits(resumed->steps[i].loss, straight->steps[i + 2].loss))
          << state_policy_name(placement) << " step " << i + 3;
    }
    EXPECT_TRUE(same_bits(resumed->final_parameters, straight->final_parameters))
        << state_policy_name(placement);
  }
  std::filesystem::remove_all(first.checkpoint_dir);
}

TEST(TrainOffloadDelayed, RunsOneUpdateStaleAndReportsTheHiddenShare) {
  TrainOptions o = tiny(Precision::kBF16, OptimizerKind::kAdamW);
  o.steps = 5;
  o.optimizer_state = StatePolicy::kHost;
  Result<TrainResult> plain = train(o);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  o.delayed_update = true;
  Result<TrainResult> delayed = train(o);
  ASSERT_TRUE(delayed.ok()) << delayed.status().to_string();
  // Steps 1 and 2 see the same parameters either way; step 3 is the first on stale ones.
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(same_bits(plain->steps[i].loss, delayed->steps[i].loss)) << "step " << i + 1;
  }
  EXPECT_FALSE(same_bits(plain->final_parameters, delayed->final_parameters))
      << "the delayed update changes the results";
  EXPECT_EQ(delayed->offload.cpu_steps, o.steps);
  EXPECT_GE(delayed->offload.wait_s, 0.0);
  EXPECT_LE(delayed->offload.wait_s, delayed->offload.cpu_step_s + 1.0);
  // Deterministic: the same bits again.
  Result<TrainResult> again = train(o);
  ASSERT_TRUE(again.ok());
  expect_same_run(*delayed, *again, "delayed, twice");
}

TEST(TrainOffloadBadInput, EachIsRefusedBeforeAnyStep) {
  const auto refused = test_support::expect_refused;
  const TrainOptions base = tiny(Precision::kBF16, OptimizerKind::kAdamW);
  TrainOptions o = base;
  o.optimizer_state = StatePolicy::kNvme;
  refused(o, "--nvme-dir");
  o = base;
  o.delayed_update = true;
  refused(o, "--delayed-update");
  o = base;
  o.optimizer_state = StatePolicy::kAuto;
  refused(o, "--budget");
  o = base;
  o.optimizer_state = StatePolicy::kHost;
  o.host_tier_bytes = 16 * kKiB;
  refused(o, "needs");
  o = base;
  o.optimizer_state = StatePolicy::kAuto;
  o.policy = EvictionPolicy::kNone;  // nothing else can make room: the state must
  o.budget_bytes = minimum_budget_bytes(o);
  refused(o, "smallest feasible");
}

}  // namespace
}  // namespace ebb::train
