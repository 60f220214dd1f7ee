// Model state (engine/optim/): the flat layout, the buffers and views a ModelState makes in an
// engine, gradient accumulation in place, the optimizers stepped through the engine, gradient
// statistics, loss scaling and the learning-rate schedule.
#include "engine/optim/model_state.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/ebb.h"
#include "engine/optim/loss_scaler.h"
#include "engine/optim/optimizer.h"
#include "kernels/nn_scalar.h"
#include "tests/engine/model_state_support.h"
#include "tests/engine/test_ops.h"

namespace ebb {
namespace {

using test_ops::make_cpu_device;

using test_support::initial_values;
using test_support::small_model;

TEST(FlatLayout, AlignsEachParameterAndPadsEachSliceForTheRanks) {
  const std::vector<ParameterDecl> params = small_model();
  // One rank: parameters aligned, slices end where their last parameter does (aligned).
  FlatLayout one = make_flat_layout(params, {.alignment_bytes = 512}).value();
  EXPECT_EQ(one.groups[0].slices[0].end, 512);
  EXPECT_EQ(one.entries[2].offset, 512);
  EXPECT_EQ(one.groups[0].numel, 768);
  FlatLayout layout = make_flat_layout(params, {.alignment_bytes = 512, .ranks = 3}).value();
  EXPECT_EQ(layout.alignment_elements, 256);
  ASSERT_EQ(layout.groups.size(), 2U);
  // decay: w1 at 0 (300 -> 512), its slice padded to 3 x 256 = 768; w2 at 768 (12 -> 256),
  // the group padded to a multiple of 768: 1536.
  const FlatGroup& decay = layout.groups[0];
  EXPECT_EQ(decay.group, ParameterGroup::kDecay);
  EXPECT_EQ(layout.entries[0].offset, 0);
  EXPECT_EQ(layout.entries[2].offset, 768);
  EXPECT_EQ(decay.numel, 1536);
  EXPECT_EQ(decay.parameter_numel, 312);
  // Slices by key: w1's and w2's.
  ASSERT_EQ(decay.slices.size(), 2U);
  EXPECT_EQ(decay.slices[0].begin, 0);
  EXPECT_EQ(decay.slices[0].end, 768);
  EXPECT_EQ(decay.slices[1].begin, 768);
  EXPECT_EQ(decay.slices[1].end, 1536);
  // no decay: b1 0, b2 768, gain 1536 -> 1792, padded to a multiple of 768: 2304.
  const FlatGroup& no_decay = layout.groups[1];
  EXPECT_EQ(layout.entries[1].offset, 0);
  EXPECT_EQ(layout.entries[3].offset, 768);
  EXPECT_EQ(layout.entries[4].offset, 1536);
  EXPECT_EQ(no_decay.numel, 2304);
  ASSERT_EQ(no_decay.slices.size(), 3U);
  EXPECT_EQ(no_decay.slices.back().end, 2304) << "the last slice holds the padding";
  // Every slice splits into equal, aligned shards: ZeRO's unit of ownership.
  for (int ranks : {2, 3, 4}) {
    FlatLayout l = make_flat_layout(params, {.alignment_bytes = 512, .ranks = ranks}).value();
    for (const FlatGroup& g : l.groups) {
      for (const FlatSlice& sl : g.slices) {
        EXPECT_EQ(sl.numel() % (ranks * l.alignment_elements), 0) << ranks << " ranks";
      }
    }
    EXPECT_EQ(l.parameter_numel(), 300 + 3 + 12 + 4 + 5);
  }
}

TEST(FlatLayout, RefusesBadDeclarationsByName) {
  std::vector<ParameterDecl> params = small_model();
  params[3].name = "w1";
  Result<FlatLayout> dup = make_flat_layout(params, {});
  EXPECT_EQ(dup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.status().message().find("'w1'"), std::string::npos);
  params = small_model();
  params[2].shape = {4, 0};
  EXPECT_NE(make_flat_layout(params, {}).status().message().find("'w2'"), std::string::npos);
  EXPECT_FALSE(make_flat_layout(small_model(), {.alignment_bytes = 256}).ok());
  EXPECT_FALSE(make_flat_layout(small_model(), {.alignment_bytes = 768}).ok());
  EXPECT_FALSE(make_flat_layout(small_model(), {.ranks = 0}).ok());
}

class ModelStateTest : public ::testing::TestWithParam<Precision> {};

TEST_P(ModelStateTest, BuffersViewsAndMemoryByKind) {
  const Precision precision = GetParam();
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  const std::vector<ParameterDecl> params = small_model();
  const std::vector<std::vector<float>> init = initial_values(params);
  const DType work = precision_dtype(precision);
  auto state =
      ModelState::create(*engine, params, {.precision = precision, .grad_dtype = work}, init)
          .value();
  const std::int64_t padded = state->layout().padded_numel();  // 768 + 768
  EXPECT_EQ(padded, 1536);
  const auto bytes = [&](TensorKind k) { return engine->memory_by_kind(k).current; };
  const std::int64_t w = static_cast<std::int64_t>(dtype_bytes(work));
  EXPECT_EQ(bytes(TensorKind::kParameter), padded * w);
  EXPECT_EQ(bytes(TensorKind::kGradient), padded * w);
  EXPECT_EQ(bytes(TensorKind::kOptimizerState), has_master_weights(precision) ? padded * 4 : 0)
      << "the master weights";
  // The working copies hold the initial values rounded to the precision.
  for (std::size_t p = 0; p < params.size(); ++p) {
    const Tensor& view = state->param(p);
    EXPECT_EQ(view.dtype(), work);
    EXPECT_EQ(view.shape(), params[p].shape);
    std::vector<std::uint8_t> got(view.bytes());
    ASSERT_TRUE(engine->read(view, got.data(), got.size()).ok());
    for (std::size_t i = 0; i < init[p].size(); ++i) {
      float value = 0;
      if (work == DType::kF32) {
        std::memcpy(&value, got.data() + 4 * i, 4);
      } else {
        std::uint16_t h = 0;
        std::memcpy(&h, got.data() + 2 * i, 2);
        value = work == DType::kBF16 ? nn::bf16_to_f32(h) : nn::f16_to_f32(h);
      }
      const float expected =
          work == DType::kF32 ? init[p][i]
                              : (work == DType::kBF16 ? nn::bf16_to_f32(nn::f32_to_bf16(init[p][i]))
                                                      : nn::f16_to_f32(nn::f32_to_f16(init[p][i])));
      ASSERT_EQ(value, expected) << params[p].name << "[" << i << "]";
    }
    EXPECT_EQ(state->master_to_host(p).value(), init[p]) << "masters keep the fp32 values";
  }
}

TEST_P(ModelStateTest, AccumulatesGradientsInPlaceAndAssignsAfterBeginStep) {
  const Precision precision = GetParam();
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  const std::vector<ParameterDecl> params = small_model();
  const DType work = precision_dtype(precision);
  auto state = ModelState::create(*engine, params, {.precision = precision, .grad_dtype = work},
                                  initial_values(params))
                   .value();
  const std::size_t w2 = 2;  // 12 elements
  const auto grad_as_float = [&]() {
    std::vector<std::uint8_t> raw(state->grad(w2).bytes());
    EXPECT_TRUE(engine->read(state->grad(w2), raw.data(), raw.size()).ok());
    std::vector<float> v(12);
    for (std::size_t i = 0; i < 12; ++i) {
      if (work == DType::kF32) {
        std::memcpy(&v[i], raw.data() + 4 * i, 4);
      } else {
        std::uint16_t h = 0;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        v[i] = work == DType::kBF16 ? nn::bf16_to_f32(h) : nn::f16_to_f32(h);
      }
    }
    return v;
  };
  for (int step = 0; step < 2; ++step) {
    state->begin_step();
    IterationScope it(*engine);
    for (int micro = 0; micro < 3; ++micro) {
      std::vector<float> d(12, 0.5F * static_cast<float>(micro + 1));
      Tensor dt = engine->input({"d", {4, 3}, DType::kF32}, d.data()).value();
      ASSERT_TRUE(state->accumulate(w2, dt).ok());
      EXPECT_TRUE(state->has_grad(w2));
    }
  }
  // Each step assigns first: 0.5 + 1.0 + 1.5 = 3.0 (exact in every precision), not 6.0.
  EXPECT_EQ(grad_as_float(), std::vector<float>(12, 3.0F));
  EXPECT_FALSE(state->has_grad(0));
  IterationScope it(*engine);
  Tensor wrong = engine->input({"d", {4, 4}, DType::kF32}, nullptr).value();
  EXPECT_EQ(state->accumulate(w2, wrong).code(), StatusCode::kInvalidArgument);
}

// Declared accumulation counts make the first step's gradients final as early as a later
// step's: the listener runs at the accumulate() that completes the slice's declared count, an
// accumulate() past it is refused by name, and bad declarations are refused. Undeclared, the
// count is learned from the first step, whose listener never runs.
TEST(ModelState, DeclaredAccumulationsCallTheListenerFromTheFirstStep) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  const std::vector<ParameterDecl> params = small_model();
  const std::size_t w2 = 2;  // alone with b2 in the decay group's slice 1
  for (const bool declared : {true, false}) {
    SCOPED_TRACE(declared ? "declared" : "learned");
    ModelStateOptions options;
    if (declared) options.accumulations = {1, 1, 3, 1, 1};
    auto state = ModelState::create(*engine, params, options, initial_values(params)).value();
    std::vector<std::pair<int, int>> calls;  // (step, accumulations so far) per call for w2's
    int step = 0;
    state->set_gradient_listener([&](std::size_t slice) {
      if (slice == 1) calls.emplace_back(step, state->accumulations(slice));
      return ok_status();
    });
    for (step = 0; step < 2; ++step) {
      state->begin_step();
      IterationScope it(*engine);
      for (int micro = 0; micro < 3; ++micro) {
        std::vector<float> d(12, 1.0F);
        Tensor dt = engine->input({"d", {4, 3}, DType::kF32}, d.data()).value();
        ASSERT_TRUE(state->accumulate(w2, dt).ok());
      }
      if (declared && step == 1) {
        std::vector<float> d(12, 1.0F);
        Tensor dt = engine->input({"d", {4, 3}, DType::kF32}, d.data()).value();
        const Status extra = state->accumulate(w2, dt);
        EXPECT_EQ(extra.code(), StatusCode::kFailedPrecondition);
        EXPECT_NE(extra.message().find("'w2'"), std::string::npos) << extra.message();
      }
    }
    const std::vector<std::pair<int, int>> want =
        declared ? std::vector<std::pair<int, int>>{{0, 3}, {1, 3}}
                 : std::vector<std::pair<int, int>>{{1, 3}};
    EXPECT_EQ(calls, want);
    state->set_gradient_listener(nullptr);
  }
  ModelStateOptions short_list{.accumulations = {1, 1}};
  EXPECT_EQ(ModelState::create(*engine, params, short_list, initial_values(params)).status().code(),
            StatusCode::kInvalidArgument);
  ModelStateOptions zero{.accumulations = {1, 1, 0, 1, 1}};
  const Status z = ModelState::create(*engine, params, zero, initial_values(params)).status();
  EXPECT_NE(z.message().find("'w2'"), std::string::npos) << z.message();
}

INSTANTIATE_TEST_SUITE_P(Precisions, ModelStateTest,
                         ::testing::Values(Precision::kF32, Precision::kBF16, Precision::kF16),
                         [](const auto& info) { return std::string(precision_name(info.param)); });

// AdamW stepped through the engine on fp32 model state gives exactly what nn::adamw gives on
// the same parameter, gradient and moments, parameter by parameter.
TEST(Optimizer, AdamWThroughTheEngineMatchesTheKernel) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  const std::vector<ParameterDecl> params = small_model();
  const std::vector<std::vector<float>> init = initial_values(params);
  auto state = ModelState::create(*engine, params, {}, init).value();
  const OptimizerConfig config{.kind = OptimizerKind::kAdamW, .weight_decay = 0.1F};
  auto opt = Optimizer::create(*engine, *state, config).value();
  EXPECT_DOUBLE_EQ(opt->state_bytes_per_parameter(), 8.0 * 1536 / 324)
      << "m and v over the padded buffers";
  std::vector<std::vector<float>> param = init;
  std::vector<std::vector<float>> m;
  std::vector<std::vector<float>> v;
  for (const auto& p : init) {
    m.emplace_back(p.size(), 0.0F);
    v.emplace_back(p.size(), 0.0F);
  }
  for (int step = 1; step <= 3; ++step) {
    state->begin_step();
    IterationScope it(*engine);
    std::vector<std::vector<float>> grads;
    for (std::size_t p = 0; p < params.size(); ++p) {
      std::vector<float> g(init[p].size());
      for (std::size_t i = 0; i < g.size(); ++i) {
        g[i] = std::sin(static_cast<float>(i + p + step));
      }
      Tensor gt = engine->input({"g", params[p].shape, DType::kF32}, g.data()).value();
      ASSERT_TRUE(state->accumulate(p, gt).ok());
      grads.push_back(std::move(g));
    }
    ASSERT_TRUE(opt->step(step, 0.01F, 1.0F).ok());
    ASSERT_TRUE(it.end().ok());
    for (std::size_t p = 0; p < params.size(); ++p) {
      const float wd = params[p].group == ParameterGroup::kDecay ? 0.1F : 0.0F;
      nn::adamw_range(param[p].data(), m[p].data(), v[p].data(), param[p].data(), grads[p].data(),
                      m[p].data(), v[p].data(), 0, static_cast<std::int64_t>(param[p].size()),
                      {.learning_rate = 0.01F, .weight_decay = wd}, step);
    }
  }
  for (std::size_t p = 0; p < params.size(); ++p) {
    EXPECT_EQ(state->master_to_host(p).value(), param[p]) << params[p].name;
  }
}

