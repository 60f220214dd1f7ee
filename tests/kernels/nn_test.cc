// Tests of the cpu nn kernels (kernels/cpu/nn_cpu.h) and of their references
// (kernels/nn_reference.h):
// - every fast kernel against reference<float> on seeded random inputs, with outputs pre-filled
//   with NaN so that an output element left unwritten fails the comparison;
// - every backward kernel of the reference, in double, against central finite differences of
//   the reference forward (loss = sum(out * w), so dout = w);
// - determinism: the kernels with reductions give the same bits run twice and on one thread, in
//   fp32 and in 16-bit storage;
// - the 16-bit (bf16, fp16) kernels against the 16-bit references, and bit for bit against the
//   fp32 kernel run on the widened inputs with the outputs rounded (nn.h's arithmetic rule);
// - adamw against a step computed by hand; the bf16 and fp16 conversions on chosen values and
//   against an oracle, cast between every pair of storage types, accumulate;
// - the dispatching ebb::nn API on a cpu LaunchContext.
#include "kernels/nn.h"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
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

// Runs every kernel with a reduction in storage type S and returns its outputs, widened and
// concatenated (widening is exact, so equal results have equal bits).
template <Storage S>
std::vector<float> run_reductions() {
  const int B = 4, T = 16, C = 48, NH = 4, V = 23, N = B * T, OC = 144;
  auto tokens = random_tokens(N, V, 39);
  auto inp = random_storage<S>(N * C, 40), dout = random_storage<S>(N * C, 41);
  auto weight = random_storage<S>(OC * C, 42), bias = random_storage<S>(OC, 43);
  auto dout_oc = random_storage<S>(N * OC, 44), qkv = random_storage<S>(N * 3 * C, 45);
  std::vector<float> all;
  auto keep = [&]<Storage Elem>(const std::vector<Elem>& v) {
    for (const Elem& x : v) all.push_back(to_float(x));
  };

  std::vector<S> out(N * OC), dinp(N * C);
  std::vector<float> dweight(OC * C), dbias(OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
  cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout_oc.data(), inp.data(),
                       weight.data(), N, C, OC);
  keep(out), keep(dinp), keep(dweight), keep(dbias);

  std::vector<S> ln_out(N * C);
  std::vector<float> mean(N), rstd(N), ln_dweight(C), ln_dbias(C);
  cpu::layernorm_forward(ln_out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
  cpu::layernorm_backward(dinp.data(), ln_dweight.data(), ln_dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  keep(dinp), keep(ln_dweight), keep(ln_dbias);

  std::vector<float> dwte(V * C), dwpe(T * C);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V);
  keep(dwte), keep(dwpe);

  std::vector<S> att_out(N * C), att(B * NH * T * T), dqkv(N * 3 * C);
  cpu::attention_forward(att_out.data(), att.data(), qkv.data(), B, T, C, NH);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  keep(att_out), keep(att), keep(dqkv);

  auto logits = random_storage<S>(N * V, 47, -5, 5);
  std::vector<S> probs(N * V);
  std::vector<float> losses(N);
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), tokens.data(), N,
                                     V);
  keep(losses), keep(probs);

  std::vector<float> avg(1);
  auto values = random_vector<float>(100000, 46);
  cpu::mean(avg.data(), values.data(), static_cast<std::int64_t>(values.size()));
  keep(avg);
  return all;
}

