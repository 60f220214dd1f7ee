// The reference trainer's model state end to end on the cpu device: bf16 keeps the bitwise
// promise under a planner's plan (under dynamic eviction every precision is checked by
// TrainUnderBudget, train_test.cc), gradient accumulation matches one large batch within what
// the summation order allows, fp16 loss scaling skips and backs off, clipping bounds the update,
// model state takes the bytes per parameter its formula says, resume is bit-exact for every
// precision and optimizer, and bad options fail before any step.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_device.h"
#include "tests/tools/train_test_support.h"
#include "tools/train/gpt_model.h"
#include "tools/train/token_data.h"
#include "tools/train/trainer.h"

namespace ebb::train {
namespace {

TrainOptions small_options(Precision precision) {
  TrainOptions o;
  o.model = {.layers = 4, .d_model = 32, .heads = 2, .seq = 32, .batch = 16, .vocab = 64};
  o.steps = 4;
  o.seed = 7;
  o.precision = precision;
  return o;
}

// A smaller model still, for the tests that run many configurations.
TrainOptions tiny_options(Precision precision, OptimizerKind optimizer) {
  TrainOptions o;
  o.model = {.layers = 2, .d_model = 32, .heads = 2, .seq = 16, .batch = 4, .vocab = 64};
  o.steps = 4;
  o.seed = 11;
  o.precision = precision;
  o.optimizer.kind = optimizer;
  return o;
}

std::string temp_dir(const std::string& name) {
  return test_support::temp_dir("train_state_test", name);
}

void expect_same_run(const TrainResult& a, const TrainResult& b) {
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_TRUE(same_bits(a.steps[i].loss, b.steps[i].loss))
        << "step " << a.steps[i].step << ": " << a.steps[i].loss << " vs " << b.steps[i].loss;
    EXPECT_EQ(a.steps[i].skipped, b.steps[i].skipped);
  }
  EXPECT_TRUE(same_bits(a.final_parameters, b.final_parameters));
}

TEST(TrainPrecision, Bf16ByThePlannerIsBitwiseIdentical) {
  const TrainOptions base = small_options(Precision::kBF16);
  Result<TrainResult> free_run = train(base);
  ASSERT_TRUE(free_run.ok()) << free_run.status().to_string();
  TrainOptions planned = base;
  planned.plan_policy = PlanPolicy::kPlan;
  planned.policy = EvictionPolicy::kRecompute;
  planned.budget_bytes = free_run->peak_reserved_bytes / 2;
  Result<TrainResult> tight = train(planned);
  ASSERT_TRUE(tight.ok()) << tight.status().to_string();
  ASSERT_TRUE(tight->plan.has_value()) << "the planner must have planned the step";
  expect_same_run(*tight, *free_run);
  EXPECT_LE(tight->peak_reserved_bytes, planned.budget_bytes);
}

// K micro-batches of B/K against one batch of B: the same tokens, the same gradient up to the
// order of the sums. The first step's loss is the mean of the same n = B*T per-token losses in
// two orders (one sum of n, against K sums of n/K and a sum of K), and all of them are >= 0,
// so the two differ by at most 2(n-1)u relative, u = 2^-24 (Higham, Accuracy and Stability of
// Numerical Algorithms, 2nd ed., eq. 4.4). Later steps follow parameters that differ by the
// rounding of the gradient sums, which AdamW's normalisation does not bound; they are checked
// at 1e-3 relative, far above the deviation measured (README, "Model state").
TEST(TrainGradAccum, FourMicroBatchesMatchOneBatchWithinTheSummationOrder) {
  TrainOptions one = small_options(Precision::kF32);
  one.steps = 3;
  TrainOptions four = one;
  four.grad_accum = 4;
  four.model.batch = one.model.batch / 4;
  Result<TrainResult> a = train(one);
  Result<TrainResult> b = train(four);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  const double n = static_cast<double>(one.model.batch) * one.model.seq;
  const double u = std::ldexp(1.0, -24);
  const double first = std::fabs(a->steps[0].loss - b->steps[0].loss) / a->steps[0].loss;
  EXPECT_LE(first, 2 * (n - 1) * u) << "step 1: " << a->steps[0].loss << " vs " << b->steps[0].loss;
  for (std::size_t i = 1; i < a->steps.size(); ++i) {
    const double rel = std::fabs(a->steps[i].loss - b->steps[i].loss) / a->steps[i].loss;
    EXPECT_LE(rel, 1e-3) << "step " << i + 1;
    std::printf("[ measured ] step %zu: K=1 %.9g, K=4 %.9g, relative deviation %.3g\n", i + 1,
                a->steps[i].loss, b->steps[i].loss, rel);
  }
  std::printf("[ measured ] step 1 relative deviation %.3g (bound %.3g)\n", first, 2 * (n - 1) * u);
  // Each micro-batch's activations die before the next one starts: a quarter of the batch
  // needs far less than the whole one at its peak.
  EXPECT_LT(b->peak_live_bytes, a->peak_live_bytes);
}

// The warm-up profile covers the whole optimizer step: every micro-batch's ops and the update.
TEST(TrainGradAccum, TheProfileCoversEveryMicroBatch) {
  const auto ops_of = [](int k) {
    TrainOptions o = tiny_options(Precision::kF32, OptimizerKind::kAdamW);
    o.grad_accum = k;
    o.steps = 2;
    o.profile_out = temp_dir("profile_k" + std::to_string(k)) + ".json";
    EXPECT_TRUE(train(o).ok());
    Result<Profile> p = read_profile(o.profile_out);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    std::size_t forward = 0;
    for (const ProfiledOp& op : p->ops) forward += op.name.find("embed") == 0 ? 1 : 0;
    std::filesystem::remove(o.profile_out);
    return std::pair{p->ops.size(), forward};
  };
  const auto [ops1, embeds1] = ops_of(1);
  const auto [ops3, embeds3] = ops_of(3);
  EXPECT_EQ(embeds3, 3 * embeds1) << "one embedding forward per micro-batch";
  EXPECT_GT(ops3, 2 * ops1);
}

// fp16: an overflowing loss scale skips the step (no update) and halves the scale; a skip that
// would take the scale below its minimum stops the run with an error that says so.
TEST(TrainLossScale, OverflowSkipsTheStepAndBacksOff) {
  TrainOptions o = tiny_options(Precision::kF16, OptimizerKind::kAdamW);
  o.steps = 14;
  o.loss_scaler.initial_scale = std::ldexp(1.0F, 28);
  Result<TrainResult> r = train(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(r->steps[0].skipped) << "a 2^28 scale must overflow fp16 gradients";
  std::int64_t skipped = 0;
  for (std::size_t i = 0; i < r->steps.size(); ++i) {
    skipped += r->steps[i].skipped ? 1 : 0;
    if (i > 0) {
      const float expected =
          r->steps[i - 1].skipped ? r->steps[i - 1].loss_scale / 2 : r->steps[i - 1].loss_scale;
      EXPECT_EQ(r->steps[i].loss_scale, expected) << "step " << i + 1;
    }
  }
  EXPECT_EQ(r->skipped_steps, skipped);
  EXPECT_FALSE(r->steps.back().skipped) << "the scale backs off until the gradients fit";
  EXPECT_LT(r->steps.back().loss, r->steps.front().loss);

  o.loss_scaler.min_scale = std::ldexp(1.0F, 27) + 1;
  Result<TrainResult> stopped = train(o);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(stopped.status().message().find("scale"), std::string::npos)
      << stopped.status().to_string();
}

TEST(TrainLossScale, ASkippedStepLeavesEveryMasterWeightUnchanged) {
  auto device = create_cpu_device({}).value();
  auto engine = Engine::create({.device = *device}).value();
  const GptConfig config{
      .layers = 2, .d_model = 32, .heads = 2, .seq = 16, .batch = 4, .vocab = 64};
  auto model =
      GptModel::create(*engine, config, 3,
                       {.precision = Precision::kF16, .grad_dtype = DType::kF16, .optimizer = {}})
          .value();
  const std::vector<float> before = model->parameters_to_host().value();
  TokenData data = TokenData::synthetic(config.vocab, 4096, 5);
  std::vector<std::vector<std::int32_t>> inputs(1);
  std::vector<std::vector<std::int32_t>> targets(1);
  data.batch(0, config.batch, config.seq, inputs[0], targets[0]);
  StepOutcome outcome = model
                            ->step(inputs, targets,
                                   {.optimizer_step = 1,
                                    .learning_rate = 1e-3F,
                                    .loss_scale = std::ldexp(1.0F, 40),
                                    .clip_norm = 0,
                                    .skip_nonfinite = true})
                            .value();
  EXPECT_TRUE(outcome.skipped);
  EXPECT_TRUE(same_bits(model->parameters_to_host().value(), before));
  // And the gradient buffers start the next step from zero: the same step at a fitting scale
  // gives the loss and the update of a model that never overflowed.
  auto fresh_engine = Engine::create({.device = *device}).value();
  auto fresh =
      GptModel::create(*fresh_engine, config, 3,
                       {.precision = Precision::kF16, .grad_dtype = DType::kF16, .optimizer = {}})
          .value();
  const StepControl fits{.optimizer_step = 1,
                         .learning_rate = 1e-3F,
                         .loss_scale = 1024,
                         .clip_norm = 0,
                         .skip_nonfinite = true};
  StepOutcome again = model->step(inputs, targets, fits).value();
  StepOutcome clean = fresh->step(inputs, targets, fits).value();
  EXPECT_FALSE(again.skipped);
  EXPECT_TRUE(same_bits(again.loss, clean.loss));
  EXPECT_TRUE(same_bits(model->parameters_to_host().value(), fresh->parameters_to_host().value()));
}

// Clipping: the reported norm is the unclipped gradient's, and the update sees the clipped one.
// AdamW normalises its update, so clipping shows where the clipped gradient falls far below
// its epsilon (1e-8): clipped to a norm of 1e-9 over ~28k elements, the first update moves
// each weight by about lr * |g| / eps, a thousandth of the unclipped lr.
TEST(TrainClip, ClippingScalesTheGradientAndReportsTheNorm) {
  auto distance = [](const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d += std::fabs(double{a[i]} - b[i]);
    return d;
  };
  // The parameters at step 0: an fp16 run whose one step is skipped.
  TrainOptions still = tiny_options(Precision::kF16, OptimizerKind::kAdamW);
  still.steps = 1;
  still.loss_scaler.initial_scale = std::ldexp(1.0F, 40);
  TrainOptions free16 = still;
  free16.loss_scaler.initial_scale = 1024;
  TrainOptions clipped16 = free16;
  clipped16.clip_grad_norm = 1e-9F;
  Result<TrainResult> start = train(still);
  Result<TrainResult> unclipped = train(free16);
  Result<TrainResult> clipped = train(clipped16);
  ASSERT_TRUE(start.ok() && unclipped.ok() && clipped.ok());
  ASSERT_TRUE(start->steps[0].skipped);
  EXPECT_GT(unclipped->steps[0].grad_norm, 0.1F);
  EXPECT_EQ(clipped->steps[0].grad_norm, unclipped->steps[0].grad_norm);
  const double moved_free = distance(unclipped->final_parameters, start->final_parameters);
  const double moved_clipped = distance(clipped->final_parameters, start->final_parameters);
  EXPECT_GT(moved_free, 0);
  EXPECT_GT(moved_clipped, 0);
  EXPECT_LT(moved_clipped, moved_free / 100)
      << "clipped to 1e-9 of a norm of " << unclipped->steps[0].grad_norm;
  // A clip norm above the gradient's norm changes nothing.
  TrainOptions loose = free16;
  loose.clip_grad_norm = 1e6F;
  Result<TrainResult> unchanged = train(loose);
  ASSERT_TRUE(unchanged.ok());
  EXPECT_TRUE(same_bits(unchanged->final_parameters, unclipped->final_parameters));
}

// The schedule as the steps report it: linear warm-up to the peak, then cosine to the floor.
TEST(TrainSchedule, StepsReportTheWarmUpAndTheCosineDecay) {
  TrainOptions o = tiny_options(Precision::kF32, OptimizerKind::kAdamW);
  o.steps = 6;
  o.optimizer.learning_rate = 1e-3F;
  o.lr_warmup = 2;
  o.lr_min = 1e-4F;
  Result<TrainResult> r = train(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FLOAT_EQ(r->steps[0].learning_rate, 0.5e-3F);
  EXPECT_FLOAT_EQ(r->steps[1].learning_rate, 1e-3F);
  EXPECT_FLOAT_EQ(r->steps[2].learning_rate, 1e-3F) << "the decay starts at the peak";
  for (std::size_t i = 3; i < r->steps.size(); ++i) {
    EXPECT_LT(r->steps[i].learning_rate, r->steps[i - 1].learning_rate);
  }
  EXPECT_FLOAT_EQ(r->steps.back().learning_rate, 1e-4F);
}

struct StateCase {
  Precision precision;
  OptimizerKind optimizer;
  std::optional<DType> grad_dtype;
};

class ModelStateBytes : public testing::TestWithParam<StateCase> {};

// Device bytes of model state, by the allocator's statistics per tensor kind, against the
// formula: each flat buffer is rounded up to the alignment times the rank count, and Adafactor
// and SM3 keep O(rows + columns) per matrix, so the measured bytes may pass the formula by that
// much and no more.
TEST_P(ModelStateBytes, MatchTheFormulaUpToPaddingAndFactoredStatistics) {
  TrainOptions o = tiny_options(GetParam().precision, GetParam().optimizer);
  o.grad_dtype = GetParam().grad_dtype;
  o.steps = 1;
  Result<TrainResult> r = train(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const double p = static_cast<double>(r->parameters);
  const double measured = static_cast<double>(r->parameter_state_bytes + r->gradient_state_bytes +
                                              r->optimizer_state_bytes);
  const double formula = model_state_bytes_per_parameter(o) * p;
  EXPECT_GE(measured, formula);
  // Padding: each parameter starts at a 512-byte boundary in each flat buffer, and each slice
  // of each group is padded to a multiple of 512 B (one rank): less than 512 B per parameter
  // and per slice, in each flat buffer (parameters, gradients, fp32 masters in 16-bit
  // precisions, AdamW's two moments). Factored statistics: (rows + columns) floats per matrix,
  // 4 B per element of a vector, and an allocation of up to 512 B per state tensor.
  const GptConfig& c = o.model;
  const bool adamw = GetParam().optimizer == OptimizerKind::kAdamW;
  const double parameters = 12.0 * c.layers + 4;
  const double slices = 2.0 * (c.layers + 3);
  const double flat_buffers = 2 + (o.precision == Precision::kF32 ? 0 : 1) + (adamw ? 2 : 0);
  const double padding = 512.0 * (parameters + slices) * flat_buffers;
  const double matrices = 4.0 * c.layers + 1;
  const double vectors = (8.0 * c.layers + 2) * 4 * c.d_model;
  const double factored =
      adamw ? 0
            : 4.0 * matrices * (c.vocab + 5.0 * c.d_model) + 4.0 * vectors + 512.0 * 3 * parameters;
  EXPECT_LE(measured, formula + padding + factored)
      << "measured " << measured / p << " B/param, formula " << formula / p;
}

INSTANTIATE_TEST_SUITE_P(
    Configurations, ModelStateBytes,
    testing::Values(StateCase{Precision::kF32, OptimizerKind::kAdamW, std::nullopt},
                    StateCase{Precision::kBF16, OptimizerKind::kAdamW, std::nullopt},
                    StateCase{Precision::kBF16, OptimizerKind::kAdamW, DType::kF32},
                    StateCase{Precision::kBF16, OptimizerKind::kAdafactor, std::nullopt},
                    StateCase{Precision::kBF16, OptimizerKind::kSm3, std::nullopt}),
    [](const testing::TestParamInfo<StateCase>& info) {
      return std::string(precision_name(info.param.precision)) + "_" +
             std::string(optimizer_name(info.param.optimizer)) +
             (info.param.grad_dtype ? "_grad32" : "");
    });

struct ResumeCase {
  Precision precision;
  OptimizerKind optimizer;
};

class TrainResume : public testing::TestWithParam<ResumeCase> {};

// 2N steps in one run against N steps, a checkpoint, and N resumed steps: the same bits, with a
// schedule whose position matters (warm-up then decay) and, in fp16, a loss scale that moved.
TEST_P(TrainResume, IsBitExact) {
  TrainOptions o = tiny_options(GetParam().precision, GetParam().optimizer);
  o.steps = 4;
  o.lr_warmup = 1;
  o.lr_min = 1e-5F;
  if (o.precision == Precision::kF16) o.loss_scaler.initial_scale = std::ldexp(1.0F, 24);
  Result<TrainResult> straight = train(o);
  ASSERT_TRUE(straight.ok()) << straight.status().to_string();

  TrainOptions first = o;
  first.steps = 2;
  first.checkpoint_dir =
      temp_dir(std::string("resume_") + std::string(precision_name(o.precision)) + "_" +
               std::string(optimizer_name(o.optimizer.kind)));
  first.checkpoint_every = 2;
  Result<TrainResult> half = train(first);
  ASSERT_TRUE(half.ok()) << half.status().to_string();
  EXPECT_EQ(half->checkpoints_written, (std::vector<int>{2}));

  TrainOptions second = o;
  second.checkpoint_dir = first.checkpoint_dir;
  second.resume = true;
  Result<TrainResult> resumed = train(second);
  ASSERT_TRUE(resumed.ok()) << resumed.status().to_string();
  EXPECT_EQ(resumed->resumed_from_step, 2);
  ASSERT_EQ(resumed->steps.size(), 2U) << "--steps counts from the run's step 0";
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(resumed->steps[i].step, straight->steps[i + 2].step);
    EXPECT_TRUE(same_bits(resumed->steps[i].loss, straight->steps[i + 2].loss))
        << "step " << i + 3 << ": " << resumed->steps[i].loss << " vs "
        << straight->steps[i + 2].loss;
    EXPECT_EQ(resumed->steps[i].learning_rate, straight->steps[i + 2].learning_rate);
    EXPECT_EQ(resumed->steps[i].loss_scale, straight->steps[i + 2].loss_scale);
  }
  EXPECT_TRUE(same_bits(resumed->final_parameters, straight->final_parameters));
  EXPECT_EQ(resumed->skipped_steps, straight->skipped_steps);
  std::filesystem::remove_all(first.checkpoint_dir);
}

INSTANTIATE_TEST_SUITE_P(EveryPrecisionAndOptimizer, TrainResume,
                         testing::Values(ResumeCase{Precision::kF32, OptimizerKind::kAdamW},
                                         ResumeCase{Precision::kF32, OptimizerKind::kAdafactor},
                                         ResumeCase{Precision::kF32, OptimizerKind::kSm3},
                                         ResumeCase{Precision::kBF16, OptimizerKind::kAdamW},
                                         ResumeCase{Precision::kBF16, OptimizerKind::kAdafactor},
                                         ResumeCase{Precision::kBF16, OptimizerKind::kSm3},
                                         ResumeCase{Precision::kF16, OptimizerKind::kAdamW},
                                         ResumeCase{Precision::kF16, OptimizerKind::kAdafactor},
                                         ResumeCase{Precision::kF16, OptimizerKind::kSm3}),
                         [](const testing::TestParamInfo<ResumeCase>& info) {
                           return std::string(precision_name(info.param.precision)) + "_" +
                                  std::string(optimizer_name(info.param.optimizer));
                         });

// Bad options fail before any step runs, each naming what is wrong.
TEST(TrainModelStateBadInput, EachIsRefusedUpFrontByName) {
  const auto refused = test_support::expect_refused;
  const TrainOptions base = tiny_options(Precision::kBF16, OptimizerKind::kAdamW);
  TrainOptions o = base;
  o.grad_accum = 0;
  refused(o, "--grad-accum 0");
  o = base;
  o.clip_grad_norm = -1;
  refused(o, "--clip-grad-norm");
  o = base;
  o.grad_dtype = DType::kF16;
  refused(o, "--grad-dtype f16");
  o = base;
  o.checkpoint_every = 1;
  o.checkpoint_dir = "/proc/ebb-cannot-write-here";
  refused(o, "/proc/ebb-cannot-write-here");
  o = base;
  o.resume = true;
  o.checkpoint_dir = temp_dir("empty");
  refused(o, "no checkpoint to resume from");

  // A checkpoint of another model shape.
  TrainOptions other = base;
  other.model.d_model = 64;
  other.checkpoint_dir = temp_dir("other_shape");
  other.checkpoint_every = 1;
  other.steps = 1;
  ASSERT_TRUE(train(other).ok());
  o = base;
  o.resume = true;
  o.checkpoint_dir = other.checkpoint_dir;
  refused(o, "fingerprint");
  // And one not before --steps.
  o = other;
  o.checkpoint_every = 0;
  o.resume = true;
  refused(o, "not before --steps");
  std::filesystem::remove_all(other.checkpoint_dir);
}

}  // namespace
}  // namespace ebb::train
