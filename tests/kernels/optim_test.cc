// Tests of the optimizer kernels (kernels/optim.h) on the cpu backend, and of their references
// (kernels/optim_reference.h):
// - one step of each optimizer on a 3x4 matrix (and Adafactor's vector rule on 4 elements)
//   against numbers computed independently, in double, from the papers' formulas (a short
//   Python script of those formulas, with the hyperparameters rounded to float as the kernels
//   receive them); the numbers are written out below;
// - AdamW on fp32 parameters without a master against nn::adamw, bit for bit, over several steps;
// - every optimizer and grad_stats on the cpu against the reference bit for bit, for fp32, bf16
//   and fp16 parameters and gradients, shapes that cut the sums into several chunks, rows and
//   column blocks, several steps, and 1, 2 and 4 TBB threads;
// - grad_stats counting a NaN and infinities; combine_stats adding in order; SM3's rule that a
//   zero accumulator gives a zero update; Adafactor's update clipping engaging exactly when
//   RMS(U) > d; the preconditions the dispatchers check; the state sizes the engine plans with.
#include "kernels/optim.h"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/nn.h"
#include "kernels/optim_reference.h"
#include "kernels/optim_scalar.h"
#include "tests/kernels/nn_test_support.h"
#include "tests/kernels/optim_test_support.h"

