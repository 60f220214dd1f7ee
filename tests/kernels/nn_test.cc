// Tests of the cpu nn kernels (kernels/cpu/nn_cpu.h) and of their references
// (kernels/nn_reference.h):
// - every fast kernel against reference<float> on seeded random inputs, with outputs pre-filled
//   with NaN so that an output element left unwritten fails the comparison;
// - every backward kernel of the reference, in double, against central finite differences of
//   the reference forward (loss = sum(out * w), so dout = w);
// - determinism: the kernels with reductions give the same bits run twice and on one thread;
// - adamw against a step computed by hand, the bf16 casts on chosen values;
// - the dispatching ebb::nn API on a cpu LaunchContext.
#include "kernels/nn.h"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/nn_cpu.h"
#include "kernels/nn_reference.h"
#include "tests/kernels/nn_test_support.h"

namespace ebb::nn {
namespace {

namespace ref = reference;

// Float rounding of sums of up to a few hundred terms of size ~1 (relative to the tensor's max).
constexpr double kFloatTolerance = 1e-5;

// --- fast vs reference<float> --------------------------------------------------------------------

TEST(NnCpuTest, EmbeddingMatchesReference) {
  const int B = 3, T = 7, C = 40, V = 11;  // B*T > V: tokens repeat
  auto tokens = random_tokens(B * T, V, 1);
  auto wte = random_vector<float>(V * C, 2), wpe = random_vector<float>(T * C, 3);
  auto dout = random_vector<float>(B * T * C, 4);
  auto out = nan_vector(B * T * C), out_ref = nan_vector(B * T * C);
  cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  ref::embedding_forward(out_ref.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  expect_close(out, out_ref, 0, "out");
  auto dwte = nan_vector(V * C), dwpe = nan_vector(T * C);
  auto dwte_ref = nan_vector(V * C), dwpe_ref = nan_vector(T * C);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V);
  ref::embedding_backward(dwte_ref.data(), dwpe_ref.data(), dout.data(), tokens.data(), B, T, C, V);
  // Same (b,t) order as the reference: the same bits.
  expect_close(dwte, dwte_ref, 0, "dwte");
  expect_close(dwpe, dwpe_ref, 0, "dwpe");
}

TEST(NnCpuTest, LayernormMatchesReference) {
  const int N = 37, C = 72;
  auto inp = random_vector<float>(N * C, 5, -2, 3);
  auto weight = random_vector<float>(C, 6), bias = random_vector<float>(C, 7);
  auto dout = random_vector<float>(N * C, 8);
  auto out = nan_vector(N * C), mean = nan_vector(N), rstd = nan_vector(N);
  auto out_ref = nan_vector(N * C), mean_ref = nan_vector(N), rstd_ref = nan_vector(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
  ref::layernorm_forward(out_ref.data(), mean_ref.data(), rstd_ref.data(), inp.data(),
                         weight.data(), bias.data(), N, C);
  expect_close(out, out_ref, kFloatTolerance, "out");
  expect_close(mean, mean_ref, kFloatTolerance, "mean");
  expect_close(rstd, rstd_ref, kFloatTolerance, "rstd");
  auto dinp = nan_vector(N * C), dweight = nan_vector(C), dbias = nan_vector(C);
  auto dinp_ref = nan_vector(N * C), dweight_ref = nan_vector(C), dbias_ref = nan_vector(C);
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  ref::layernorm_backward(dinp_ref.data(), dweight_ref.data(), dbias_ref.data(), dout.data(),
                          inp.data(), weight.data(), mean.data(), rstd.data(), N, C);
  expect_close(dinp, dinp_ref, kFloatTolerance, "dinp");
  expect_close(dweight, dweight_ref, kFloatTolerance, "dweight");
  expect_close(dbias, dbias_ref, kFloatTolerance, "dbias");
}

// Shapes that exercise the GEMM's partial register and task tiles and more than one k block.
struct MatmulShape {
  int n, c, oc;
  bool bias;
};

class NnCpuMatmulTest : public testing::TestWithParam<MatmulShape> {};

TEST_P(NnCpuMatmulTest, MatchesReference) {
  const auto [N, C, OC, has_bias] = GetParam();
  auto inp = random_vector<float>(N * C, 9), weight = random_vector<float>(OC * C, 10);
  auto bias = random_vector<float>(OC, 11), dout = random_vector<float>(N * OC, 12);
  const float* bias_ptr = has_bias ? bias.data() : nullptr;
  auto out = nan_vector(N * OC), out_ref = nan_vector(N * OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias_ptr, N, C, OC);
  ref::matmul_forward(out_ref.data(), inp.data(), weight.data(), bias_ptr, N, C, OC);
  expect_close(out, out_ref, kFloatTolerance, "out");
  auto dinp = nan_vector(N * C), dweight = nan_vector(OC * C), dbias = nan_vector(OC);
  auto dinp_ref = nan_vector(N * C), dweight_ref = nan_vector(OC * C), dbias_ref = nan_vector(OC);
  cpu::matmul_backward(dinp.data(), dweight.data(), has_bias ? dbias.data() : nullptr, dout.data(),
                       inp.data(), weight.data(), N, C, OC);
  ref::matmul_backward(dinp_ref.data(), dweight_ref.data(), has_bias ? dbias_ref.data() : nullptr,
                       dout.data(), inp.data(), weight.data(), N, C, OC);
  expect_close(dinp, dinp_ref, kFloatTolerance, "dinp");
  expect_close(dweight, dweight_ref, kFloatTolerance, "dweight");
  if (has_bias) expect_close(dbias, dbias_ref, kFloatTolerance, "dbias");
}

INSTANTIATE_TEST_SUITE_P(Shapes, NnCpuMatmulTest,
                         testing::Values(MatmulShape{1, 1, 1, true}, MatmulShape{64, 64, 128, true},
                                         MatmulShape{67, 33, 150, false},
                                         MatmulShape{130, 300, 17, true},
                                         MatmulShape{5, 3, 7, false}));

TEST(NnCpuTest, GeluAndAddMatchReference) {
  const int n = 40000;  // more than one elementwise chunk
  auto inp = random_vector<float>(n, 13, -6, 6), dout = random_vector<float>(n, 14);
  auto out = nan_vector(n), out_ref = nan_vector(n);
  cpu::gelu_forward(out.data(), inp.data(), n);
  ref::gelu_forward(out_ref.data(), inp.data(), n);
  expect_close(out, out_ref, kFloatTolerance, "gelu out");
  auto dinp = nan_vector(n), dinp_ref = nan_vector(n);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), n);
  ref::gelu_backward(dinp_ref.data(), inp.data(), dout.data(), n);
  expect_close(dinp, dinp_ref, kFloatTolerance, "gelu dinp");
  auto sum = nan_vector(n), sum_ref = nan_vector(n);
  cpu::add(sum.data(), inp.data(), dout.data(), n);
  ref::add(sum_ref.data(), inp.data(), dout.data(), n);
  expect_close(sum, sum_ref, 0, "add");
}

TEST(NnCpuTest, AttentionMatchesReference) {
  const int B = 2, T = 9, C = 24, NH = 3;
  auto qkv = random_vector<float>(B * T * 3 * C, 15, -2, 2);
  auto dout = random_vector<float>(B * T * C, 16);
  auto out = nan_vector(B * T * C), att = nan_vector(B * NH * T * T);
  auto out_ref = nan_vector(B * T * C), att_ref = nan_vector(B * NH * T * T);
  cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  ref::attention_forward(out_ref.data(), att_ref.data(), qkv.data(), B, T, C, NH);
  expect_close(out, out_ref, kFloatTolerance, "out");
  expect_close(att, att_ref, kFloatTolerance, "att");
  for (int bh = 0; bh < B * NH; bh++) {  // nn.h: entries above the diagonal are written as 0
    for (int t = 0; t < T; t++) {
      for (int t2 = t + 1; t2 < T; t2++) EXPECT_EQ(att[(bh * T + t) * T + t2], 0.0F);
    }
  }
  auto dqkv = nan_vector(B * T * 3 * C), dqkv_ref = nan_vector(B * T * 3 * C);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  ref::attention_backward(dqkv_ref.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_close(dqkv, dqkv_ref, kFloatTolerance, "dqkv");
}

TEST(NnCpuTest, SoftmaxCrossEntropyAndMeanMatchReference) {
  const int N = 13, V = 50;
  auto logits = random_vector<float>(N * V, 17, -5, 5);
  auto targets = random_tokens(N, V, 18);
  auto losses = nan_vector(N), probs = nan_vector(N * V);
  auto losses_ref = nan_vector(N), probs_ref = nan_vector(N * V);
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N,
                                     V);
  ref::softmax_cross_entropy_forward(losses_ref.data(), probs_ref.data(), logits.data(),
                                     targets.data(), N, V);
  expect_close(losses, losses_ref, kFloatTolerance, "losses");
  expect_close(probs, probs_ref, kFloatTolerance, "probs");
  auto dlogits = nan_vector(N * V), dlogits_ref = nan_vector(N * V);
  cpu::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), 1.0F / N, N, V);
  ref::softmax_cross_entropy_backward(dlogits_ref.data(), probs.data(), targets.data(), 1.0F / N, N,
                                      V);
  expect_close(dlogits, dlogits_ref, 0, "dlogits");

  const int n = 50000;  // several chunks of the fast mean
  auto values = random_vector<float>(n, 19, 0, 10);
  auto avg = nan_vector(1);
  std::vector<double> values_double(values.begin(), values.end());
  double avg_double = 0;
  cpu::mean(avg.data(), values.data(), n);
  ref::mean(&avg_double, values_double.data(), n);
  EXPECT_NEAR(avg[0], avg_double, 1e-6 * avg_double);  // double accumulation: float-exact
}