TEST(NnCpuTest, ReductionsAreDeterministicForAnyThreadCount) {
  const std::vector<float> first = run_reductions<float>();
  expect_same_bits(first, run_reductions<float>(), "second run");
  tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
  expect_same_bits(first, run_reductions<float>(), "one thread");
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

// --- 16-bit storage ------------------------------------------------------------------------------
//
// For each kernel, in bf16 and fp16: (1) against the 16-bit reference, with outputs pre-filled
// with NaN, to the fp32 comparison's tolerance plus one 16-bit ulp (rounded_tolerance: both
// compute in float from the same widened inputs, then each rounds once); (2) bit for bit against
// the fp32 cpu kernel run on the widened inputs, its 16-bit outputs rounded: nn.h's arithmetic
// rule, which the cpu backend keeps exactly.

template <typename S>
class NnCpu16Test : public testing::Test {};
using Storage16Types = testing::Types<Bf16, F16>;
TYPED_TEST_SUITE(NnCpu16Test, Storage16Types);

TYPED_TEST(NnCpu16Test, Embedding) {
  using S = TypeParam;
  const int B = 3, T = 7, C = 40, V = 11;
  auto tokens = random_tokens(B * T, V, 1);
  auto wte = random_storage<S>(V * C, 2), wpe = random_storage<S>(T * C, 3);
  auto dout = random_storage<S>(B * T * C, 4);
  auto out = nan_storage<S>(B * T * C), out_ref = nan_storage<S>(B * T * C);
  cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  ref::embedding_forward(out_ref.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  expect_close(out, out_ref, 0, "out");
  std::vector<float> out32(B * T * C);
  cpu::embedding_forward(out32.data(), tokens.data(), widened(wte).data(), widened(wpe).data(), B,
                         T, C, V);
  expect_same_bits(out, rounded<S>(out32), "out vs fp32");

  auto dwte = nan_vector(V * C), dwpe = nan_vector(T * C);
  auto dwte_ref = nan_vector(V * C), dwpe_ref = nan_vector(T * C);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V);
  ref::embedding_backward(dwte_ref.data(), dwpe_ref.data(), dout.data(), tokens.data(), B, T, C, V);
  expect_close(dwte, dwte_ref, 0, "dwte");
  expect_close(dwpe, dwpe_ref, 0, "dwpe");
  std::vector<float> dwte32(V * C), dwpe32(T * C);
  cpu::embedding_backward(dwte32.data(), dwpe32.data(), widened(dout).data(), tokens.data(), B, T,
                          C, V);
  expect_same_bits(dwte, dwte32, "dwte vs fp32");
  expect_same_bits(dwpe, dwpe32, "dwpe vs fp32");
}

TYPED_TEST(NnCpu16Test, Layernorm) {
  using S = TypeParam;
  const int N = 37, C = 72;
  const double tolerance = rounded_tolerance<S>(kFloatTolerance);
  auto inp = random_storage<S>(N * C, 5, -2, 3);
  auto weight = random_storage<S>(C, 6), bias = random_storage<S>(C, 7);
  auto dout = random_storage<S>(N * C, 8);
  auto out = nan_storage<S>(N * C), out_ref = nan_storage<S>(N * C);
  auto mean = nan_vector(N), rstd = nan_vector(N), mean_ref = nan_vector(N);
  auto rstd_ref = nan_vector(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
  ref::layernorm_forward(out_ref.data(), mean_ref.data(), rstd_ref.data(), inp.data(),
                         weight.data(), bias.data(), N, C);
  expect_close(out, out_ref, tolerance, "out");
  expect_close(mean, mean_ref, kFloatTolerance, "mean");  // fp32 outputs: no 16-bit rounding
  expect_close(rstd, rstd_ref, kFloatTolerance, "rstd");
  std::vector<float> out32(N * C), mean32(N), rstd32(N);
  cpu::layernorm_forward(out32.data(), mean32.data(), rstd32.data(), widened(inp).data(),
                         widened(weight).data(), widened(bias).data(), N, C);
  expect_same_bits(out, rounded<S>(out32), "out vs fp32");
  expect_same_bits(mean, mean32, "mean vs fp32");
  expect_same_bits(rstd, rstd32, "rstd vs fp32");

  auto dinp = nan_storage<S>(N * C), dinp_ref = nan_storage<S>(N * C);
  auto dweight = nan_vector(C), dbias = nan_vector(C);
  auto dweight_ref = nan_vector(C), dbias_ref = nan_vector(C);
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  ref::layernorm_backward(dinp_ref.data(), dweight_ref.data(), dbias_ref.data(), dout.data(),
                          inp.data(), weight.data(), mean.data(), rstd.data(), N, C);
  expect_close(dinp, dinp_ref, tolerance, "dinp");
  expect_close(dweight, dweight_ref, kFloatTolerance, "dweight");
  expect_close(dbias, dbias_ref, kFloatTolerance, "dbias");
  std::vector<float> dinp32(N * C), dweight32(C), dbias32(C);
  cpu::layernorm_backward(dinp32.data(), dweight32.data(), dbias32.data(), widened(dout).data(),
                          widened(inp).data(), widened(weight).data(), mean.data(), rstd.data(), N,
                          C);
  expect_same_bits(dinp, rounded<S>(dinp32), "dinp vs fp32");
  expect_same_bits(dweight, dweight32, "dweight vs fp32");
  expect_same_bits(dbias, dbias32, "dbias vs fp32");
}

TYPED_TEST(NnCpu16Test, Matmul) {
  using S = TypeParam;
  const double tolerance = rounded_tolerance<S>(kFloatTolerance);
  // The shapes of NnCpuMatmulTest: partial register and task tiles, several k blocks.
  for (const auto [N, C, OC, has_bias] :
       {MatmulShape{1, 1, 1, true}, MatmulShape{64, 64, 128, true}, MatmulShape{67, 33, 150, false},
        MatmulShape{130, 300, 17, true}, MatmulShape{5, 3, 7, false}}) {
    SCOPED_TRACE(testing::Message() << "N " << N << " C " << C << " OC " << OC);
    auto inp = random_storage<S>(N * C, 9), weight = random_storage<S>(OC * C, 10);
    auto bias = random_storage<S>(OC, 11), dout = random_storage<S>(N * OC, 12);
    const S* bias_ptr = has_bias ? bias.data() : nullptr;
    auto out = nan_storage<S>(N * OC), out_ref = nan_storage<S>(N * OC);
    cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias_ptr, N, C, OC);
    ref::matmul_forward(out_ref.data(), inp.data(), weight.data(), bias_ptr, N, C, OC);
    expect_close(out, out_ref, tolerance, "out");
    const std::vector<float> bias32 = widened(bias);
    std::vector<float> out32(N * OC);
    cpu::matmul_forward(out32.data(), widened(inp).data(), widened(weight).data(),
                        has_bias ? bias32.data() : nullptr, N, C, OC);
    expect_same_bits(out, rounded<S>(out32), "out vs fp32");

    auto dinp = nan_storage<S>(N * C), dinp_ref = nan_storage<S>(N * C);
    auto dweight = nan_vector(OC * C), dbias = nan_vector(OC);
    auto dweight_ref = nan_vector(OC * C), dbias_ref = nan_vector(OC);
    cpu::matmul_backward(dinp.data(), dweight.data(), has_bias ? dbias.data() : nullptr,
                         dout.data(), inp.data(), weight.data(), N, C, OC);
    ref::matmul_backward(dinp_ref.data(), dweight_ref.data(), has_bias ? dbias_ref.data() : nullptr,
                         dout.data(), inp.data(), weight.data(), N, C, OC);
    expect_close(dinp, dinp_ref, tolerance, "dinp");
    expect_close(dweight, dweight_ref, kFloatTolerance, "dweight");
    if (has_bias) expect_close(dbias, dbias_ref, kFloatTolerance, "dbias");
    std::vector<float> dinp32(N * C), dweight32(OC * C), dbias32(OC);
    cpu::matmul_backward(dinp32.data(), dweight32.data(), has_bias ? dbias32.data() : nullptr,
                         widened(dout).data(), widened(inp).data(), widened(weight).data(), N, C,
                         OC);
    expect_same_bits(dinp, rounded<S>(dinp32), "dinp vs fp32");
    expect_same_bits(dweight, dweight32, "dweight vs fp32");
    if (has_bias) expect_same_bits(dbias, dbias32, "dbias vs fp32");
  }
}

TYPED_TEST(NnCpu16Test, GeluAndAdd) {
  using S = TypeParam;
  const int n = 40000;  // more than one elementwise chunk
  const double tolerance = rounded_tolerance<S>(kFloatTolerance);
  auto inp = random_storage<S>(n, 13, -6, 6), dout = random_storage<S>(n, 14);
  auto out = nan_storage<S>(n), out_ref = nan_storage<S>(n);
  cpu::gelu_forward(out.data(), inp.data(), n);
  ref::gelu_forward(out_ref.data(), inp.data(), n);
  expect_close(out, out_ref, tolerance, "gelu out");
  auto dinp = nan_storage<S>(n), dinp_ref = nan_storage<S>(n);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), n);
  ref::gelu_backward(dinp_ref.data(), inp.data(), dout.data(), n);
  expect_close(dinp, dinp_ref, tolerance, "gelu dinp");
  auto sum = nan_storage<S>(n), sum_ref = nan_storage<S>(n);
  cpu::add(sum.data(), inp.data(), dout.data(), n);
  ref::add(sum_ref.data(), inp.data(), dout.data(), n);
  expect_close(sum, sum_ref, 0, "add");

  std::vector<float> out32(n), dinp32(n), sum32(n);
  cpu::gelu_forward(out32.data(), widened(inp).data(), n);
  cpu::gelu_backward(dinp32.data(), widened(inp).data(), widened(dout).data(), n);
  cpu::add(sum32.data(), widened(inp).data(), widened(dout).data(), n);
  expect_same_bits(out, rounded<S>(out32), "gelu out vs fp32");
  expect_same_bits(dinp, rounded<S>(dinp32), "gelu dinp vs fp32");
  expect_same_bits(sum, rounded<S>(sum32), "add vs fp32");
}