namespace ebb::optim {
namespace {

using nn::random_vector;
using test_support::Config;
using test_support::cpu_step;
using test_support::data_or_null;
using test_support::expect_same_state;
using test_support::initial_state;
using test_support::kConfigs;
using test_support::kTypes;
using test_support::ModelState;
using test_support::Optimizer;
using test_support::random_gradient;
using test_support::reference_step;
using test_support::test_name;
using test_support::Types;

const LaunchContext kCpu{DeviceKind::kCpu, nullptr};

// --- one step by hand ----------------------------------------------------------------------------

// The 3x4 problem: X and G are dyadic, so exact in float (and in bf16 and fp16).
const std::vector<float> kX = {0.5F,  -1.0F,  0.25F, 2.0F,  -0.75F, 1.5F,
                               -2.0F, 0.125F, 1.0F,  -0.5F, 0.75F,  -1.25F};
const std::vector<float> kG = {0.125F, -0.25F, 0.375F, -0.5F,  0.625F, 0.0F,
                               -0.75F, 0.875F, -1.0F,  1.125F, 1.25F,  -0.0625F};

// The float kernels against the double computation: each compared value is at most ~20 float
// operations from exact inputs, every one rounding by at most 2^-24 (6e-8) relative and none
// cancelling badly (X_t = X_{t-1} - a small step is rounded once, at |X|'s scale), so the float
// result is within ~1.2e-6 relative in the worst case and far closer in practice. 1e-6 relative
// is still 100 times finer than any of the updates (1e-2 of |X| or more), so a wrong formula
// cannot pass; the 1e-9 floor covers the values that are exactly 0.
void expect_all_near(const std::vector<float>& actual, const std::vector<double>& expected,
                     const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (std::size_t i = 0; i < actual.size(); i++) {
    EXPECT_NEAR(actual[i], expected[i], 1e-6 * std::abs(expected[i]) + 1e-9)
        << what << "[" << i << "]";
  }
}

TEST(OptimHandTest, AdamwStepOnA3x4Matrix) {
  std::vector<float> x = kX, m(12), v(12);
  for (int i = 0; i < 12; i++) {
    m[i] = 0.5F * kG[i] + 0.0625F;  // exact: dyadic
    v[i] = 0.25F * kG[i] * kG[i] + 0.015625F;
  }
  const AdamWStep s{.lr = 0.01F,
                    .beta1 = 0.9F,
                    .beta2 = 0.999F,
                    .eps = 1e-8F,
                    .weight_decay = 0.1F,
                    .step = 3,
                    .grad_scale = 0.5F};
  adamw(kCpu, FloatType::kF32, x.data(), nullptr, m.data(), v.data(), FloatType::kF32, kG.data(),
        12, s);
  // g = G/2; m' = .9 m + .1 g; v' = .999 v + .001 g^2; X' = X - lr (m'/(1-.9^3) /
  // (sqrt(v'/(1-.999^3)) + eps) + .1 X).
  expect_all_near(x,
                  {0.497782829, -0.998214172, 0.2475646, 1.99940043, -0.751463371, 1.4975905,
                   -1.99637095, 0.122682817, 1.00073935, -0.501669238, 0.747090817, -1.24914214},
                  "x");
  expect_all_near(m,
                  {0.118749999, -0.0687500015, 0.243749999, -0.193750001, 0.368749999, 0.0562499985,
                   -0.318750001, 0.493749999, -0.443750001, 0.618749999, 0.681249999, 0.0249999985},
                  "m");
  expect_all_near(
      v,
      {0.0195156252, 0.0312343752, 0.0507656252, 0.0781093752, 0.113265625, 0.0156093752,
       0.156234375, 0.207015625, 0.265609375, 0.332015625, 0.406234375, 0.0165859377},
      "v");
}

TEST(OptimHandTest, AdafactorStepOnA3x4Matrix) {
  std::vector<float> x = kX, row{1.0F, 0.5F, 2.0F}, col{0.25F, 0.5F, 0.75F, 1.0F}, m(12);
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 4; j++) m[i * 4 + j] = 0.0625F * static_cast<float>(i - j);
  }
  std::vector<float> workspace(adafactor_workspace_floats(3, 4));
  // Every option on: relative step, first moment, weight decay, and a d that clips.
  const AdafactorStep s{.lr = 0.0F,
                        .relative_step = true,
                        .clip_d = 0.5F,
                        .beta1 = 0.9F,
                        .weight_decay = 0.1F,
                        .step = 3,
                        .grad_scale = 0.5F};
  adafactor(kCpu, FloatType::kF32, x.data(), nullptr, row.data(), col.data(), nullptr, m.data(),
            FloatType::kF32, kG.data(), 3, 4, s, workspace.data());
  // g = G/2; beta2hat = 1 - 3^-0.8 = 0.584756; R = b R + (1-b) rowsum(g^2 + eps1), C likewise;
  // U = g / sqrt(R C^T / sum R); RMS(U) = 0.874055 > d: Uhat = U / 1.748111;
  // alpha = max(1e-3, RMS(X) = 1.137088) * min(1e-2, 1/sqrt(3)) = 0.0113709;
  // m = .9 m + .1 Uhat; X = X - alpha .1 X - alpha m.
  expect_all_near(row, {0.633417723, 0.470803181, 1.56731937}, "row");
  expect_all_near(col, {0.292173182, 0.430252045, 0.673763863, 0.690594826}, "col");
  expect_all_near(x,
                  {0.499276994, -0.997968729, 0.250689805, 2.00004653, -0.750682607, 1.49829437,
                   -1.99637833, 0.125321346, 0.998369244, -0.500799331, 0.748500558, -1.24790709},
                  "x");
  expect_all_near(
      m,
      {0.0135839726, -0.0786380087, -0.085664208, -0.204092336, 0.135031129, 0, -0.118504359,
       -0.0407604282, 0.0434150963, 0.120296346, 0.0568668889, -0.0590584807},
      "m");
}

TEST(OptimHandTest, AdafactorStepOnAVector) {
  std::vector<float> x(kX.begin(), kX.begin() + 4), v{0.5F, 0.0F, 0.25F, 1.0F};
  std::vector<float> workspace(adafactor_workspace_floats(4, 1));
  const AdafactorStep s{.lr = 0.01F, .relative_step = false, .step = 2, .grad_scale = 0.5F};
  adafactor(kCpu, FloatType::kF32, x.data(), nullptr, nullptr, nullptr, v.data(), nullptr,
            FloatType::kF32, kG.data(), 4, 1, s, workspace.data());
  // g = G[0,:]/2; beta2hat = 1 - 2^-0.8; V = b V + (1-b)(g^2 + eps1); U = g / sqrt(V);
  // RMS(U) = 0.736947 <= d = 1: not clipped; X = X - .01 U.
  expect_all_near(v, {0.215068965, 0.00897420582, 0.12660467, 0.461547651}, "v");
  expect_all_near(x, {0.498652306, -0.986804921, 0.244730415, 2.00367986}, "x");
}