// --- backward of the reference vs finite differences, in double ---------------------------------

// Checks grad[i] == d loss / d x[i] by central differences, on every element (the shapes are
// small). loss() reads x, so x is perturbed in place and restored.
void check_gradient(std::vector<double>& x, const std::vector<double>& grad,
                    const std::function<double()>& loss, const char* what) {
  ASSERT_EQ(x.size(), grad.size());
  const double eps = 1e-6;
  for (std::size_t i = 0; i < x.size(); i++) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double up = loss();
    x[i] = saved - eps;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2 * eps);
    // Relative 1e-6; the 1e-2 floor covers gradients near zero, where the finite difference's
    // own rounding (~1e-16 |loss| / eps) dominates.
    EXPECT_NEAR(grad[i], numeric, 1e-6 * (std::abs(numeric) + 1e-2)) << what << "[" << i << "]";
  }
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

TEST(NnReferenceGradientTest, Embedding) {
  const int B = 2, T = 4, C = 3, V = 5;
  auto tokens = random_tokens(B * T, V, 21);
  auto wte = random_vector<double>(V * C, 22), wpe = random_vector<double>(T * C, 23);
  auto w = random_vector<double>(B * T * C, 24);
  std::vector<double> out(B * T * C), dwte(V * C), dwpe(T * C);
  auto loss = [&] {
    ref::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
    return dot(out, w);
  };
  ref::embedding_backward(dwte.data(), dwpe.data(), w.data(), tokens.data(), B, T, C, V);
  check_gradient(wte, dwte, loss, "dwte");
  check_gradient(wpe, dwpe, loss, "dwpe");
}