TYPED_TEST(NnCpu16Test, Attention) {
  using S = TypeParam;
  const int B = 2, T = 9, C = 24, NH = 3;
  const double tolerance = rounded_tolerance<S>(kFloatTolerance);
  auto qkv = random_storage<S>(B * T * 3 * C, 15, -2, 2);
  auto dout = random_storage<S>(B * T * C, 16);
  auto out = nan_storage<S>(B * T * C), att = nan_storage<S>(B * NH * T * T);
  auto out_ref = nan_storage<S>(B * T * C), att_ref = nan_storage<S>(B * NH * T * T);
  cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  ref::attention_forward(out_ref.data(), att_ref.data(), qkv.data(), B, T, C, NH);
  expect_close(out, out_ref, tolerance, "out");
  expect_close(att, att_ref, tolerance, "att");
  std::vector<float> out32(B * T * C), att32(B * NH * T * T);
  cpu::attention_forward(out32.data(), att32.data(), widened(qkv).data(), B, T, C, NH);
  // out is summed from the float probabilities, not from their rounded copies in att.
  expect_same_bits(out, rounded<S>(out32), "out vs fp32");
  expect_same_bits(att, rounded<S>(att32), "att vs fp32");

  auto dqkv = nan_storage<S>(B * T * 3 * C), dqkv_ref = nan_storage<S>(B * T * 3 * C);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  ref::attention_backward(dqkv_ref.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_close(dqkv, dqkv_ref, tolerance, "dqkv");
  std::vector<float> dqkv32(B * T * 3 * C);
  cpu::attention_backward(dqkv32.data(), widened(dout).data(), widened(qkv).data(),
                          widened(att).data(), B, T, C, NH);
  expect_same_bits(dqkv, rounded<S>(dqkv32), "dqkv vs fp32");
}

TYPED_TEST(NnCpu16Test, SoftmaxCrossEntropy) {
  using S = TypeParam;
  const int N = 13, V = 50;
  const double tolerance = rounded_tolerance<S>(kFloatTolerance);
  auto logits = random_storage<S>(N * V, 17, -5, 5);
  auto targets = random_tokens(N, V, 18);
  auto losses = nan_vector(N), losses_ref = nan_vector(N);
  auto probs = nan_storage<S>(N * V), probs_ref = nan_storage<S>(N * V);
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N,
                                     V);
  ref::softmax_cross_entropy_forward(losses_ref.data(), probs_ref.data(), logits.data(),
                                     targets.data(), N, V);
  expect_close(losses, losses_ref, kFloatTolerance, "losses");
  expect_close(probs, probs_ref, tolerance, "probs");
  std::vector<float> losses32(N), probs32(N * V);
  cpu::softmax_cross_entropy_forward(losses32.data(), probs32.data(), widened(logits).data(),
                                     targets.data(), N, V);
  // The losses come from the float probabilities, not from their rounded copies.
  expect_same_bits(losses, losses32, "losses vs fp32");
  expect_same_bits(probs, rounded<S>(probs32), "probs vs fp32");

  auto dlogits = nan_storage<S>(N * V), dlogits_ref = nan_storage<S>(N * V);
  cpu::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), 1.0F / N, N, V);
  ref::softmax_cross_entropy_backward(dlogits_ref.data(), probs.data(), targets.data(), 1.0F / N, N,
                                      V);
  expect_close(dlogits, dlogits_ref, 0, "dlogits");
  std::vector<float> dlogits32(N * V);
  cpu::softmax_cross_entropy_backward(dlogits32.data(), widened(probs).data(), targets.data(),
                                      1.0F / N, N, V);
  expect_same_bits(dlogits, rounded<S>(dlogits32), "dlogits vs fp32");
}