TEST(OptimHandTest, Sm3StepOnA3x4Matrix) {
  // Zero accumulators included: row 1 and column 2, so that nu(1,1) = min(0, 1) + 0 = 0.
  std::vector<float> x = kX, row{0.5F, 0.0F, 2.0F}, col{0.25F, 1.0F, 0.0F, 4.0F}, m(12);
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 4; j++) m[i * 4 + j] = 0.03125F * static_cast<float>(j - i);
  }
  std::vector<float> workspace(sm3_workspace_floats(3, 4));
  const Sm3Step s{.lr = 0.1F, .momentum = 0.9F, .weight_decay = 0.1F, .grad_scale = 0.5F};
  sm3(kCpu, FloatType::kF32, x.data(), nullptr, row.data(), col.data(), nullptr, m.data(),
      FloatType::kF32, kG.data(), 3, 4, s, workspace.data());
  // g = G/2; nu = min(row_i, col_j) + g^2; u = g / sqrt(nu) (0 at (1,1), where nu = 0);
  // m = .9 m + .1 u; X = X - .1 (m + .1 X); row = max_j nu, col = max_i nu.
  expect_all_near(row, {0.5625, 0.19140625, 2.00097656}, "row");
  expect_all_near(col, {0.5, 1.31640625, 0.390625, 2.00097656}, "col");
  expect_all_near(x,
                  {0.493759652, -0.991071723, 0.231874997, 1.97489583, -0.749687502, 1.485,
                   -1.9728125, 0.108124997, 1.00269607, -0.497090114, 0.732499997, -1.24009158},
                  "x");
  expect_all_near(
      m,
      {0.0124034764, 0.0107172295, 0.156250022, 0.0510416565, 0.0718750246, 0, -0.0718750246,
       0.156250022, -0.126960693, 0.0209011364, 0.100000024, 0.0259158293},
      "m");
}

// --- rules ---------------------------------------------------------------------------------------

TEST(OptimTest, Sm3ZeroAccumulatorGivesZeroUpdate) {
  // Accumulators at zero (the first step) and a gradient that is zero in a whole row and in one
  // more element: there nu = 0, and the update must be 0, not 0/0.
  std::vector<float> grad = kG;
  for (int j = 0; j < 4; j++) grad[4 + j] = 0.0F;
  grad[2] = 0.0F;
  for (const bool momentum : {false, true}) {
    std::vector<float> x = kX, row(3), col(4), m(12);
    std::vector<float> workspace(sm3_workspace_floats(3, 4));
    const Sm3Step s{.lr = 0.1F, .momentum = momentum ? 0.9F : 0.0F};
    sm3(kCpu, FloatType::kF32, x.data(), nullptr, row.data(), col.data(), nullptr,
        momentum ? m.data() : nullptr, FloatType::kF32, grad.data(), 3, 4, s, workspace.data());
    for (int i = 0; i < 12; i++) {
      if (grad[i] == 0.0F) {
        EXPECT_EQ(x[i], kX[i]) << "element " << i;
        EXPECT_EQ(m[i], 0.0F) << "element " << i;
      } else {
        // nu = g^2, so u = sign(g): one step of lr (times 1 - momentum with momentum).
        const float step = momentum ? 0.1F * 0.1F : 0.1F;
        EXPECT_NEAR(x[i], kX[i] - std::copysign(step, grad[i]), 1e-6) << "element " << i;
      }
    }
    EXPECT_EQ(row[1], 0.0F);
  }
  // A vector: acc = 0 and g = 0 give a zero update too.
  std::vector<float> x{1.0F, 2.0F}, acc(2), g{0.0F, 0.5F};
  sm3(kCpu, FloatType::kF32, x.data(), nullptr, nullptr, nullptr, acc.data(), nullptr,
      FloatType::kF32, g.data(), 2, 1, Sm3Step{.lr = 0.1F}, nullptr);
  EXPECT_EQ(x[0], 1.0F);
  EXPECT_EQ(acc[0], 0.0F);
  EXPECT_NEAR(x[1], 1.9F, 1e-6);
}