TEST(NnReferenceGradientTest, Layernorm) {
  const int N = 3, C = 8;
  auto inp = random_vector<double>(N * C, 25, -2, 3);
  auto weight = random_vector<double>(C, 26), bias = random_vector<double>(C, 27);
  auto w = random_vector<double>(N * C, 28);
  std::vector<double> out(N * C), mean(N), rstd(N), dinp(N * C), dweight(C), dbias(C);
  auto loss = [&] {
    ref::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                           bias.data(), N, C);
    return dot(out, w);
  };
  loss();
  ref::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), w.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  check_gradient(inp, dinp, loss, "dinp");
  check_gradient(weight, dweight, loss, "dweight");
  check_gradient(bias, dbias, loss, "dbias");
}

TEST(NnReferenceGradientTest, Matmul) {
  const int N = 5, C = 4, OC = 6;
  for (const bool has_bias : {true, false}) {
    auto inp = random_vector<double>(N * C, 29), weight = random_vector<double>(OC * C, 30);
    auto bias = random_vector<double>(OC, 31), w = random_vector<double>(N * OC, 32);
    std::vector<double> out(N * OC), dinp(N * C), dweight(OC * C), dbias(OC);
    auto loss = [&] {
      ref::matmul_forward(out.data(), inp.data(), weight.data(), has_bias ? bias.data() : nullptr,
                          N, C, OC);
      return dot(out, w);
    };
    ref::matmul_backward(dinp.data(), dweight.data(), has_bias ? dbias.data() : nullptr, w.data(),
                         inp.data(), weight.data(), N, C, OC);
    check_gradient(inp, dinp, loss, "dinp");
    check_gradient(weight, dweight, loss, "dweight");
    if (has_bias) check_gradient(bias, dbias, loss, "dbias");
  }
}

TEST(NnReferenceGradientTest, Gelu) {
  const int n = 24;
  auto inp = random_vector<double>(n, 33, -5, 5), w = random_vector<double>(n, 34);
  std::vector<double> out(n), dinp(n);
  auto loss = [&] {
    ref::gelu_forward(out.data(), inp.data(), n);
    return dot(out, w);
  };
  ref::gelu_backward(dinp.data(), inp.data(), w.data(), n);
  check_gradient(inp, dinp, loss, "dinp");
}