TEST(Optimizer, EveryKindStepsEveryPrecisionAndReportsItsState) {
  for (OptimizerKind kind :
       {OptimizerKind::kAdamW, OptimizerKind::kAdafactor, OptimizerKind::kSm3}) {
    for (Precision precision : {Precision::kF32, Precision::kBF16, Precision::kF16}) {
      auto device = make_cpu_device();
      auto engine = Engine::create({.device = *device}).value();
      const std::vector<ParameterDecl> params = small_model();
      const std::vector<std::vector<float>> init = initial_values(params);
      auto state = ModelState::create(
                       *engine, params,
                       {.precision = precision, .grad_dtype = precision_dtype(precision)}, init)
                       .value();
      auto opt = Optimizer::create(*engine, *state, {.kind = kind}).value();
      EXPECT_EQ(opt->config().learning_rate, default_learning_rate(kind));
      state->begin_step();
      {
        IterationScope it(*engine);
        for (std::size_t p = 0; p < params.size(); ++p) {
          std::vector<float> g(init[p].size(), 0.25F);
          Tensor gt = engine->input({"g", params[p].shape, DType::kF32}, g.data()).value();
          ASSERT_TRUE(state->accumulate(p, gt).ok());
        }
        ASSERT_TRUE(opt->step(1, opt->config().learning_rate, 1.0F).ok());
      }
      // Every parameter moved against its gradient.
      for (std::size_t p = 0; p < params.size(); ++p) {
        const std::vector<float> after = state->master_to_host(p).value();
        for (std::size_t i = 0; i < after.size(); ++i) {
          ASSERT_LT(after[i], init[p][i])
              << optimizer_name(kind) << " " << precision_name(precision) << " " << params[p].name
              << "[" << i << "]";
        }
      }
      EXPECT_EQ(engine->memory_by_kind(TensorKind::kOptimizerState).current,
                static_cast<std::int64_t>(opt->state_bytes()) +
                    (has_master_weights(precision) ? 1536 * 4 : 0));
      if (kind == OptimizerKind::kAdamW) {
        EXPECT_EQ(opt->state_bytes(), 2U * 1536 * 4);
      } else {
        // Factored: far less than a float per parameter for the matrices.
        EXPECT_LT(opt->state_bytes(), 1536U * 4);
      }
    }
  }
}