TEST(OptimTest, AdafactorClipsExactlyWhenRmsOfUExceedsD) {
  // G = a b^T is rank one, so on the first step (no history) R C^T / sum(R) = G^2 and
  // U = sign(G): RMS(U) = 1. With d = 0.5 the update is halved; with d = 2 it is not.
  const float a[3] = {1.0F, -2.0F, 0.5F};
  const float b[4] = {0.25F, 1.0F, -0.5F, 2.0F};
  std::vector<float> grad(12);
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 4; j++) grad[i * 4 + j] = a[i] * b[j];
  }
  for (const float d : {0.5F, 2.0F}) {
    std::vector<float> x = kX, row(3), col(4), workspace(adafactor_workspace_floats(3, 4));
    const AdafactorStep s{.lr = 0.01F, .relative_step = false, .clip_d = d, .step = 1};
    adafactor(kCpu, FloatType::kF32, x.data(), nullptr, row.data(), col.data(), nullptr, nullptr,
              FloatType::kF32, grad.data(), 3, 4, s, workspace.data());
    const float step = d < 1.0F ? 0.005F : 0.01F;
    for (int i = 0; i < 12; i++) {
      EXPECT_NEAR(x[i], kX[i] - std::copysign(step, grad[i]), 1e-6) << "d " << d << ", " << i;
    }
  }
}

TEST(OptimTest, GradStatsCountsNanAndInfinities) {
  const std::int64_t n = 3 * kChunk + 17;
  std::vector<float> values = random_vector(n, 1, -4, 4);
  values[5] = std::numeric_limits<float>::quiet_NaN();
  values[kChunk + 1] = std::numeric_limits<float>::infinity();
  values[3 * kChunk + 2] = -std::numeric_limits<float>::infinity();
  std::vector<float> workspace(grad_stats_workspace_floats(n));
  for (const FloatType t : {FloatType::kF32, FloatType::kBF16, FloatType::kF16}) {
    std::vector<std::uint8_t> grad(n * nn::float_bytes(t));
    for (std::int64_t i = 0; i < n; i++) store(t, grad.data(), i, values[i]);
    std::vector<float> out(2), expected(2);
    grad_stats(kCpu, t, grad.data(), n, 0.5F, out.data(), workspace.data());
    reference::grad_stats(t, grad.data(), n, 0.5F, expected.data());
    EXPECT_EQ(out[1], 3.0F) << nn::float_type_name(t);
    EXPECT_TRUE(std::isnan(out[0])) << nn::float_type_name(t);
    nn::expect_same_bits(out, expected, std::string(nn::float_type_name(t)));
  }
}

TEST(OptimTest, GradStatsSumsByChunks) {
  // grad[0]^2 = 1e8, every other square 1. Within chunk 0, each +1 is lost to rounding (floats
  // near 1e8 are 8 apart): chunk 0 sums to 1e8 and chunk 1 to 4096, so the chunked tree gives
  // 1e8 + 4096 (exact); one sequential sum over all elements would give 1e8.
  std::vector<float> grad(2 * kChunk, 1.0F);
  grad[0] = 1e4F;
  std::vector<float> out(2), workspace(grad_stats_workspace_floats(2 * kChunk));
  for (const int threads : {1, 2}) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    grad_stats(kCpu, FloatType::kF32, grad.data(), 2 * kChunk, 1.0F, out.data(), workspace.data());
    EXPECT_EQ(out[0], 1e8F + 4096.0F) << threads << " threads";
  }
  reference::grad_stats(FloatType::kF32, grad.data(), 2 * kChunk, 1.0F, out.data());
  EXPECT_EQ(out[0], 1e8F + 4096.0F) << "reference";
}

