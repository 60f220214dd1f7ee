// The reference trainer end to end on the cpu device: the engine's promise (bitwise identical
// losses and parameters under every policy at 70% and 40% of the unconstrained peak), that the
// model learns, and that bad configurations and data files fail up front with clear errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "tests/offload/offload_test_support.h"
#include "tools/train/gpt_model.h"
#include "tools/train/token_data.h"
#include "tools/train/trainer.h"

namespace ebb::train {
namespace {

// Four layers: with two, 40% of the peak is too little for recompute alone (the MLP backward
// holds three [N, 4C] tensors at once, and parameters and AdamW moments, which recompute cannot
// evict, take a quarter of the budget), as in a real model, depth is what makes the forward
// activations, and so the room eviction wins, dominate.
TrainOptions small_options() {
  TrainOptions o;
  o.model = {.layers = 4, .d_model = 32, .heads = 2, .seq = 32, .batch = 16, .vocab = 64};
  o.steps = 4;
  o.seed = 7;
  return o;
}

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "train_test_" + std::to_string(getpid()) + "_" + name;
}

struct PolicyCase {
  EvictionPolicy policy;
  double fraction;
  Precision precision = Precision::kF32;
};

class TrainUnderBudget : public testing::TestWithParam<PolicyCase> {};

// The promise at every precision: in bf16 and fp16 too (16-bit activations swapped and
// recomputed, fp32 masters updated in place) a run under a budget is the unconstrained run of
// the same precision, bit for bit, fp16's skipped steps included.
TEST_P(TrainUnderBudget, LossesAndParametersAreBitwiseIdentical) {
  TrainOptions base = small_options();
  base.precision = GetParam().precision;
  Result<TrainResult> free_run = train(base);
  ASSERT_TRUE(free_run.ok()) << free_run.status().to_string();

  TrainOptions budgeted = base;
  budgeted.policy = GetParam().policy;
  budgeted.budget_bytes = static_cast<std::size_t>(
      static_cast<double>(free_run->peak_reserved_bytes) * GetParam().fraction);
  Result<TrainResult> tight = train(budgeted);
  ASSERT_TRUE(tight.ok()) << tight.status().to_string();

  ASSERT_EQ(tight->steps.size(), free_run->steps.size());
  for (std::size_t i = 0; i < tight->steps.size(); ++i) {
    EXPECT_TRUE(same_bits(tight->steps[i].loss, free_run->steps[i].loss))
        << "step " << i + 1 << ": " << tight->steps[i].loss << " vs " << free_run->steps[i].loss;
    EXPECT_EQ(tight->steps[i].skipped, free_run->steps[i].skipped) << "step " << i + 1;
  }
  EXPECT_TRUE(same_bits(tight->final_parameters, free_run->final_parameters));
  EXPECT_LE(tight->peak_reserved_bytes, budgeted.budget_bytes);
  // The budget was below the peak, so the engine must have evicted something.
  EXPECT_GT(tight->engine.evictions, 0);
}

INSTANTIATE_TEST_SUITE_P(
    PoliciesAndBudgets, TrainUnderBudget,
    testing::Values(PolicyCase{EvictionPolicy::kSwap, 0.7}, PolicyCase{EvictionPolicy::kSwap, 0.4},
                    PolicyCase{EvictionPolicy::kRecompute, 0.7},
                    PolicyCase{EvictionPolicy::kRecompute, 0.4},
                    PolicyCase{EvictionPolicy::kBoth, 0.7}, PolicyCase{EvictionPolicy::kBoth, 0.4},
                    PolicyCase{EvictionPolicy::kSwap, 0.5, Precision::kBF16},
                    PolicyCase{EvictionPolicy::kRecompute, 0.7, Precision::kBF16},
                    PolicyCase{EvictionPolicy::kBoth, 0.5, Precision::kBF16},
                    PolicyCase{EvictionPolicy::kSwap, 0.5, Precision::kF16},
                    PolicyCase{EvictionPolicy::kRecompute, 0.7, Precision::kF16},
                    PolicyCase{EvictionPolicy::kBoth, 0.5, Precision::kF16}),
    [](const testing::TestParamInfo<PolicyCase>& info) {
      const std::string precision = info.param.precision == Precision::kF32
                                        ? ""
                                        : std::string(precision_name(info.param.precision)) + "_";
      return precision + std::string(eviction_policy_name(info.param.policy)) + "_" +
             std::to_string(static_cast<int>(info.param.fraction * 100)) + "pct";
    });

// The promise with NVMe in the path: a host tier far too small for the swapped activations, so
// that most swap-outs spill to the NVMe tier and come back through staging.
TEST(TrainWithNvme, LossesAndParametersAreBitwiseIdenticalWithAHostTierTooSmall) {
  EBB_SKIP_WITHOUT_IO_URING();
  std::string dir = (test_support::scratch_base() / "train_nvme_XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const TrainOptions base = small_options();
  Result<TrainResult> free_run = train(base);
  ASSERT_TRUE(free_run.ok()) << free_run.status().to_string();

  TrainOptions budgeted = base;
  budgeted.policy = EvictionPolicy::kSwap;
  budgeted.budget_bytes =
      static_cast<std::size_t>(static_cast<double>(free_run->peak_reserved_bytes) * 0.4);
  budgeted.host_tier_bytes = 256 * kKiB;
  budgeted.nvme_directories = {dir};
  budgeted.nvme_tier_bytes = 256 * kMiB;
  Result<TrainResult> tight = train(budgeted);
  ASSERT_TRUE(tight.ok()) << tight.status().to_string();
  EXPECT_EQ(rmdir(dir.c_str()), 0) << "the NVMe tier left files behind in " << dir;

  ASSERT_EQ(tight->steps.size(), free_run->steps.size());
  for (std::size_t i = 0; i < tight->steps.size(); ++i) {
    EXPECT_TRUE(same_bits(tight->steps[i].loss, free_run->steps[i].loss))
        << "step " << i + 1 << ": " << tight->steps[i].loss << " vs " << free_run->steps[i].loss;
  }
  EXPECT_TRUE(same_bits(tight->final_parameters, free_run->final_parameters));
  EXPECT_LE(tight->peak_reserved_bytes, budgeted.budget_bytes);
  // The host tier could not hold what was swapped: the rest went through NVMe, both ways.
  EXPECT_GT(tight->engine.swapped_out_bytes + tight->engine.nvme_written_bytes,
            static_cast<std::int64_t>(4 * budgeted.host_tier_bytes));
  EXPECT_GT(tight->engine.nvme_spills, 0);
  EXPECT_GT(tight->engine.nvme_read_bytes, 0);
}

struct PlanCase {
  PlanPolicy policy;
  double fraction;
  double link_gbps;
};

class TrainByPlan : public testing::TestWithParam<PlanCase> {};

// A planner's plan, followed after the warm-up with dynamic eviction under it: the same bits in
// every step, within the budget. A policy that cannot fit the budget leaves the steps to dynamic
// eviction; `plan`, the cost-aware planner, must fit it and be followed in every later step.
TEST_P(TrainByPlan, LossesAndParametersAreBitwiseIdentical) {
  TrainOptions base = small_options();
  base.steps = 5;
  base.link_gbps = GetParam().link_gbps;
  Result<TrainResult> free_run = train(base);
  ASSERT_TRUE(free_run.ok()) << free_run.status().to_string();

  TrainOptions budgeted = base;
  budgeted.policy = EvictionPolicy::kBoth;
  budgeted.plan_policy = GetParam().policy;
  budgeted.budget_bytes = static_cast<std::size_t>(
      static_cast<double>(free_run->peak_reserved_bytes) * GetParam().fraction);
  Result<TrainResult> tight = train(budgeted);
  ASSERT_TRUE(tight.ok()) << tight.status().to_string();
  ASSERT_EQ(tight->steps.size(), free_run->steps.size());
  EXPECT_TRUE(same_losses(*tight, *free_run));
  EXPECT_TRUE(same_bits(tight->final_parameters, free_run->final_parameters));
  EXPECT_LE(tight->peak_reserved_bytes, budgeted.budget_bytes);
  if (GetParam().policy == PlanPolicy::kPlan) {
    ASSERT_TRUE(tight->plan.has_value()) << tight->executor.last_refusal;
    EXPECT_EQ(tight->executor.planned_iterations, base.steps - base.warmup_iterations);
    EXPECT_EQ(tight->executor.diverged_iterations, 0);
    EXPECT_TRUE(tight->plan->predicted.checked_on_sim);
  }
}

INSTANTIATE_TEST_SUITE_P(
    PlannersAndBudgets, TrainByPlan,
    testing::Values(PlanCase{PlanPolicy::kPlan, 0.5, 0}, PlanCase{PlanPolicy::kPlan, 0.5, 4},
                    PlanCase{PlanPolicy::kRecomputeAll, 0.5, 0},
                    PlanCase{PlanPolicy::kSqrt, 0.5, 0}, PlanCase{PlanPolicy::kSwapAll, 0.5, 4}),
    [](const testing::TestParamInfo<PlanCase>& info) {
      std::string name = std::string(plan_policy_name(info.param.policy)) + "_" +
                         std::to_string(static_cast<int>(info.param.fraction * 100)) + "pct";
      if (info.param.link_gbps > 0) name += "_link";
      for (char& c : name) c = c == '-' ? '_' : c;
      return name;
    });

TEST(Train, SameSeedGivesTheSameRun) {
  Result<TrainResult> a = train(small_options());
  Result<TrainResult> b = train(small_options());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(same_bits(a->final_parameters, b->final_parameters));
  TrainOptions other = small_options();
  other.seed = 8;
  Result<TrainResult> c = train(other);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(same_bits(a->final_parameters, c->final_parameters));
}

// Without keep_steps the result holds the last step only, while on_step still sees every step
// with its resident host memory: what keeps `ebb train`'s own memory flat over a long run.
TEST(Train, WithoutKeepStepsOnlyTheLastStepIsKept) {
  TrainOptions o = small_options();
  o.keep_steps = false;
  std::vector<StepStats> seen;
  Result<TrainResult> r = train(o, [&](const StepStats& s) { seen.push_back(s); });
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(o.steps));
  ASSERT_EQ(r->steps.size(), 1U);
  EXPECT_EQ(r->steps.back().step, o.steps);
  EXPECT_TRUE(same_bits(r->steps.back().loss, seen.back().loss));
  for (const StepStats& s : seen) EXPECT_GT(s.rss_bytes, 0U) << "step " << s.step;
  Result<TrainResult> kept = train(small_options());
  ASSERT_TRUE(kept.ok()) << kept.status().to_string();
  EXPECT_EQ(kept->steps.size(), static_cast<std::size_t>(o.steps));
  EXPECT_TRUE(same_bits(kept->final_parameters, r->final_parameters));
}

TEST(Train, LossFallsWellBelowLnVocabOnSyntheticTokens) {
  TrainOptions o = small_options();
  o.steps = 60;
  Result<TrainResult> r = train(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const double ln_vocab = std::log(static_cast<double>(o.model.vocab));
  EXPECT_NEAR(r->steps.front().loss, ln_vocab, 0.3);  // an untrained model guesses uniformly
  EXPECT_LT(r->steps.back().loss, 0.6 * ln_vocab)
      << "loss did not fall: first " << r->steps.front().loss << ", last " << r->steps.back().loss;
}

TEST(Train, ProfileOutIsWrittenAfterTheWarmup) {
  TrainOptions o = small_options();
  o.profile_out = temp_path("profile.json");
  ASSERT_TRUE(train(o).ok());
  Result<Profile> profile = read_profile(o.profile_out);
  ASSERT_TRUE(profile.ok()) << profile.status().to_string();
  EXPECT_GT(profile->ops.size(), 50U);
  std::remove(o.profile_out.c_str());
}

TEST(TrainBadInput, ShapesAreCheckedUpFront) {
  auto message = [](GptConfig c) {
    TrainOptions o = small_options();
    o.model = c;
    Result<TrainResult> r = train(o);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().to_string();
  };
  GptConfig c = small_options().model;
  c.heads = 3;
  EXPECT_NE(message(c).find("--heads 3 does not divide --d-model 32"), std::string::npos);
  c = small_options().model;
  c.seq = 0;
  EXPECT_NE(message(c).find("--seq must be positive"), std::string::npos);
  c = small_options().model;
  c.batch = 0;
  EXPECT_NE(message(c).find("--batch must be positive"), std::string::npos);
  c = small_options().model;
  c.vocab = 70000;
  EXPECT_NE(message(c).find("above 65535"), std::string::npos);
}

TEST(TrainBadInput, BudgetBelowOneStepsWorkingSetIsRejectedBeforeTraining) {
  TrainOptions o = small_options();
  o.policy = EvictionPolicy::kBoth;
  o.budget_bytes = 4096;
  Result<TrainResult> r = train(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("below the"), std::string::npos) << r.status().to_string();
}

TEST(TokenFile, RoundTripsAndTrains) {
  const std::string path = temp_path("tokens.bin");
  std::vector<std::uint16_t> tokens(4096);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::uint16_t>(i % 64);
  ASSERT_TRUE(TokenData::write_file(path, tokens).ok());
  Result<TokenData> data = TokenData::from_file(path, 64, 129);
  ASSERT_TRUE(data.ok()) << data.status().to_string();
  EXPECT_EQ(data->size(), 4096);
  std::vector<std::int32_t> in;
  std::vector<std::int32_t> target;
  data->batch(1, 4, 32, in, target);  // step 1 starts at token 4 * 32
  EXPECT_EQ(in[0], 128 % 64);
  EXPECT_EQ(target[0], 129 % 64);
  TrainOptions o = small_options();
  o.data_path = path;
  EXPECT_TRUE(train(o).ok());
  std::remove(path.c_str());
}

// Writes a token file with a chosen header and payload, for the error cases.
std::string write_raw(const std::string& name, std::int32_t magic, std::int32_t version,
                      std::int32_t count, std::size_t payload_tokens, std::uint16_t value = 1) {
  const std::string path = temp_path(name);
  std::vector<std::int32_t> header(kTokenFileHeaderInts, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::vector<std::uint16_t> payload(payload_tokens, value);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()),
            static_cast<std::streamsize>(header.size() * 4));
  out.write(reinterpret_cast<const char*>(payload.data()),
            static_cast<std::streamsize>(payload.size() * 2));
  return path;
}

TEST(TokenFile, ErrorsNameTheFileAndTheProblem) {
  auto error = [](const std::string& path, int vocab = 64) {
    Result<TokenData> r = TokenData::from_file(path, vocab, 129);
    EXPECT_FALSE(r.ok()) << path;
    const std::string text = r.ok() ? std::string() : r.status().to_string();
    EXPECT_NE(text.find(path), std::string::npos) << text;
    std::remove(path.c_str());
    return text;
  };
  EXPECT_NE(error(temp_path("missing.bin")).find("cannot open"), std::string::npos);
  EXPECT_NE(error(write_raw("magic.bin", 1234, 1, 200, 200)).find("magic 1234"), std::string::npos);
  EXPECT_NE(error(write_raw("version.bin", kTokenFileMagic, 2, 200, 200)).find("version 2"),
            std::string::npos);
  EXPECT_NE(error(write_raw("truncated.bin", kTokenFileMagic, 1, 200, 150)).find("truncated"),
            std::string::npos);
  EXPECT_NE(error(write_raw("trailing.bin", kTokenFileMagic, 1, 200, 250)).find("trailing"),
            std::string::npos);
  EXPECT_NE(error(write_raw("short.bin", kTokenFileMagic, 1, 100, 100)).find("fewer than the 129"),
            std::string::npos);
  EXPECT_NE(error(write_raw("vocab.bin", kTokenFileMagic, 1, 200, 200, 64)).find("outside --vocab"),
            std::string::npos);
  const std::string header_only = temp_path("header_only.bin");
  std::ofstream(header_only, std::ios::binary) << "abc";
  EXPECT_NE(error(header_only).find("shorter than the 1024-byte header"), std::string::npos);
}

}  // namespace
}  // namespace ebb::train