TEST(Optimizer, GradientStatsCountNonFiniteAndSumSquares) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  const std::vector<ParameterDecl> params = small_model();
  auto state = ModelState::create(*engine, params, {}, initial_values(params)).value();
  state->begin_step();
  IterationScope it(*engine);
  double expected = 0;
  for (std::size_t p = 0; p < params.size(); ++p) {
    std::vector<float> g(static_cast<std::size_t>(shape_numel(params[p].shape)), 2.0F);
    expected += 4.0 * static_cast<double>(g.size()) / 4.0;  // (2 * 0.5)^2 per element
    Tensor gt = engine->input({"g", params[p].shape, DType::kF32}, g.data()).value();
    ASSERT_TRUE(state->accumulate(p, gt).ok());
  }
  GradientStats stats = gradient_stats(*engine, *state, 0.5F).value();
  EXPECT_EQ(stats.nonfinite, 0.0F);
  EXPECT_EQ(stats.sum_of_squares, static_cast<float>(expected)) << "exact: small integers";
  std::vector<float> bad(5, std::numeric_limits<float>::infinity());
  bad[2] = std::numeric_limits<float>::quiet_NaN();
  Tensor bt = engine->input({"bad", {5}, DType::kF32}, bad.data()).value();
  ASSERT_TRUE(state->accumulate(4, bt).ok());
  EXPECT_EQ(gradient_stats(*engine, *state, 1.0F).value().nonfinite, 5.0F);
}