TEST(OptimTest, GradStatsOfFiniteGradientsMatchesReferenceForAnyThreadCount) {
  const std::int64_t n = 5 * kChunk + 1001;
  const std::vector<float> values = random_vector(n, 2, -3, 3);
  std::vector<float> workspace(grad_stats_workspace_floats(n));
  for (const FloatType t : {FloatType::kF32, FloatType::kBF16, FloatType::kF16}) {
    std::vector<std::uint8_t> grad(n * nn::float_bytes(t));
    double sum = 0;
    for (std::int64_t i = 0; i < n; i++) {
      store(t, grad.data(), i, values[i]);
      sum += std::pow(double{load(t, grad.data(), i)} * 0.25, 2);
    }
    std::vector<float> expected(2);
    reference::grad_stats(t, grad.data(), n, 0.25F, expected.data());
    EXPECT_EQ(expected[1], 0.0F);
    // n float additions of positive terms: within n * 2^-24 relative of the exact sum.
    EXPECT_NEAR(expected[0], sum, static_cast<double>(n) * 6e-8 * sum);
    for (const int threads : {1, 2, 4}) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      std::vector<float> out(2);
      grad_stats(kCpu, t, grad.data(), n, 0.25F, out.data(), workspace.data());
      nn::expect_same_bits(out, expected, std::to_string(threads) + " threads");
    }
  }
  std::vector<float> out{1.0F, 1.0F};
  grad_stats(kCpu, FloatType::kF32, nullptr, 0, 1.0F, out.data(), nullptr);
  EXPECT_EQ(out, (std::vector<float>{0.0F, 0.0F}));
}

TEST(OptimTest, CombineStatsAddsInOrder) {
  // In order, 1e8 + 1 rounds back to 1e8 and the total is 0; any other order gives 1.
  const std::vector<float> parts{1e8F, 1.0F, 1.0F, 0.0F, -1e8F, 2.0F};
  std::vector<float> out(2);
  combine_stats(kCpu, parts.data(), 3, out.data());
  EXPECT_EQ(out[0], 0.0F);
  EXPECT_EQ(out[1], 3.0F);
}

TEST(OptimTest, BrokenPreconditionsThrow) {
  std::vector<float> buffer(64);
  std::vector<std::uint16_t> param16(12);
  float* f = buffer.data();
  EXPECT_THROW(adamw(kCpu, FloatType::kBF16, param16.data(), nullptr, f, f + 12, FloatType::kF32,
                     f + 24, 12, AdamWStep{}),
               std::invalid_argument);
  EXPECT_THROW(adamw(kCpu, FloatType::kF32, f, nullptr, f + 12, f + 24, FloatType::kF32, f + 36, 12,
                     AdamWStep{.step = 0}),
               std::invalid_argument);
  EXPECT_THROW(adafactor(kCpu, FloatType::kF32, f, nullptr, f + 12, f + 15, nullptr, nullptr,
                         FloatType::kF32, f + 19, 3, 4, AdafactorStep{.beta1 = 0.9F}, f + 31),
               std::invalid_argument);
  EXPECT_THROW(adafactor(kCpu, FloatType::kF32, f, nullptr, f + 12, f + 15, nullptr, nullptr,
                         FloatType::kF32, f + 19, 3, 4, AdafactorStep{}, nullptr),
               std::invalid_argument);
  EXPECT_THROW(sm3(kCpu, FloatType::kF32, f, nullptr, nullptr, nullptr, nullptr, nullptr,
                   FloatType::kF32, f + 19, 12, 1, Sm3Step{}, nullptr),
               std::invalid_argument);
  EXPECT_THROW(grad_stats(kCpu, static_cast<FloatType>(7), f, 12, 1.0F, f + 12, f + 14),
               std::invalid_argument);
}

TEST(OptimTest, StateAndWorkspaceSizes) {
  EXPECT_EQ(adamw_state_floats(768, 3072), 2 * 768 * 3072);
  EXPECT_EQ(adafactor_state_floats(768, 3072, false), 768 + 3072);
  EXPECT_EQ(adafactor_state_floats(768, 3072, true), 768 + 3072 + 768 * 3072);
  EXPECT_EQ(adafactor_state_floats(768, 1, false), 768);
  EXPECT_EQ(sm3_state_floats(768, 3072, false), 768 + 3072);
  EXPECT_EQ(sm3_state_floats(768, 1, true), 768 + 768);
  EXPECT_EQ(grad_stats_workspace_floats(2 * kChunk + 1), 6);
  EXPECT_EQ(adafactor_workspace_floats(768, 3072), kAdafactorScalarFloats + 768);
  EXPECT_EQ(adafactor_workspace_floats(kChunk + 1, 1), kAdafactorScalarFloats + 2);
  EXPECT_EQ(sm3_workspace_floats(768, 3072), 768);
  EXPECT_EQ(sm3_workspace_floats(768, 1), 0);
}