TYPED_TEST(NnCpu16Test, ReductionsAreDeterministicForAnyThreadCount) {
  using S = TypeParam;
  const std::vector<float> first = run_reductions<S>();
  expect_same_bits(first, run_reductions<S>(), "second run");
  tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
  expect_same_bits(first, run_reductions<S>(), "one thread");
}

// --- conversions ---------------------------------------------------------------------------------

// A float from its bits, and the bits of a float.
float f32(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

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
    const float in = f32(c.f32_bits);
    Bf16 out{0xABCD};
    cpu::cast(&out, &in, 1);
    EXPECT_EQ(out.bits, c.bf16) << std::hex << c.f32_bits;
    Bf16 out_ref{0xABCD};
    ref::cast(&out_ref, &in, 1);
    EXPECT_EQ(out_ref.bits, c.bf16) << std::hex << c.f32_bits;
  }
}

TEST(NnCpuTest, CastFromBf16IsExact) {
  std::vector<Bf16> all(65536);
  for (std::size_t i = 0; i < all.size(); i++) all[i].bits = static_cast<std::uint16_t>(i);
  auto out = nan_vector(all.size());
  cpu::cast(out.data(), all.data(), static_cast<std::int64_t>(all.size()));
  std::vector<Bf16> back(all.size());
  cpu::cast(back.data(), out.data(), static_cast<std::int64_t>(out.size()));
  for (std::size_t i = 0; i < all.size(); i++) {
    ASSERT_EQ(bits(out[i]), static_cast<std::uint32_t>(i) << 16) << i;
    // Round trip: every bf16 value, NaNs included (they are quiet already or get quieted).
    const bool nan = std::isnan(out[i]);
    ASSERT_EQ(back[i].bits, nan ? (all[i].bits | 0x0040) : all[i].bits) << i;
  }
}

