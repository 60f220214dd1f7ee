// ZeRO end to end through the trainer, on cpu ranks: one rank under plain ctest, 2 and 4 under
// mpirun (every rank runs every test in the same order, so their collectives match).
//  - Stages 0, 1 and 2 give the same losses and final parameters bit for bit, also under a
//    budget with dynamic eviction and with the state on the host.
//  - N ranks with one micro-batch each against one process with --grad-accum N (fp32, no
//    clipping), within a derived bound; the measured deviation over 20 steps is printed. They
//    differ only in how the tied embedding's two gradient terms associate: one process adds
//    ((head_0 + emb_0) + head_1) + emb_1, the ranks (head_0 + emb_0) + (head_1 + emb_1) (every
//    other scale is a power of two, exact). The engine-level test (tests/engine/zero_test.cc)
//    shows the bitwise equality where every gradient is accumulated once per micro-batch.
//  - A sharded checkpoint resumes bit-exact; a corrupt shard and flags that differ across ranks
//    are refused before any step, naming the rank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/offload/offload_test_support.h"
#include "tests/tools/train_test_support.h"
#include "tools/train/trainer.h"

namespace ebb::train {
namespace {

Communicator& comm() {
  // A rank whose test fails early leaves the others waiting in a collective: 30 s, not 120.
  return *process_communicator(DeviceKind::kCpu, std::chrono::seconds(30)).value();
}

TrainOptions tiny(int stage) {
  TrainOptions o;
  o.model = {.layers = 2, .d_model = 32, .heads = 2, .seq = 16, .batch = 2, .vocab = 64};
  o.steps = 4;
  o.seed = 5;
  o.precision = Precision::kBF16;
  o.clip_grad_norm = 1.0F;
  o.host_tier_bytes = 64 * kMiB;
  o.zero_stage = stage;
  o.zero_bucket_bytes = 16 * 1024;  // several buckets
  return o;
}

// A directory every rank names alike: rank 0's process id, gathered.
std::string shared_dir(const std::string& name) {
  const auto pid = static_cast<std::int64_t>(getpid());
  std::vector<std::int64_t> pids(static_cast<std::size_t>(comm().size()));
  EXPECT_TRUE(comm().host_all_gather(&pid, pids.data(), sizeof pid).ok());
  const std::string dir = testing::TempDir() + "train_zero_" + std::to_string(pids[0]) + "_" + name;
  if (comm().rank() == 0) std::filesystem::remove_all(dir);
  std::int64_t done = 0;
  std::vector<std::int64_t> all(pids.size());
  EXPECT_TRUE(comm().host_all_gather(&done, all.data(), sizeof done).ok());  // a barrier
  return dir;
}

bool same(const TrainResult& a, const TrainResult& b) {
  return same_losses(a, b) && same_bits(a.final_parameters, b.final_parameters);
}

TEST(TrainZero, StagesGiveTheSameBitsUnderEveryPolicy) {
  const TrainResult base = train(tiny(0)).value();
  for (int stage = 1; stage <= 3; ++stage) {
    EXPECT_TRUE(same(train(tiny(stage)).value(), base)) << "stage " << stage;
  }
  // Under a budget, with eviction, and with the rank's range of the state on the host.
  TrainOptions budget = tiny(2);
  budget.budget_fraction = 0.7;
  budget.policy = EvictionPolicy::kBoth;
  EXPECT_TRUE(same(train(budget).value(), base)) << "stage 2 at 70% with dynamic eviction";
  // Stage 3 under each gather schedule, under a budget with eviction and with a plan.
  for (GatherPolicy gathers :
       {GatherPolicy::kPlan, GatherPolicy::kJustInTime, GatherPolicy::kDeepSpeed}) {
    TrainOptions three = tiny(3);
    three.steps = 5;
    three.gather_policy = gathers;
    three.budget_fraction = 0.6;
    three.policy = EvictionPolicy::kBoth;
    TrainOptions two = three;
    two.zero_stage = 2;
    const TrainResult got = train(three).value();
    EXPECT_TRUE(same(got, train(two).value()))
        << "stage 3 (" << gather_policy_name(gathers) << ") at 60% against stage 2";
    EXPECT_GT(got.zero.scheduled_gathers, 0) << gather_policy_name(gathers);
  }
  TrainOptions planned = tiny(3);
  planned.steps = 5;
  planned.budget_fraction = 0.6;
  planned.plan_policy = PlanPolicy::kPlan;
  planned.policy = EvictionPolicy::kBoth;
  TrainOptions planned_two = planned;
  planned_two.zero_stage = 2;
  EXPECT_TRUE(same(train(planned).value(), train(planned_two).value()))
      << "stage 3 following the engine's plan at 60%";
  TrainOptions host = tiny(1);
  host.optimizer_state = StatePolicy::kHost;
  EXPECT_TRUE(same(train(host).value(), base)) << "stage 1 with the state on the host";
  // The same run again.
  EXPECT_TRUE(same(train(tiny(0)).value(), base)) << "a second run";
}

// With one rank the reduction's all-to-all and fold are copies: every stage gives the bits of
// the run without ZeRO (the layout, the order of the gradient norm and the update are the same).
TEST(TrainZero, OneRankGivesTheBitsOfTheRunWithoutZero) {
  if (comm().size() != 1) GTEST_SKIP() << "one rank only";
  TrainOptions plain = tiny(0);
  plain.zero_stage.reset();
  const TrainResult want = train(plain).value();
  for (int stage = 0; stage <= 2; ++stage) {
    EXPECT_TRUE(same(train(tiny(stage)).value(), want)) << "stage " << stage;
  }
}

// ZeRO-Infinity's placement: each rank streams its range of the state through its own NVMe
// tier, with the device placement's bits.
TEST(TrainZero, RangesOnNvmeGiveTheBitsOfTheDevicePlacement) {
  const bool nvme =
      probe_io_uring().ok() &&
      ebb::test_support::direct_io_unsupported(ebb::test_support::scratch_base()).empty();
  if (!nvme) GTEST_SKIP() << "no io_uring or O_DIRECT here: NVMe placement not run";
  const TrainResult base = train(tiny(2)).value();
  TrainOptions o = tiny(2);
  o.optimizer_state = StatePolicy::kNvme;
  char dir[] = "/tmp/ebb_zero_nvme_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  o.nvme_directories = {ebb::test_support::scratch_base().string() + "/" +
                        std::filesystem::path(dir).filename().string()};
  std::filesystem::remove(dir);
  std::filesystem::create_directories(o.nvme_directories[0]);
  o.nvme_tier_bytes = 64 * kMiB;
  o.nvme_chunk_bytes = 16 * kKiB;
  const TrainResult r = train(o).value();
  EXPECT_TRUE(same(r, base));
  EXPECT_GT(r.offload.nvme_bytes, 0U);
  std::filesystem::remove_all(o.nvme_directories[0]);
}

TEST(TrainZero, RanksGiveTheBitsOfOneProcessAccumulatingAsManyMicroBatches) {
  const int n = comm().size();
  TrainOptions zero = tiny(2);
  zero.precision = Precision::kF32;
  zero.clip_grad_norm = 0;
  zero.steps = 20;
  TrainOptions one = zero;
  one.zero_stage.reset();
  one.grad_accum = n;
  const TrainResult a = train(zero).value();
  const TrainResult b = train(one).value();  // this process alone
  double worst_loss = 0;
  double worst_param = 0;
  for (std::size_t s = 0; s < a.steps.size(); ++s) {
    worst_loss = std::max(worst_loss, std::abs(static_cast<double>(a.steps[s].loss) -
                                               static_cast<double>(b.steps[s].loss)));
  }
  for (std::size_t i = 0; i < a.final_parameters.size(); ++i) {
    worst_param = std::max(worst_param, std::abs(static_cast<double>(a.final_parameters[i]) -
                                                 static_cast<double>(b.final_parameters[i])));
  }
  std::printf(
      "%d ranks against one process with --grad-accum %d, 20 steps: max |loss| "
      "deviation %g, max |parameter| deviation %g\n",
      n, n, worst_loss, worst_param);
  // The bound: AdamW moves a parameter by at most lr * (|m_hat / (sqrt(v_hat) + eps)| + wd |p|)
  // per step, and |m_hat| <= sqrt(v_hat) for beta1^2 <= beta2 (Kingma & Ba, section 2.1), so
  // two runs from the same start differ by at most 2 * lr * steps * (1 + wd * max|p|) after
  // `steps` steps, whatever their gradients; the losses of nearby parameters differ by much less.
  const double lr = default_learning_rate(OptimizerKind::kAdamW);
  EXPECT_LE(worst_param, 2 * lr * 20 * 1.01);
  EXPECT_LE(worst_loss, 1e-3);
  if (n == 1) EXPECT_TRUE(same(a, b));
}

TEST(TrainZero, ShardedCheckpointsResumeBitExact) {
  const TrainResult whole = train(tiny(1)).value();
  TrainOptions o = tiny(1);
  o.checkpoint_dir = shared_dir("resume");
  o.checkpoint_every = 2;
  o.steps = 2;
  {
    const Result<TrainResult> first = train(o);
    ASSERT_TRUE(first.ok()) << first.status().to_string();
  }
  o.steps = 4;
  o.checkpoint_every = 0;
  o.resume = true;
  const TrainResult r = train(o).value();
  EXPECT_EQ(r.resumed_from_step, 2);
  ASSERT_EQ(r.steps.size(), 2U);
  EXPECT_TRUE(same_bits(r.steps[1].loss, whole.steps[3].loss));
  EXPECT_TRUE(same_bits(r.final_parameters, whole.final_parameters));
}

TEST(TrainZero, ACorruptShardIsRefusedNamingTheRankAndTheFile) {
  TrainOptions o = tiny(2);
  o.checkpoint_dir = shared_dir("corrupt");
  o.checkpoint_every = 2;
  o.steps = 2;
  ASSERT_TRUE(train(o).ok());
  const int victim = comm().size() - 1;
  if (comm().rank() == victim) {
    // Flip a byte of one of this rank's state files.
    std::string file;
    for (const auto& e : std::filesystem::recursive_directory_iterator(o.checkpoint_dir + "/rank-" +
                                                                       std::to_string(victim))) {
      if (e.is_regular_file() &&
          e.path().filename().string().find("adamw_m") != std::string::npos) {
        file = e.path().string();
      }
    }
    ASSERT_FALSE(file.empty());
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    char c = 0;
    f.seekg(7);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(7);
    f.write(&c, 1);
  }
  o.resume = true;
  o.steps = 4;
  o.checkpoint_every = 0;
  test_support::expect_refused(o, "rank " + std::to_string(victim));
  test_support::expect_refused(o, "adamw_m");
}

TEST(TrainZero, FlagsThatDifferAcrossRanksAreRefused) {
  if (comm().size() == 1) GTEST_SKIP() << "one rank agrees with itself";
  TrainOptions o = tiny(1);
  if (comm().rank() == 1) o.optimizer.learning_rate = 0.5F;
  test_support::expect_refused(o, "rank(s) 1 differs from rank 0");
}

TEST(TrainZero, BadZeroOptionsAreRefused) {
  test_support::expect_refused(tiny(4), "--zero 4");
  TrainOptions no = tiny(0);
  no.zero_stage.reset();
  no.inject_exit_step = 2;
  test_support::expect_refused(no, "--inject-exit-step");
}

}  // namespace
}  // namespace ebb::train