TEST(NnReferenceGradientTest, Attention) {
  const int B = 2, T = 4, C = 6, NH = 2;
  auto qkv = random_vector<double>(B * T * 3 * C, 35, -1.5, 1.5);
  auto w = random_vector<double>(B * T * C, 36);
  std::vector<double> out(B * T * C), att(B * NH * T * T), dqkv(B * T * 3 * C);
  auto loss = [&] {
    ref::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, w);
  };
  loss();
  ref::attention_backward(dqkv.data(), w.data(), qkv.data(), att.data(), B, T, C, NH);
  check_gradient(qkv, dqkv, loss, "dqkv");  // q, k and v of every position and head
}

TEST(NnReferenceGradientTest, SoftmaxCrossEntropy) {
  const int N = 3, V = 7;
  auto logits = random_vector<double>(N * V, 37, -3, 3);
  auto targets = random_tokens(N, V, 38);
  const double dloss = 1.0 / N;
  std::vector<double> losses(N), probs(N * V), dlogits(N * V);
  auto loss = [&] {
    ref::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(),
                                       N, V);
    double s = 0;
    for (const double l : losses) s += l;
    return s * dloss;
  };
  loss();
  ref::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V);
  check_gradient(logits, dlogits, loss, "dlogits");
}

// --- determinism ---------------------------------------------------------------------------------