// --- the cpu against the reference, bit for bit --------------------------------------------------

// Step `step` of c on s, with the cpu kernels (through the dispatchers) or with the reference.
void run_step(const Config& c, const Types& t, ModelState& s, const std::vector<std::uint8_t>& grad,
              std::int64_t rows, std::int64_t cols, int step, bool use_reference) {
  if (use_reference) {
    reference_step(c, t, s, grad, rows, cols, step);
    return;
  }
  cpu_step(c, t, s, grad, rows, cols, step);
}

class OptimCpuTest : public testing::TestWithParam<std::tuple<Config, Types>> {};

TEST_P(OptimCpuTest, MatchesReferenceBitForBitForAnyThreadCount) {
  const auto& [config, types] = GetParam();
  // Matrices with several column blocks, one row, and the smallest; vectors with several chunks
  // (and elementwise tasks) and with one short chunk.
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {
      {37, 301}, {1, 9}, {3, 2}, {5 * kChunk + 123, 1}, {7, 1}};
  constexpr int kSteps = 3;
  for (const auto& [rows, cols] : shapes) {
    const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
    std::vector<std::vector<std::uint8_t>> grads(kSteps);
    for (int step = 0; step < kSteps; step++) {
      grads[step] = random_gradient(types.grad, rows * cols, 30 + step);
    }
    const ModelState initial = initial_state(config, types, rows, cols);
    ModelState expected = initial;
    for (int step = 0; step < kSteps; step++) {
      run_step(config, types, expected, grads[step], rows, cols, step + 1, true);
    }
    EXPECT_NE(expected.param, initial.param) << shape << ": the steps changed nothing";
    for (const int threads : {1, 2, 4}) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      ModelState state = initial;
      for (int step = 0; step < kSteps; step++) {
        run_step(config, types, state, grads[step], rows, cols, step + 1, false);
      }
      expect_same_state(state, expected, shape + ", " + std::to_string(threads) + " threads");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, OptimCpuTest,
                         testing::Combine(testing::ValuesIn(kConfigs), testing::ValuesIn(kTypes)),
                         test_name);

// --- AdamW is nn::adamw --------------------------------------------------------------------------

TEST(OptimTest, AdamwOnFp32WithoutMasterIsNnAdamwBitForBit) {
  const std::int64_t n = 40000;  // several elementwise chunks
  std::vector<float> x = random_vector(n, 3), m(n), v(n);
  std::vector<float> p = x, pm(n), pv(n), p_out(n), pm_out(n), pv_out(n);
  const nn::AdamWConfig config{
      .learning_rate = 1e-2F, .beta1 = 0.9F, .beta2 = 0.99F, .eps = 1e-8F, .weight_decay = 0.05F};
  const AdamWStep s{.lr = config.learning_rate,
                    .beta1 = config.beta1,
                    .beta2 = config.beta2,
                    .eps = config.eps,
                    .weight_decay = config.weight_decay};
  for (int step = 1; step <= 4; step++) {
    const std::vector<float> grad = random_vector(n, 10 + step);
    nn::adamw(kCpu, p_out.data(), pm_out.data(), pv_out.data(), p.data(), grad.data(), pm.data(),
              pv.data(), n, config, step);
    p.swap(p_out), pm.swap(pm_out), pv.swap(pv_out);
    AdamWStep at = s;
    at.step = step;
    adamw(kCpu, FloatType::kF32, x.data(), nullptr, m.data(), v.data(), FloatType::kF32,
          grad.data(), n, at);
    nn::expect_same_bits(x, p, "param, step " + std::to_string(step));
    nn::expect_same_bits(m, pm, "m, step " + std::to_string(step));
    nn::expect_same_bits(v, pv, "v, step " + std::to_string(step));
  }
}

}  // namespace
}  // namespace ebb::optim
