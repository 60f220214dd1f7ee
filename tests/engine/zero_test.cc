// ZeRO stages 0 to 3 (engine/zero/zero.h) over the communicator of the process: one rank under
// plain ctest (the single backend), 2 and 4 cpu ranks under mpirun (the mpi backend). Every rank
// runs every test in the same order, so their collectives match.
//  - Every step reads every parameter in a forward op first (stage 3 gathers them: at use in the
//    warm-up, then as each gather schedule says); what the ops read is the same in every stage.
//  - Stages 0 to 3 give the same bits, for every optimizer and precision and with the state
//    on the host, and those bits are a single process's: an Optimizer stepped with the ranks'
//    gradients averaged on the host (summed in rank order in fp32, then divided by N), the
//    independent oracle of the reduction.
//  - Device bytes per rank by kind against the formulas (16 Psi; 4 Psi + 12 Psi / N; 2 Psi +
//    14 Psi / N in mixed precision, and the fp32 column), Psi the padded layout's elements.
//  - Payload bytes per rank and step against the textbook counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "tests/engine/model_state_support.h"
#include "tests/engine/test_ops.h"

namespace ebb {
namespace {

using test_ops::make_cpu_device;

std::unique_ptr<Device>& comm_device() {
  static std::unique_ptr<Device> device = make_cpu_device();
  return device;
}
Communicator& comm() {
  static std::unique_ptr<Communicator> c = make_communicator(*comm_device()).value();
  return *c;
}
// Stage 3's second communicator (ZeroOptions::gather_comm).
Communicator& gather_comm() {
  static std::unique_ptr<Communicator> c = make_communicator(*comm_device()).value();
  return *c;
}

// Matrices and vectors in two groups and four slices; sizes such that no range of 2 or 4 ranks
// is empty and the slices are unequal.
std::vector<ParameterDecl> model() {
  // In backward (last first) each slice's gradients are final before the next slice's start.
  return {
      {"emb", {96, 32}, ParameterGroup::kNoDecay, 0},
      {"w1", {32, 80}, ParameterGroup::kDecay, 1},
      {"w2", {80, 32}, ParameterGroup::kDecay, 1},
      {"w3", {32, 48}, ParameterGroup::kDecay, 2},
      {"b3", {48}, ParameterGroup::kNoDecay, 2},
      {"gain", {32}, ParameterGroup::kNoDecay, 3},
      {"b1", {80}, ParameterGroup::kNoDecay, 4},
      // Fewer elements than ranks: its slice's padding gives every rank a range all the same.
      {"scalar", {1}, ParameterGroup::kNoDecay, 4},
  };
}

using test_support::initial_values;

// Rank r's gradient of parameter p at step `step`.
std::vector<float> gradient(std::size_t numel, std::size_t p, int step, int rank) {
  std::vector<float> g(numel);
  for (std::size_t i = 0; i < numel; ++i) {
    g[i] = (1.0F + 0.25F * static_cast<float>(rank)) *
               std::sin(static_cast<float>(i) * 0.37F + static_cast<float>(p + 3 * step)) +
           0.01F * static_cast<float>(rank);
  }
  return g;
}

struct ZeroSetup {
  // -1: no ZeRO, fed the ranks' gradients averaged on the host; -2: no ZeRO, accumulating every
  // rank's gradient in rank order as micro-batches, then scaled by 1/N in the step.
  int stage = 0;
  OptimizerKind kind = OptimizerKind::kAdamW;
  Precision precision = Precision::kF32;
  DType grad_dtype = DType::kF32;
  StatePlacement placement = StatePlacement::kDevice;
  bool clip = true;
  GatherPolicy gathers = GatherPolicy::kPlan;  // stage 3
  std::size_t budget_bytes = 0;                // 0: the device's
};

OptimizerConfig config_of(OptimizerKind kind) {
  OptimizerConfig config{.kind = kind, .weight_decay = 0.05F};
  if (kind == OptimizerKind::kSm3) config.momentum = 0.9F;
  if (kind == OptimizerKind::kAdafactor) config.adafactor_beta1 = 0.9F;
  return config;
}

struct Rig {
  std::unique_ptr<Device> device;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<ModelState> state;
  std::unique_ptr<Optimizer> reference;  // stage -1
  std::unique_ptr<ZeroOptimizer> zero;
  std::vector<std::byte> seen;  // the bytes the forward ops read, every step
};

Rig make_rig(const ZeroSetup& s, std::size_t bucket_bytes = 1) {
  Rig r;
  r.device = make_cpu_device();
  EngineOptions options{.device = *r.device};
  options.host_tier_bytes = 64 * kMiB;
  if (s.budget_bytes > 0) {
    options.budget_bytes = s.budget_bytes;
    options.policy = EvictionPolicy::kBoth;
  }
  r.engine = Engine::create(std::move(options)).value();
  const std::vector<ParameterDecl> params = model();
  const int n = comm().size();
  ModelStateOptions state{.precision = s.precision, .grad_dtype = s.grad_dtype};
  std::size_t slices = 0;
  const FlatLayout layout = make_flat_layout(params, {}).value();
  for (const FlatGroup& g : layout.groups) slices += g.slices.size();
  if (s.stage < 0) {
    state.layout.ranks = n;
    if (s.placement != StatePlacement::kDevice) state.placement.assign(slices, s.placement);
    r.state = ModelState::create(*r.engine, params, state, initial_values(params)).value();
    r.reference = Optimizer::create(*r.engine, *r.state, config_of(s.kind)).value();
    return r;
  }
  ZeroOptions zero{.stage = s.stage, .bucket_bytes = bucket_bytes};
  if (s.stage == 3) {
    zero.gather_comm = &gather_comm();
    zero.gather_policy = s.gathers;
  }
  if (s.stage == 0 && s.placement != StatePlacement::kDevice) {
    state.placement.assign(slices, s.placement);
  } else if (s.placement != StatePlacement::kDevice) {
    zero.placement.assign(slices, s.placement);
  }
  state = zero_model_state_options(state, n, s.stage).value();
  r.state = ModelState::create(*r.engine, params, state, initial_values(params)).value();
  r.zero = ZeroOptimizer::create(*r.engine, *r.state, config_of(s.kind), comm(), zero).value();
  return r;
}

// One step: this rank's gradients (the reference: every rank's, averaged in rank order), the
// gradient statistics when clipping, and the update.
void step(Rig& r, const ZeroSetup& s, int step_number) {
  const int n = comm().size();
  const std::vector<ParameterDecl>& params = r.state->params();
  r.state->begin_step();
  IterationScope it(*r.engine);
  // Forward: each parameter read by an op of its own, its copy read back.
  for (std::size_t p = 0; p < params.size(); ++p) {
    const Tensor& view = r.state->param(p);
    const std::size_t bytes = view.bytes();
    std::vector<Tensor> out =
        r.engine
            ->run("forward." + params[p].name, {view},
                  {{"copy", {static_cast<std::int64_t>(bytes)}, DType::kU8}},
                  [bytes](const OpArgs& a) { std::memcpy(a.outputs[0], a.inputs[0], bytes); })
            .value();
    const std::size_t at = r.seen.size();
    r.seen.resize(at + bytes);
    ASSERT_TRUE(r.engine->read(out[0], r.seen.data() + at, bytes).ok());
    ASSERT_TRUE(r.engine->release(out[0]).ok());
  }
  for (std::size_t p = params.size(); p-- > 0;) {  // backward order
    const auto numel = static_cast<std::size_t>(shape_numel(params[p].shape));
    std::vector<float> g;
    if (s.stage == -2) {
      for (int rank = 0; rank < n; ++rank) {
        g = gradient(numel, p, step_number, rank);
        Tensor gt = r.engine->input({"g", params[p].shape, DType::kF32}, g.data()).value();
        ASSERT_TRUE(r.state->accumulate(p, gt).ok());
        ASSERT_TRUE(r.engine->release(gt).ok());
      }
      continue;
    }
    if (s.stage < 0) {
      g = gradient(numel, p, step_number, 0);
      for (int rank = 1; rank < n; ++rank) {
        const std::vector<float> more = gradient(numel, p, step_number, rank);
        for (std::size_t i = 0; i < numel; ++i) g[i] += more[i];
      }
      for (float& x : g) x /= static_cast<float>(n);
    } else {
      g = gradient(numel, p, step_number, comm().rank());
    }
    Tensor gt = r.engine->input({"g", params[p].shape, DType::kF32}, g.data()).value();
    ASSERT_TRUE(r.state->accumulate(p, gt).ok());
    ASSERT_TRUE(r.engine->release(gt).ok());
  }
  float scale = s.stage == -2 ? 0.5F / static_cast<float>(n) : 0.5F;
  if (s.clip) {
    const GradientStats stats = s.stage < 0 ? gradient_stats(*r.engine, *r.state, 1.0F).value()
                                            : r.zero->gradient_stats(1.0F).value();
    scale *= std::min(1.0F, 1.0F / (stats.norm() + 1e-6F));
  }
  const Status stepped = s.stage < 0 ? r.reference->step(step_number, 0.01F, scale)
                                     : r.zero->step(step_number, 0.01F, scale);
  ASSERT_TRUE(stepped.ok()) << stepped.to_string();
  ASSERT_TRUE(it.end().ok());
}

std::vector<float> train(Rig& r, const ZeroSetup& s, int steps) {
  for (int k = 1; k <= steps; ++k) step(r, s, k);
  return r.state->masters_to_host().value();  // collective with ZeRO
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Case {
  OptimizerKind kind;
  Precision precision;
};

class ZeroStagesTest : public ::testing::TestWithParam<Case> {};

// With fp32 gradient buffers the host average is the reduction's exactly, so every stage must
// give the reference's bits (the 16-bit parameters of bf16 included: rounded from the masters).
TEST_P(ZeroStagesTest, EveryStageGivesTheBitsOfOneProcessOnTheAveragedGradients) {
  const Case c = GetParam();
  // No clipping: the reference's norm adds the squares in another order than the ranks' ranges.
  ZeroSetup s{.kind = c.kind, .precision = c.precision, .grad_dtype = DType::kF32, .clip = false};
  s.stage = -1;
  Rig ref = make_rig(s);
  const std::vector<float> want = train(ref, s, 3);
  for (int stage = 0; stage <= 3; ++stage) {
    s.stage = stage;
    Rig z = make_rig(s);
    const std::vector<float> got = train(z, s, 3);
    EXPECT_TRUE(same_bits(got, want)) << "stage " << stage << " on " << comm().size() << " ranks";
    EXPECT_EQ(z.seen, ref.seen) << "the parameters forward read, stage " << stage;
  }
}

// 16-bit gradient buffers: the stages agree with each other bit for bit, the state on the
// device or on the host.
TEST_P(ZeroStagesTest, StagesAgreeWith16BitGradientsOnTheDeviceAndOnTheHost) {
  const Case c = GetParam();
  if (c.precision == Precision::kF32) GTEST_SKIP() << "no 16-bit gradients in fp32";
  ZeroSetup s{.kind = c.kind, .precision = c.precision, .grad_dtype = precision_dtype(c.precision)};
  std::vector<float> first;
  for (StatePlacement placement : {StatePlacement::kDevice, StatePlacement::kHost}) {
    s.placement = placement;
    for (int stage = 0; stage <= 3; ++stage) {
      s.stage = stage;
      Rig z = make_rig(s);
      const std::vector<float> got = train(z, s, 3);
      if (first.empty()) {
        first = got;
      } else {
        EXPECT_TRUE(same_bits(got, first))
            << "stage " << stage << ", state on the " << placement_name(placement);
      }
    }
  }
}

// The all-to-all and its fold add the ranks' gradients in rank order, as one process adds its
// micro-batches, and divide by N (a power of two here: exact), as the one process's step scales
// by 1/N: N ranks give the bits of one process accumulating N micro-batches.
TEST_P(ZeroStagesTest, RanksGiveTheBitsOfOneProcessAccumulatingAsManyMicroBatches) {
  const Case c = GetParam();
  ZeroSetup s{.stage = -2,
              .kind = c.kind,
              .precision = c.precision,
              .grad_dtype = DType::kF32,
              .clip = false};
  Rig ref = make_rig(s);
  const std::vector<float> want = train(ref, s, 3);
  s.stage = 2;
  Rig z = make_rig(s);
  EXPECT_TRUE(same_bits(train(z, s, 3), want)) << comm().size() << " ranks";
}

INSTANTIATE_TEST_SUITE_P(KindsAndPrecisions, ZeroStagesTest,
                         ::testing::Values(Case{OptimizerKind::kAdamW, Precision::kF32},
                                           Case{OptimizerKind::kAdamW, Precision::kBF16},
                                           Case{OptimizerKind::kAdafactor, Precision::kF32},
                                           Case{OptimizerKind::kAdafactor, Precision::kBF16},
                                           Case{OptimizerKind::kSm3, Precision::kBF16}),
                         [](const auto& info) {
                           return std::string(optimizer_name(info.param.kind)) + "_" +
                                  std::string(precision_name(info.param.precision));
                         });

// Stage 3 under every gather schedule, unconstrained and under a budget with dynamic eviction:
// the bits of stage 2 (masters and what forward read), gathers scheduled ahead of use once the
// warm-up's profile exists, and with the just-in-time schedule at most one slice's parameters
// gathered at a time.
TEST(Zero, Stage3GivesStage2sBitsUnderEveryScheduleAndBudget) {
  ZeroSetup s{.stage = 2,
              .kind = OptimizerKind::kAdamW,
              .precision = Precision::kBF16,
              .grad_dtype = DType::kBF16};
  Rig two = make_rig(s);
  const std::vector<float> want = train(two, s, 5);
  // A budget under what stage 2 reserved at its peak: something must be evicted.
  const std::size_t tight =
      static_cast<std::size_t>(two.engine->allocator().stats().all.reserved_bytes.peak) * 9 / 10;
  s.stage = 3;
  for (GatherPolicy policy : {GatherPolicy::kPlan, GatherPolicy::kJustInTime,
                              GatherPolicy::kDeepSpeed, GatherPolicy::kAtUse}) {
    for (std::size_t budget : {std::size_t{0}, tight}) {
      s.gathers = policy;
      s.budget_bytes = budget;
      Rig z = make_rig(s);
      for (int k = 1; k <= 4; ++k) step(z, s, k);
      if (policy == GatherPolicy::kJustInTime) z.engine->allocator().reset_peak_stats();
      step(z, s, 5);
      const std::string what = std::string(gather_policy_name(policy)) + ", budget " +
                               std::to_string(budget) + ", " + std::to_string(comm().size()) +
                               " ranks";
      EXPECT_TRUE(same_bits(z.state->masters_to_host().value(), want)) << what;
      EXPECT_EQ(z.seen, two.seen) << what;
      if (policy != GatherPolicy::kAtUse) {
        EXPECT_GT(z.zero->stats().scheduled_gathers, 0) << what;
        EXPECT_TRUE(z.zero->predicted_gathers().has_value()) << what;
      }
      if (policy == GatherPolicy::kJustInTime && budget == 0) {
        std::int64_t largest = 0;
        std::int64_t shard = 0;
        for (const ModelState::Slice& sl : z.state->slices()) {
          largest = std::max<std::int64_t>(largest, static_cast<std::int64_t>(sl.params.bytes()));
        }
        for (const ModelState::Slice& sl : z.zero->shard().slices()) {
          shard += static_cast<std::int64_t>(sl.params.bytes());
        }
        EXPECT_LE(z.engine->memory_by_kind(TensorKind::kParameter).peak, shard + largest + 4 * 512)
            << what;
      }
    }
  }
}

// Device bytes per rank by kind, after a first step (the second's gradient buffers are reduced
// and discarded as each slice is final): the ZeRO paper's table with Psi the padded elements.
TEST(Zero, DeviceBytesPerRankFollowTheFormulas) {
  const int n = comm().size();
  for (Precision precision : {Precision::kBF16, Precision::kF32}) {
    for (int stage = 0; stage <= 2; ++stage) {
      ZeroSetup s{.stage = stage,
                  .kind = OptimizerKind::kAdamW,
                  .precision = precision,
                  .grad_dtype = precision_dtype(precision),
                  .clip = false};
      Rig z = make_rig(s);
      step(z, s, 1);
      z.engine->allocator().reset_peak_stats();
      step(z, s, 2);
      const double psi = static_cast<double>(z.state->layout().padded_numel());
      const double p = precision == Precision::kF32 ? 4 : 2;  // parameter and gradient bytes
      const double master = precision == Precision::kF32 ? 0 : 4;
      double params = p * psi;
      double grads = stage == 2 ? p * psi / n : p * psi;
      const double state = (master + 8) * psi / (stage >= 1 ? n : 1);
      if (stage == 2) {
        // Plus the full buffer of the one slice being accumulated (each slice is final, reduced
        // and discarded before the next one starts: bucket of one slice).
        std::int64_t largest = 0;
        for (const ModelState::Slice& sl : z.state->slices()) largest = std::max(largest, sl.numel);
        grads += p * static_cast<double>(largest);
      }
      const auto peak = [&](TensorKind kind) {
        return static_cast<double>(z.engine->memory_by_kind(kind).peak);
      };
      const std::string what = std::string(precision_name(precision)) + " stage " +
                               std::to_string(stage) + ", " + std::to_string(n) + " ranks";
      EXPECT_NEAR(peak(TensorKind::kParameter), params, 0.01 * params) << what;
      EXPECT_NEAR(peak(TensorKind::kGradient), grads, 0.01 * grads) << what;
      EXPECT_NEAR(peak(TensorKind::kOptimizerState), state, 0.01 * state) << what;
      if (stage == 2) {
        // Between steps only the rank's reduced range is left.
        EXPECT_NEAR(static_cast<double>(z.engine->memory_by_kind(TensorKind::kGradient).current),
                    p * psi / n, 0.01 * p * psi / n)
            << what;
      }
    }
  }
}

// Payload per rank and step: the reduction sends (N-1)/N of the gradients, the gather (N-1)/N of
// the parameters (stage 0: of the gradients), and the statistics 8 bytes to each peer.
TEST(Zero, BytesSentPerStepFollowTheTextbookCounts) {
  const int n = comm().size();
  for (int stage = 0; stage <= 2; ++stage) {
    ZeroSetup s{.stage = stage,
                .kind = OptimizerKind::kAdamW,
                .precision = Precision::kBF16,
                .grad_dtype = DType::kBF16,
                .clip = false};
    Rig z = make_rig(s, /*bucket_bytes=*/std::size_t{1} << 30);
    step(z, s, 1);
    const CommStats before = comm().stats();
    const ZeroStats zb = z.zero->stats();
    step(z, s, 2);
    const CommStats after = comm().stats();
    const auto psi = static_cast<std::int64_t>(z.state->layout().padded_numel());
    const std::int64_t share = (n - 1) * psi / n * 2;  // bf16
    const auto sent = [&](CommOp op) {
      const auto i = static_cast<std::size_t>(op);
      return after.bytes_sent[i] - before.bytes_sent[i];
    };
    EXPECT_EQ(sent(CommOp::kAllToAll), share) << "stage " << stage;
    EXPECT_EQ(sent(CommOp::kAllGather), share) << "stage " << stage;
    EXPECT_EQ(z.zero->stats().reduce_bytes - zb.reduce_bytes, share);
    EXPECT_EQ(z.zero->stats().gather_bytes - zb.gather_bytes, share);
    // One bucket (the whole model) per step.
    EXPECT_EQ(z.zero->stats().buckets_reduced - zb.buckets_reduced, 1);
  }
}

// Buckets start during backward from the second step on, as soon as their slices are final.
TEST(Zero, BucketsStartDuringBackwardFromTheSecondStep) {
  ZeroSetup s{.stage = 2,
              .kind = OptimizerKind::kAdamW,
              .precision = Precision::kBF16,
              .grad_dtype = DType::kBF16};
  Rig z = make_rig(s);
  step(z, s, 1);
  EXPECT_EQ(z.zero->stats().early_buckets, 0);
  const std::int64_t slices = static_cast<std::int64_t>(z.state->slices().size());
  EXPECT_EQ(z.zero->stats().buckets_reduced, slices);
  step(z, s, 2);
  EXPECT_EQ(z.zero->stats().early_buckets, slices);
}

TEST(Zero, MoreRanksThanParameterElementsAreRefused) {
  if (comm().size() == 1) GTEST_SKIP() << "one rank always has an element";
  auto device = make_cpu_device();
  auto engine = Engine::create(EngineOptions{.device = *device}).value();
  const std::vector<ParameterDecl> one{{"scalar", {1}, ParameterGroup::kNoDecay, 0}};
  const ModelStateOptions options = zero_model_state_options({}, comm().size(), 1).value();
  const std::vector<std::vector<float>> init{{0.5F}};
  auto state = ModelState::create(*engine, one, options, init).value();
  const Result<std::unique_ptr<ZeroOptimizer>> z =
      ZeroOptimizer::create(*engine, *state, {}, comm(), {.stage = 1});
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.status().message().find("fewer than the ranks"), std::string::npos)
      << z.status().message();
}

TEST(Zero, BadConfigurationsAreRefusedBeforeAnyStep) {
  auto device = make_cpu_device();
  auto engine = Engine::create(EngineOptions{.device = *device}).value();
  const std::vector<ParameterDecl> params = model();
  EXPECT_EQ(zero_model_state_options({}, comm().size(), 4).status().code(),
            StatusCode::kInvalidArgument);
  {
    // Stage 3 without its second communicator.
    auto e = Engine::create(EngineOptions{.device = *device}).value();
    auto s3 = ModelState::create(*e, params, zero_model_state_options({}, comm().size(), 3).value(),
                                 initial_values(params))
                  .value();
    const Result<std::unique_ptr<ZeroOptimizer>> no_gather =
        ZeroOptimizer::create(*e, *s3, {}, comm(), {.stage = 3});
    ASSERT_FALSE(no_gather.ok());
    EXPECT_NE(no_gather.status().message().find("gather communicator"), std::string::npos)
        << no_gather.status().message();
  }
  // A full state laid out for another rank count.
  ModelStateOptions other;
  other.layout.ranks = comm().size() + 1;
  other.external_master = true;
  auto state = ModelState::create(*engine, params, other, initial_values(params)).value();
  const Result<std::unique_ptr<ZeroOptimizer>> z =
      ZeroOptimizer::create(*engine, *state, {}, comm(), {.stage = 1});
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.status().message().find("laid out for"), std::string::npos) << z.status().message();
}

}  // namespace
}  // namespace ebb