TEST(NnCpuTest, CastToF16RoundsToNearestEven) {
  struct Case {
    std::uint32_t f32_bits;
    std::uint16_t f16;
  };
  const Case cases[] = {
      {0x3F800000, 0x3C00},  // 1.0: exact
      {0xC0000000, 0xC000},  // -2.0
      {0x3F801000, 0x3C00},  // 1 + 2^-11, a tie, even below: down
      {0x3F803000, 0x3C02},  // 1 + 3*2^-11, a tie, odd below: up to even
      {0x3F801001, 0x3C01},  // just above the tie: up
      {0x477FE000, 0x7BFF},  // 65504, fp16's max: exact
      {0x477FEFFF, 0x7BFF},  // just below 65520: stays finite
      {0x477FF000, 0x7C00},  // 65520, the tie above the max: to even, which is infinity
      {0x7F7FFFFF, 0x7C00},  // float's max overflows to infinity
      {0xFF7FFFFF, 0xFC00},  // and its negative to -infinity
      {0x7F800000, 0x7C00},  // +inf
      {0xFF800000, 0xFC00},  // -inf
      {0x7FC00000, 0x7E00},  // quiet NaN
      {0xFFC00000, 0xFE00},  // negative quiet NaN
      {0x7F800001, 0x7E00},  // signalling NaN with only low bits set: still NaN, not inf
      {0x7FFFFFFF, 0x7FFF},  // NaN with a full payload: its top bits kept
      {0x38800000, 0x0400},  // 2^-14, the smallest normal
      {0x387FC000, 0x03FF},  // 1023 * 2^-24, the largest subnormal
      {0x387FE000, 0x0400},  // 1023.5 * 2^-24, a tie: up to even, the smallest normal
      {0x33800000, 0x0001},  // 2^-24, the smallest subnormal
      {0x33C00000, 0x0002},  // 1.5 * 2^-24, a tie: up to even
      {0x34200000, 0x0002},  // 2.5 * 2^-24, a tie: down to even
      {0x33000000, 0x0000},  // 2^-25, a tie: down to even zero
      {0x33000001, 0x0001},  // just above it: up
      {0xB3000001, 0x8001},  // negative: the same magnitude
      {0x00000001, 0x0000},  // float's smallest subnormal: zero
      {0x80000001, 0x8000},  // negative: -0
      {0x80000000, 0x8000},  // -0
  };
  for (const Case& c : cases) {
    const float in = f32(c.f32_bits);
    F16 out{0xABCD};
    cpu::cast(&out, &in, 1);
    EXPECT_EQ(out.bits, c.f16) << std::hex << c.f32_bits;
    F16 out_ref{0xABCD};
    ref::cast(&out_ref, &in, 1);
    EXPECT_EQ(out_ref.bits, c.f16) << std::hex << c.f32_bits;
  }
}