TEST(LossScaler, GrowsBacksOffAndStopsBelowTheMinimum) {
  LossScaler s = LossScaler::create({.growth_interval = 3, .min_scale = 16384.0F}).value();
  EXPECT_EQ(s.scale(), 65536.0F);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(s.update(false).ok());
  EXPECT_EQ(s.scale(), 131072.0F) << "grown after 3 clean steps";
  ASSERT_TRUE(s.update(true).ok());
  EXPECT_EQ(s.scale(), 65536.0F);
  EXPECT_EQ(s.growth_tracker(), 0);
  ASSERT_TRUE(s.update(true).ok());
  EXPECT_EQ(s.scale(), 32768.0F);
  ASSERT_TRUE(s.update(true).ok());
  EXPECT_EQ(s.scale(), 16384.0F);
  Status stop = s.update(true);
  EXPECT_EQ(stop.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(stop.message().find("below the minimum"), std::string::npos) << stop.message();
  EXPECT_EQ(s.skipped_steps(), 4);
  EXPECT_FALSE(LossScaler::create({.growth_factor = 1.0F}).ok());
  EXPECT_FALSE(LossScaler::create({.backoff_factor = 1.0F}).ok());
}

TEST(LearningRateSchedule, WarmsUpLinearlyThenDecaysByCosineToTheFloor) {
  // 10 steps, 4 of warm-up, peak 1, floor 0.1.
  EXPECT_FLOAT_EQ(scheduled_learning_rate(1, 10, 1.0F, 4, 0.1F), 0.25F);
  EXPECT_FLOAT_EQ(scheduled_learning_rate(4, 10, 1.0F, 4, 0.1F), 1.0F);
  EXPECT_FLOAT_EQ(scheduled_learning_rate(5, 10, 1.0F, 4, 0.1F), 1.0F) << "decay starts at peak";
  EXPECT_FLOAT_EQ(scheduled_learning_rate(10, 10, 1.0F, 4, 0.1F), 0.1F) << "ends at the floor";
  // Halfway through the decay (steps 5..10, progress 0.5 at step 7.5): between the two.
  const float mid = scheduled_learning_rate(7, 10, 1.0F, 4, 0.1F);
  EXPECT_NEAR(mid, 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.4)), 1e-6);
  EXPECT_FLOAT_EQ(scheduled_learning_rate(3, 10, 2.0F, 0, 2.0F), 2.0F) << "flat floor = peak";
}

}  // namespace
}  // namespace ebb