// Runs every kernel with a reduction and returns its outputs, concatenated.
std::vector<float> run_reductions() {
  const int B = 4, T = 16, C = 48, NH = 4, V = 23, N = B * T, OC = 144;
  auto tokens = random_tokens(N, V, 39);
  auto inp = random_vector<float>(N * C, 40), dout = random_vector<float>(N * C, 41);
  auto weight = random_vector<float>(OC * C, 42), bias = random_vector<float>(OC, 43);
  auto dout_oc = random_vector<float>(N * OC, 44), qkv = random_vector<float>(N * 3 * C, 45);
  std::vector<float> all;
  auto keep = [&](const std::vector<float>& v) { all.insert(all.end(), v.begin(), v.end()); };

  std::vector<float> out(N * OC), dinp(N * C), dweight(OC * C), dbias(OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
  cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout_oc.data(), inp.data(),
                       weight.data(), N, C, OC);
  keep(out), keep(dinp), keep(dweight), keep(dbias);

  std::vector<float> ln_out(N * C), mean(N), rstd(N), ln_dweight(C), ln_dbias(C);
  cpu::layernorm_forward(ln_out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
  cpu::layernorm_backward(dinp.data(), ln_dweight.data(), ln_dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  keep(dinp), keep(ln_dweight), keep(ln_dbias);

  std::vector<float> dwte(V * C), dwpe(T * C);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V);
  keep(dwte), keep(dwpe);

  std::vector<float> att_out(N * C), att(B * NH * T * T), dqkv(N * 3 * C);
  cpu::attention_forward(att_out.data(), att.data(), qkv.data(), B, T, C, NH);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  keep(dqkv);

  std::vector<float> avg(1);
  auto values = random_vector<float>(100000, 46);
  cpu::mean(avg.data(), values.data(), static_cast<std::int64_t>(values.size()));
  keep(avg);
  return all;
}

TEST(NnCpuTest, ReductionsAreDeterministicForAnyThreadCount) {
  const std::vector<float> first = run_reductions();
  expect_same_bits(first, run_reductions(), "second run");
  tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
  expect_same_bits(first, run_reductions(), "one thread");
}

// --- adamw, casts --------------------------------------------------------------------------------

TEST(NnCpuTest, AdamwMatchesHandComputedStep) {
  const AdamWConfig config{
      .learning_rate = 0.1F, .beta1 = 0.9F, .beta2 = 0.99F, .eps = 1e-8F, .weight_decay = 0.5F};
  const std::vector<float> param{1.0F, -2.0F}, grad{0.5F, 0.0F}, m{0.1F, 0.2F}, v{0.04F, 0.01F};
  auto param_out = nan_vector(2), m_out = nan_vector(2), v_out = nan_vector(2);
  cpu::adamw(param_out.data(), m_out.data(), v_out.data(), param.data(), grad.data(), m.data(),
             v.data(), 2, config, /*step=*/2);
  // Element 0: m' = 0.9*0.1 + 0.1*0.5 = 0.14; v' = 0.99*0.04 + 0.01*0.25 = 0.0421;
  // m^ = 0.14/(1-0.81) = 0.736842; v^ = 0.0421/(1-0.9801) = 2.115578;
  // p' = 1 - 0.1*(0.736842/1.454503 + 0.5*1) = 0.899340.
  // Element 1: m' = 0.18; v' = 0.0099; m^ = 0.947368; v^ = 0.497487;
  // p' = -2 - 0.1*(0.947368/0.705328 + 0.5*(-2)) = -2.034316.
  EXPECT_NEAR(m_out[0], 0.14F, 1e-7);
  EXPECT_NEAR(v_out[0], 0.0421F, 1e-8);
  EXPECT_NEAR(param_out[0], 0.899340F, 2e-6);
  EXPECT_NEAR(m_out[1], 0.18F, 1e-7);
  EXPECT_NEAR(v_out[1], 0.0099F, 1e-8);
  EXPECT_NEAR(param_out[1], -2.034316F, 2e-6);
}

TEST(NnCpuTest, CastToBf16RoundsToNearestEven) {
  struct Case {
    std::uint32_t f32_bits;
    std::uint16_t bf16;
  };
  const Case cases[] = {
      {0x3F800000, 0x3F80},  // 1.0: exact
      {0x3F808000, 0x3F80},  // tie, even below: down
      {0x3F818000, 0x3F82},  // tie, odd below: up to even
      {0x3F808001, 0x3F81},  // just above the tie: up
      {0x3F807FFF, 0x3F80},  // just below the tie: down
      {0xBF818000, 0xBF82},  // negative tie: magnitude up to even
      {0x7F7F0000, 0x7F7F},  // bf16's max: exact
      {0x7F7F7FFF, 0x7F7F},  // below the tie above bf16's max: stays finite
      {0x7F7FFFFF, 0x7F80},  // float's max rounds to infinity
      {0x7F800000, 0x7F80},  // +inf
      {0xFF800000, 0xFF80},  // -inf
      {0x7FC00000, 0x7FC0},  // quiet NaN
      {0x7F800001, 0x7FC0},  // signalling NaN with only low bits set: still NaN, not inf
      {0xFFFFFFFF, 0xFFFF},  // negative NaN
      {0x00000001, 0x0000},  // smallest subnormal rounds to zero
      {0x80000000, 0x8000},  // -0
  };
  for (const Case& c : cases) {
    const float in = std::bit_cast<float>(c.f32_bits);
    std::uint16_t out = 0xABCD;
    cpu::cast_f32_to_bf16(&out, &in, 1);
    EXPECT_EQ(out, c.bf16) << std::hex << c.f32_bits;
    std::uint16_t out_ref = 0xABCD;
    ref::cast_f32_to_bf16(&out_ref, &in, 1);
    EXPECT_EQ(out_ref, c.bf16) << std::hex << c.f32_bits;
  }
}

TEST(NnCpuTest, CastFromBf16IsExact) {
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); i++) all[i] = static_cast<std::uint16_t>(i);
  auto out = nan_vector(all.size());
  cpu::cast_bf16_to_f32(out.data(), all.data(), static_cast<std::int64_t>(all.size()));
  std::vector<std::uint16_t> back(all.size());
  cpu::cast_f32_to_bf16(back.data(), out.data(), static_cast<std::int64_t>(out.size()));
  for (std::size_t i = 0; i < all.size(); i++) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(out[i]), static_cast<std::uint32_t>(i) << 16) << i;
    // Round trip: every bf16 value, NaNs included (they are quiet already or get quieted).
    const bool nan = std::isnan(out[i]);
    ASSERT_EQ(back[i], nan ? (all[i] | 0x0040) : all[i]) << i;
  }
}

// --- the dispatching API -------------------------------------------------------------------------

TEST(NnDispatchTest, CpuContextRunsTheCpuKernels) {
  const LaunchContext ctx{DeviceKind::kCpu, nullptr};
  const int N = 6, C = 5, OC = 7;
  auto inp = random_vector<float>(N * C, 47), weight = random_vector<float>(OC * C, 48);
  auto out = nan_vector(N * OC), out_cpu = nan_vector(N * OC);
  matmul_forward(ctx, out.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  cpu::matmul_forward(out_cpu.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  expect_same_bits(out, out_cpu, "matmul_forward");
  auto sum = nan_vector(1);
  mean(ctx, sum.data(), inp.data(), N * C);
  EXPECT_FALSE(std::isnan(sum[0]));
}

}  // namespace
}  // namespace ebb::nn