// The value of fp16 bits h, from the format's definition, in double: an oracle for f16_to_f32
// that shares no code with it.
double f16_value(std::uint16_t h) {
  const int exponent = (h >> 10) & 0x1F;
  const int fraction = h & 0x3FF;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == 0x1F) {
    return fraction == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(fraction, -24);
  return sign * std::ldexp(1024 + fraction, exponent - 25);
}

TEST(NnCpuTest, CastFromF16IsExact) {
  std::vector<F16> all(65536);
  for (std::size_t i = 0; i < all.size(); i++) all[i].bits = static_cast<std::uint16_t>(i);
  auto out = nan_vector(all.size());
  cpu::cast(out.data(), all.data(), static_cast<std::int64_t>(all.size()));
  std::vector<F16> back(all.size());
  cpu::cast(back.data(), out.data(), static_cast<std::int64_t>(out.size()));
  for (std::size_t i = 0; i < all.size(); i++) {
    const double want = f16_value(all[i].bits);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(out[i])) << i;
      ASSERT_EQ(bits(out[i]) >> 31, i >> 15) << i;         // the sign survives
      ASSERT_EQ(back[i].bits, all[i].bits | 0x0200) << i;  // quiet, with its payload
    } else {
      ASSERT_EQ(double{out[i]}, want) << i;
      ASSERT_EQ(std::signbit(out[i]), (i & 0x8000) != 0) << i;  // -0 included
      ASSERT_EQ(back[i].bits, all[i].bits) << i;
    }
  }
}

// f32_to_f16 against rounding to nearest even done in double over the table of every finite
// fp16 value, on values spread over fp16's range, past it and below its subnormals.
TEST(NnCpuTest, CastToF16MatchesAnOracle) {
  std::vector<double> magnitudes;  // magnitudes[h] for h = 0 .. 0x7BFF, then 65536 for infinity
  for (std::uint32_t h = 0; h <= 0x7BFF; h++) {
    magnitudes.push_back(f16_value(static_cast<std::uint16_t>(h)));
  }
  magnitudes.push_back(65536.0);  // the next step after the max, where rounding up overflows
  auto oracle = [&](float x) -> std::uint16_t {
    const double a = std::abs(double{x});
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (a >= 65536.0) return sign | 0x7C00;
    const auto above = std::upper_bound(magnitudes.begin(), magnitudes.end(), a);
    auto h = static_cast<std::uint16_t>(above - magnitudes.begin() - 1);  // magnitudes[h] <= a
    const double down = a - magnitudes[h];
    const double up = magnitudes[h + 1] - a;
    if (up < down || (up == down && (h & 1) != 0)) h++;
    return static_cast<std::uint16_t>(sign | h);  // h == 0x7C00 when rounded past the max
  };
  std::vector<float> values;
  std::mt19937 rng(80);
  for (const auto& [lo, hi] : {std::pair{-70000.0F, 70000.0F}, std::pair{-2.0F, 2.0F},
                               std::pair{-0x1p-13F, 0x1p-13F}, std::pair{-0x1p-23F, 0x1p-23F}}) {
    std::uniform_real_distribution<float> dist(lo, hi);
    for (int i = 0; i < 50000; i++) values.push_back(dist(rng));
  }
  for (int i = 0; i < 50000; i++) {
    const float x = f32(static_cast<std::uint32_t>(rng()));
    if (!std::isnan(x)) values.push_back(x);
  }
  for (const float x : values) {
    ASSERT_EQ(f32_to_f16(x), oracle(x)) << std::hexfloat << x;
  }
}

// Every pair of storage types: widening exact, narrowing rounded once, the same type a copy.
template <Storage To, Storage From>
void check_cast(const std::vector<float>& values) {
  const std::vector<From> in = rounded<From>(values);
  std::vector<To> out(in.size()), out_ref(in.size());
  cpu::cast(out.data(), in.data(), static_cast<std::int64_t>(in.size()));
  ref::cast(out_ref.data(), in.data(), static_cast<std::int64_t>(in.size()));
  std::vector<To> want(in.size());
  for (std::size_t i = 0; i < in.size(); i++) {
    if constexpr (std::same_as<To, From>) {
      want[i] = in[i];
    } else {
      want[i] = from_float<To>(to_float(in[i]));
    }
  }
  const std::string what = std::string(float_type_name(float_type_of<From>())) + " to " +
                           std::string(float_type_name(float_type_of<To>()));
  expect_same_bits(out, want, what);
  expect_same_bits(out_ref, want, what + " (reference)");
}

template <Storage To>
void check_casts_to(const std::vector<float>& values) {
  check_cast<To, float>(values);
  check_cast<To, Bf16>(values);
  check_cast<To, F16>(values);
}

TEST(NnCpuTest, CastBetweenEveryPairOfStorageTypes) {
  std::vector<float> values = random_vector<float>(40000, 81, -3e5F, 3e5F);  // fp16 overflows
  const auto small = random_vector<float>(1000, 82, -1e-6F, 1e-6F);          // fp16 subnormals
  values.insert(values.end(), small.begin(), small.end());
  // A signalling NaN, which a same-type cast copies and any other cast quiets.
  values.push_back(f32(0x7F800001));
  check_casts_to<float>(values);
  check_casts_to<Bf16>(values);
  check_casts_to<F16>(values);
  // Between the 16-bit types the value goes through float once: bf16 1 + 2^-7 is an fp16 value,
  // and bf16 65536 is past fp16's range.
  const std::vector<Bf16> bf16{{0x3F81}, {0x4780}};
  std::vector<F16> f16(2);
  cpu::cast(f16.data(), bf16.data(), 2);
  EXPECT_EQ(f16[0].bits, 0x3C08);
  EXPECT_EQ(f16[1].bits, 0x7C00);
  // A signalling-NaN pattern survives a same-type cast untouched.
  const std::vector<F16> snan{{0x7C01}};
  std::vector<F16> copy(1);
  cpu::cast(copy.data(), snan.data(), 1);
  EXPECT_EQ(copy[0].bits, 0x7C01);
}

TYPED_TEST(NnCpu16Test, AccumulateAddsInFloatAndRoundsOnce) {
  using S = TypeParam;
  const int n = 40000;  // more than one elementwise chunk
  const auto start = random_storage<S>(n, 83);
  const auto add = random_vector<float>(n, 84, -1e-2F, 1e-2F);
  std::vector<S> acc = start, acc_ref = start;
  cpu::accumulate(acc.data(), add.data(), n, /*assign=*/false);
  ref::accumulate(acc_ref.data(), add.data(), n, /*assign=*/false);
  std::vector<S> want(n);
  for (int i = 0; i < n; i++) want[i] = from_float<S>(to_float(start[i]) + add[i]);
  expect_same_bits(acc, want, "accumulate");
  expect_same_bits(acc_ref, want, "accumulate (reference)");
  cpu::accumulate(acc.data(), add.data(), n, /*assign=*/true);
  expect_same_bits(acc, rounded<S>(add), "assign");
  // A sum below half an ulp of the value it is added to is lost in one step, as the rounding says.
  S one = from_float<S>(1.0F);
  const float tiny = 0x1p-12F;
  cpu::accumulate(&one, &tiny, 1, /*assign=*/false);
  EXPECT_EQ(to_float(one), 1.0F);
}

// ZeRO's reduction (engine/zero/): chunk after chunk in fp32, one division, one rounding.
TYPED_TEST(NnCpu16Test, FoldChunksSumsInChunkOrderAndRoundsOnce) {
  using S = TypeParam;
  const int n = 40000;  // more than one elementwise chunk
  const int chunks = 3;
  const std::int64_t stride = n + 17;
  const auto in = random_storage<S>(static_cast<int>(stride) * chunks, 85);
  std::vector<S> out(n);
  cpu::fold_chunks(out.data(), in.data(), chunks, stride, n, 4.0F);
  std::vector<S> want(n);
  for (int i = 0; i < n; i++) {
    float sum = to_float(in[i]);
    for (int c = 1; c < chunks; c++) sum += to_float(in[c * stride + i]);
    want[i] = from_float<S>(sum / 4.0F);
  }
  expect_same_bits(out, want, "fold_chunks");
  // One chunk, divisor 1: a copy.
  cpu::fold_chunks(out.data(), in.data(), 1, stride, n, 1.0F);
  expect_same_bits(out, std::vector<S>(in.begin(), in.begin() + n), "fold_chunks as a copy");
}

TEST(NnCpuTest, FloatTypeSizesAndNames) {
  EXPECT_EQ(float_bytes(FloatType::kF32), 4u);
  EXPECT_EQ(float_bytes(FloatType::kBF16), 2u);
  EXPECT_EQ(float_bytes(FloatType::kF16), 2u);
  EXPECT_EQ(float_type_name(FloatType::kF32), "f32");
  EXPECT_EQ(float_type_name(FloatType::kBF16), "bf16");
  EXPECT_EQ(float_type_name(FloatType::kF16), "f16");
}

// --- the dispatching API -------------------------------------------------------------------------

TEST(NnDispatchTest, CpuContextRunsTheCpuKernels) {
  const LaunchContext ctx{DeviceKind::kCpu, nullptr};
  const int N = 6, C = 5, OC = 7;
  auto inp = random_vector<float>(N * C, 47), weight = random_vector<float>(OC * C, 48);
  auto out = nan_vector(N * OC), out_cpu = nan_vector(N * OC);
  matmul_forward(ctx, FloatType::kF32, out.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  cpu::matmul_forward(out_cpu.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  expect_same_bits(out, out_cpu, "matmul_forward");
  auto sum = nan_vector(1);
  mean(ctx, FloatType::kF32, sum.data(), inp.data(), N * C);
  EXPECT_FALSE(std::isnan(sum[0]));
}

TEST(NnDispatchTest, FloatTypeSelectsTheStorageType) {
  const LaunchContext ctx{DeviceKind::kCpu, nullptr};
  const int N = 6, C = 5, OC = 7;
  auto inp = random_storage<Bf16>(N * C, 49), weight = random_storage<Bf16>(OC * C, 50);
  auto out = nan_storage<Bf16>(N * OC), out_cpu = nan_storage<Bf16>(N * OC);
  matmul_forward(ctx, FloatType::kBF16, out.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  cpu::matmul_forward(out_cpu.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  expect_same_bits(out, out_cpu, "matmul_forward in bf16");
  const auto f16 = random_storage<F16>(N * C, 51);
  std::vector<float> wide(N * C);
  cast(ctx, FloatType::kF32, wide.data(), FloatType::kF16, f16.data(), N * C);
  expect_same_bits(wide, widened(f16), "cast from f16");
}

}  // namespace
}  // namespace ebb::nn
