// Tests of the cuda nn kernels (kernels/cuda/nn_cuda*.cu), called through the dispatching
// ebb::nn API inside Stream::launch on a cuda Device:
// - every kernel against the cpu backend (kernels/cpu/nn_cpu.h) on seeded random inputs, by
//   normwise relative error (max |cuda - cpu| / max |cpu|), with outputs pre-filled with NaN so
//   an element left unwritten fails;
// - the same kernels in bf16 and fp16 storage against the cpu backend's 16-bit kernels, to the
//   fp32 tolerance plus one 16-bit ulp (rounded_tolerance: both compute in float and round once);
// - the casts between every pair of storage types and accumulate bit for bit against the cpu
//   backend (so the device conversions against kernels/nn_scalar.h's), and against
//   hand-computed bits;
// - determinism and overwrite: each kernel with a reduction (every backward, matmul, attention,
//   softmax, mean) is run twice into the same output buffers, and the two results must have the
//   same bits (an accumulating kernel would double them);
// - the backward kernels leave their inputs unchanged.
// Every test skips itself where no GPU is visible, so the binary runs everywhere. matmul needs
// libcublas.so.13 loadable at run time (LD_LIBRARY_PATH).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu/nn_cpu.h"
#include "kernels/device.h"
#include "kernels/nn.h"
#include "tests/kernels/cuda_kernel_test.h"
#include "tests/kernels/nn_test_support.h"

namespace ebb::nn {
namespace {

// Float rounding of one or a few operations per element (cuda's tanhf, expf and FMA
// contraction differ from the cpu's by an ulp or two).
constexpr double kElementwiseTolerance = 1e-5;
// Sums of up to a few thousand terms in different orders (cuBLAS blocking, tree reductions).
constexpr double kReductionTolerance = 1e-4;

constexpr FloatType kF32 = FloatType::kF32;

using test_support::check;
using test_support::value;

class NnCudaTest : public test_support::CudaKernelTest {};

// --- embedding ----------------------------------------------------------------------------------

TEST_F(NnCudaTest, EmbeddingMatchesCpuAndBackwardIsDeterministic) {
  // A small vocabulary so that tokens repeat and dwte rows sum several positions; some rows are
  // never hit and must read 0.
  const int B = 3, T = 11, C = 70, V = 13;
  const auto tokens = random_tokens(std::size_t(B) * T, V - 2, 1);
  const auto wte = random_vector(std::size_t(V) * C, 2);
  const auto wpe = random_vector(std::size_t(T) * C, 3);
  const auto dout = random_vector(std::size_t(B) * T * C, 4);

  std::vector<float> out(std::size_t(B) * T * C), dwte(std::size_t(V) * C),
      dwpe(std::size_t(T) * C);
  cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V);

  const std::int32_t* d_tokens = upload(tokens);
  const float* d_wte = upload(wte);
  const float* d_wpe = upload(wpe);
  const float* d_dout = upload(dout);
  float* d_out = allocate<float>(out.size());
  float* d_dwte = allocate<float>(dwte.size());
  float* d_dwpe = allocate<float>(dwpe.size());
  run([&](const LaunchContext& ctx) {
    embedding_forward(ctx, kF32, d_out, d_tokens, d_wte, d_wpe, B, T, C, V);
  });
  expect_close(download(d_out, out.size()), out, kElementwiseTolerance, "embedding out");

  auto backward = [&] {
    run([&](const LaunchContext& ctx) {
      embedding_backward(ctx, kF32, d_dwte, d_dwpe, d_dout, d_tokens, B, T, C, V);
    });
    return std::make_pair(download(d_dwte, dwte.size()), download(d_dwpe, dwpe.size()));
  };
  const auto first = backward();
  expect_close(first.first, dwte, kElementwiseTolerance, "embedding dwte");
  expect_close(first.second, dwpe, kElementwiseTolerance, "embedding dwpe");
  const auto second = backward();
  expect_same_bits(first.first, second.first, "embedding dwte, run twice");
  expect_same_bits(first.second, second.second, "embedding dwpe, run twice");
  expect_same_bits(download(d_dout, dout.size()), dout, "embedding backward left dout");
}

// --- layernorm ----------------------------------------------------------------------------------

TEST_F(NnCudaTest, LayernormMatchesCpuAndBackwardIsDeterministic) {
  const int N = 37, C = 100;  // C not a multiple of the warp; N more rows than row lanes
  const auto inp = random_vector(std::size_t(N) * C, 10, -2, 3);
  const auto weight = random_vector(C, 11);
  const auto bias = random_vector(C, 12);
  const auto dout = random_vector(std::size_t(N) * C, 13);

  std::vector<float> out(inp.size()), mean(N), rstd(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
  std::vector<float> dinp(inp.size()), dweight(C), dbias(C);
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);

  const float* d_inp = upload(inp);
  const float* d_weight = upload(weight);
  const float* d_bias = upload(bias);
  const float* d_dout = upload(dout);
  float* d_out = allocate<float>(out.size());
  float* d_mean = allocate<float>(N);
  float* d_rstd = allocate<float>(N);
  run([&](const LaunchContext& ctx) {
    layernorm_forward(ctx, kF32, d_out, d_mean, d_rstd, d_inp, d_weight, d_bias, N, C);
  });
  expect_close(download(d_out, out.size()), out, kReductionTolerance, "layernorm out");
  expect_close(download(d_mean, N), mean, kReductionTolerance, "layernorm mean");
  expect_close(download(d_rstd, N), rstd, kReductionTolerance, "layernorm rstd");

  // The backward gets the cpu's mean and rstd, so it is compared on identical inputs.
  const float* d_cpu_mean = upload(mean);
  const float* d_cpu_rstd = upload(rstd);
  float* d_dinp = allocate<float>(dinp.size());
  float* d_dweight = allocate<float>(C);
  float* d_dbias = allocate<float>(C);
  auto backward = [&] {
    run([&](const LaunchContext& ctx) {
      layernorm_backward(ctx, kF32, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, d_cpu_mean,
                         d_cpu_rstd, N, C);
    });
    return std::vector<std::vector<float>>{download(d_dinp, dinp.size()), download(d_dweight, C),
                                           download(d_dbias, C)};
  };
  const auto first = backward();
  expect_close(first[0], dinp, kReductionTolerance, "layernorm dinp");
  expect_close(first[1], dweight, kReductionTolerance, "layernorm dweight");
  expect_close(first[2], dbias, kReductionTolerance, "layernorm dbias");
  const auto second = backward();
  for (int i = 0; i < 3; i++) {
    expect_same_bits(first[i], second[i], "layernorm backward output " + std::to_string(i));
  }
  expect_same_bits(download(d_inp, inp.size()), inp, "layernorm backward left inp");
}

// --- matmul -------------------------------------------------------------------------------------

struct MatmulShape {
  int N, C, OC;
  bool bias;
};

class NnCudaMatmulTest : public NnCudaTest, public ::testing::WithParamInterface<MatmulShape> {};

TEST_P(NnCudaMatmulTest, MatchesCpuAndIsDeterministic) {
  const MatmulShape shape = GetParam();
  const int N = shape.N, C = shape.C, OC = shape.OC;
  const bool has_bias = shape.bias;
  const auto inp = random_vector(std::size_t(N) * C, 20);
  const auto weight = random_vector(std::size_t(OC) * C, 21);
  const auto bias = random_vector(OC, 22);
  const auto dout = random_vector(std::size_t(N) * OC, 23);
  const float* bias_or_null = has_bias ? bias.data() : nullptr;

  std::vector<float> out(std::size_t(N) * OC), dinp(inp.size()), dweight(weight.size()), dbias(OC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias_or_null, N, C, OC);
  cpu::matmul_backward(dinp.data(), dweight.data(), has_bias ? dbias.data() : nullptr, dout.data(),
                       inp.data(), weight.data(), N, C, OC);

  const float* d_inp = upload(inp);
  const float* d_weight = upload(weight);
  const float* d_bias = has_bias ? upload(bias) : nullptr;
  const float* d_dout = upload(dout);
  float* d_out = allocate<float>(out.size());
  float* d_dinp = allocate<float>(dinp.size());
  float* d_dweight = allocate<float>(dweight.size());
  float* d_dbias = has_bias ? allocate<float>(OC) : nullptr;

  auto forward = [&] {
    run([&](const LaunchContext& ctx) {
      matmul_forward(ctx, kF32, d_out, d_inp, d_weight, d_bias, N, C, OC);
    });
    return download(d_out, out.size());
  };
  auto backward = [&] {
    run([&](const LaunchContext& ctx) {
      matmul_backward(ctx, kF32, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, N, C, OC);
    });
    std::vector<std::vector<float>> result{download(d_dinp, dinp.size()),
                                           download(d_dweight, dweight.size())};
    if (has_bias) result.push_back(download(d_dbias, OC));
    return result;
  };
  const auto out1 = forward();
  expect_close(out1, out, kReductionTolerance, "matmul out");
  expect_same_bits(out1, forward(), "matmul out, run twice");

  const auto first = backward();
  expect_close(first[0], dinp, kReductionTolerance, "matmul dinp");
  expect_close(first[1], dweight, kReductionTolerance, "matmul dweight");
  if (has_bias) expect_close(first[2], dbias, kReductionTolerance, "matmul dbias");
  const auto second = backward();
  for (std::size_t i = 0; i < first.size(); i++) {
    expect_same_bits(first[i], second[i], "matmul backward output " + std::to_string(i));
  }
  expect_same_bits(download(d_dout, dout.size()), dout, "matmul backward left dout");
}

INSTANTIATE_TEST_SUITE_P(Shapes, NnCudaMatmulTest,
                         ::testing::Values(MatmulShape{34, 72, 104, true},
                                           MatmulShape{64, 128, 96, false},
                                           MatmulShape{1, 5, 3, true},
                                           MatmulShape{256, 384, 1152, true}));

// --- gelu, add
// ------------------------------------------------------------------------------------

TEST_F(NnCudaTest, GeluAndAddMatchCpu) {
  const std::int64_t n = 10007;
  const auto inp = random_vector(n, 30, -6, 6);
  const auto other = random_vector(n, 31);
  const auto dout = random_vector(n, 32);
  std::vector<float> out(n), dinp(n), sum(n);
  cpu::gelu_forward(out.data(), inp.data(), n);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), n);
  cpu::add(sum.data(), inp.data(), other.data(), n);

  const auto [d_inp, d_other, d_dout] = upload_each(inp, other, dout);
  const auto [d_out, d_dinp, d_sum] = allocate_each<float, 3>(n);
  run([&](const LaunchContext& ctx) {
    gelu_forward(ctx, kF32, d_out, d_inp, n);
    gelu_backward(ctx, kF32, d_dinp, d_inp, d_dout, n);
    add(ctx, kF32, d_sum, d_inp, d_other, n);
  });
  expect_close(download(d_out, n), out, kElementwiseTolerance, "gelu out");
  expect_close(download(d_dinp, n), dinp, kElementwiseTolerance, "gelu dinp");
  expect_close(download(d_sum, n), sum, kElementwiseTolerance, "add");
}

// --- attention ----------------------------------------------------------------------------------

struct AttentionShape {
  int B, T, C, NH;
};

class NnCudaAttentionTest : public NnCudaTest,
                            public ::testing::WithParamInterface<AttentionShape> {};

TEST_P(NnCudaAttentionTest, MatchesCpuAndIsDeterministic) {
  const AttentionShape shape = GetParam();
  const int B = shape.B, T = shape.T, C = shape.C, NH = shape.NH;
  const auto qkv = random_vector(std::size_t(B) * T * 3 * C, 40);
  const auto dout = random_vector(std::size_t(B) * T * C, 41);
  std::vector<float> out(std::size_t(B) * T * C), att(std::size_t(B) * NH * T * T);
  std::vector<float> dqkv(qkv.size());
  cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);

  const float* d_qkv = upload(qkv);
  const float* d_dout = upload(dout);
  float* d_out = allocate<float>(out.size());
  float* d_att = allocate<float>(att.size());
  auto forward = [&] {
    run([&](const LaunchContext& ctx) {
      attention_forward(ctx, kF32, d_out, d_att, d_qkv, B, T, C, NH);
    });
    return std::make_pair(download(d_out, out.size()), download(d_att, att.size()));
  };
  const auto first = forward();
  expect_close(first.first, out, kReductionTolerance, "attention out");
  expect_close(first.second, att, kReductionTolerance, "attention att");
  for (std::int64_t row = 0; row < std::int64_t{B} * NH * T; row++) {
    const int t = static_cast<int>(row % T);
    for (int t2 = t + 1; t2 < T; t2++) {
      ASSERT_EQ(first.second[row * T + t2], 0.0F) << "att above the diagonal, row " << row;
    }
  }
  const auto second = forward();
  expect_same_bits(first.first, second.first, "attention out, run twice");
  expect_same_bits(first.second, second.second, "attention att, run twice");

  // The backward gets the cpu's att, so it is compared on identical inputs.
  const float* d_cpu_att = upload(att);
  float* d_dqkv = allocate<float>(dqkv.size());
  auto backward = [&] {
    run([&](const LaunchContext& ctx) {
      attention_backward(ctx, kF32, d_dqkv, d_dout, d_qkv, d_cpu_att, B, T, C, NH);
    });
    return download(d_dqkv, dqkv.size());
  };
  const auto dqkv1 = backward();
  expect_close(dqkv1, dqkv, kReductionTolerance, "attention dqkv");
  expect_same_bits(dqkv1, backward(), "attention dqkv, run twice");
  expect_same_bits(download(d_qkv, qkv.size()), qkv, "attention backward left qkv");
  expect_same_bits(download(d_cpu_att, att.size()), att, "attention backward left att");
}

// Head sizes below, at and above one pass of the backward's dimension chunk (128); T past one
// warp of keys.
INSTANTIATE_TEST_SUITE_P(Shapes, NnCudaAttentionTest,
                         ::testing::Values(AttentionShape{2, 40, 96, 2},
                                           AttentionShape{1, 33, 64, 4},
                                           AttentionShape{2, 17, 320, 2},
                                           AttentionShape{1, 70, 256, 2}));

// --- softmax + cross-entropy, mean
// ----------------------------------------------------------------

TEST_F(NnCudaTest, SoftmaxCrossEntropyAndMeanMatchCpuAndAreDeterministic) {
  const int N = 9, V = 3001;  // V not a multiple of the block
  const auto logits = random_vector(std::size_t(N) * V, 50, -4, 4);
  const auto targets = random_tokens(N, V, 51);
  const float dloss = 1.0F / N;
  std::vector<float> losses(N), probs(logits.size()), dlogits(logits.size());
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N,
                                     V);
  cpu::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V);
  const auto many = random_vector(5003, 52, 0, 10);
  float avg = 0;
  cpu::mean(&avg, many.data(), static_cast<std::int64_t>(many.size()));

  const float* d_logits = upload(logits);
  const std::int32_t* d_targets = upload(targets);
  const float* d_cpu_probs = upload(probs);
  const float* d_many = upload(many);
  float* d_losses = allocate<float>(N);
  float* d_probs = allocate<float>(probs.size());
  float* d_dlogits = allocate<float>(dlogits.size());
  float* d_avg = allocate<float>(1);
  auto all = [&] {
    run([&](const LaunchContext& ctx) {
      softmax_cross_entropy_forward(ctx, kF32, d_losses, d_probs, d_logits, d_targets, N, V);
      softmax_cross_entropy_backward(ctx, kF32, d_dlogits, d_cpu_probs, d_targets, dloss, N, V);
      mean(ctx, kF32, d_avg, d_many, static_cast<std::int64_t>(many.size()));
    });
    return std::vector<std::vector<float>>{download(d_losses, N), download(d_probs, probs.size()),
                                           download(d_dlogits, dlogits.size()), download(d_avg, 1)};
  };
  const auto first = all();
  expect_close(first[0], losses, kReductionTolerance, "cross-entropy losses");
  expect_close(first[1], probs, kReductionTolerance, "softmax probs");
  expect_close(first[2], dlogits, kElementwiseTolerance, "cross-entropy dlogits");
  expect_close(first[3], {avg}, kReductionTolerance, "mean");
  const auto second = all();
  for (int i = 0; i < 4; i++) {
    expect_same_bits(first[i], second[i], "softmax/cross-entropy/mean output " + std::to_string(i));
  }
}

// --- adamw
// ----------------------------------------------------------------------------------------

TEST_F(NnCudaTest, AdamwMatchesCpu) {
  const std::int64_t n = 10007;
  const auto param = random_vector(n, 60);
  const auto grad = random_vector(n, 61);
  const auto m = random_vector(n, 62, -0.1F, 0.1F);
  const auto v = random_vector(n, 63, 0, 0.01F);
  AdamWConfig config;
  config.learning_rate = 1e-3F;
  config.weight_decay = 0.1F;
  const int step = 3;
  std::vector<float> param_out(n), m_out(n), v_out(n);
  cpu::adamw(param_out.data(), m_out.data(), v_out.data(), param.data(), grad.data(), m.data(),
             v.data(), n, config, step);

  const auto [d_param, d_grad, d_m, d_v] = upload_each(param, grad, m, v);
  const auto [d_param_out, d_m_out, d_v_out] = allocate_each<float, 3>(n);
  run([&](const LaunchContext& ctx) {
    adamw(ctx, d_param_out, d_m_out, d_v_out, d_param, d_grad, d_m, d_v, n, config, step);
  });
  expect_close(download(d_param_out, n), param_out, kElementwiseTolerance, "adamw param");
  expect_close(download(d_m_out, n), m_out, kElementwiseTolerance, "adamw m");
  expect_close(download(d_v_out, n), v_out, kElementwiseTolerance, "adamw v");
  // The update itself (param_out - param) is tiny next to param; check it on its own scale.
  std::vector<float> update(n), cpu_update(n);
  const auto cuda_param_out = download(d_param_out, n);
  for (std::int64_t i = 0; i < n; i++) {
    update[i] = cuda_param_out[i] - param[i];
    cpu_update[i] = param_out[i] - param[i];
  }
  expect_close(update, cpu_update, 1e-3, "adamw update");
}

// --- casts, accumulate
// ---------------------------------------------------------------------------

float from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Floats of every kind: hand-picked edge cases for both 16-bit formats (ties, overflow,
// subnormals, NaNs), then random bit patterns, then values in fp16's range.
std::vector<float> cast_inputs() {
  const std::uint32_t edge_cases[] = {
      0x00000000U, 0x80000000U, 0x3f800000U, 0x3f808000U, 0x3f818000U, 0x3f808001U, 0x3f807fffU,
      0x7f7fffffU, 0x7f800000U, 0xff800000U, 0x7fc00000U, 0xffc00000U, 0x7f800001U, 0x7fffffffU,
      0x00000001U, 0x007fffffU, 0x3f801000U, 0x3f803000U, 0x477fe000U, 0x477fefffU, 0x477ff000U,
      0x38800000U, 0x387fc000U, 0x387fe000U, 0x33800000U, 0x33c00000U, 0x33000000U, 0x33000001U,
  };
  std::vector<float> in;
  for (const std::uint32_t bits : edge_cases) in.push_back(from_bits(bits));
  std::mt19937 rng(70);
  for (int i = 0; i < 100000; i++) in.push_back(from_bits(static_cast<std::uint32_t>(rng())));
  const auto in_range = random_vector(100000, 71, -70000.0F, 70000.0F);
  in.insert(in.end(), in_range.begin(), in_range.end());
  const auto small = random_vector(10000, 72, -1e-4F, 1e-4F);  // fp16 subnormals
  in.insert(in.end(), small.begin(), small.end());
  return in;
}

TEST_F(NnCudaTest, CastsMatchCpuBitForBit) {
  // Hand-checked bf16 cases first: {fp32 bits, bf16 bits}.
  const std::vector<std::pair<std::uint32_t, std::uint16_t>> cases = {
      {0x00000000U, 0x0000U},  // +0
      {0x80000000U, 0x8000U},  // -0
      {0x3f800000U, 0x3f80U},  // 1
      {0x3f808000U, 0x3f80U},  // tie, even below: down
      {0x3f818000U, 0x3f82U},  // tie, odd below: up
      {0x3f808001U, 0x3f81U},  // past the tie: up
      {0x3f807fffU, 0x3f80U},  // short of the tie: down
      {0x7f7fffffU, 0x7f80U},  // largest float rounds to infinity
      {0x7f800000U, 0x7f80U},  // +inf
      {0xff800000U, 0xff80U},  // -inf
      {0x7fc00000U, 0x7fc0U},  // quiet NaN
      {0xffc00000U, 0xffc0U},  // negative quiet NaN
      {0x7f800001U, 0x7fc0U},  // signalling NaN, payload below bf16: stays a NaN
      {0x7fffffffU, 0x7fffU},  // NaN whose rounding would carry out
      {0x00000001U, 0x0000U},  // smallest denormal
      {0x007fffffU, 0x0080U},  // largest denormal rounds up to the smallest normal
  };
  const std::vector<float> in = cast_inputs();
  const auto n = static_cast<std::int64_t>(in.size());
  std::vector<Bf16> cpu_bf16(n);
  std::vector<F16> cpu_f16(n);
  cpu::cast(cpu_bf16.data(), in.data(), n);
  cpu::cast(cpu_f16.data(), in.data(), n);

  // Every 16-bit pattern, widened and cast to the other 16-bit type.
  std::vector<Bf16> every_bf16(1 << 16);
  std::vector<F16> every_f16(1 << 16);
  for (std::uint32_t i = 0; i < every_bf16.size(); i++) {
    every_bf16[i].bits = static_cast<std::uint16_t>(i);
    every_f16[i].bits = static_cast<std::uint16_t>(i);
  }
  const auto m = static_cast<std::int64_t>(every_bf16.size());
  std::vector<float> cpu_from_bf16(m), cpu_from_f16(m);
  std::vector<F16> cpu_bf16_to_f16(m);
  std::vector<Bf16> cpu_f16_to_bf16(m);
  cpu::cast(cpu_from_bf16.data(), every_bf16.data(), m);
  cpu::cast(cpu_from_f16.data(), every_f16.data(), m);
  cpu::cast(cpu_bf16_to_f16.data(), every_bf16.data(), m);
  cpu::cast(cpu_f16_to_bf16.data(), every_f16.data(), m);

  const float* d_in = upload(in);
  const Bf16* d_every_bf16 = upload(every_bf16);
  const F16* d_every_f16 = upload(every_f16);
  Bf16* d_bf16 = allocate<Bf16>(n);
  F16* d_f16 = allocate<F16>(n);
  const auto [d_from_bf16, d_from_f16] = allocate_each<float, 2>(m);
  F16* d_bf16_to_f16 = allocate<F16>(m);
  Bf16* d_f16_to_bf16 = allocate<Bf16>(m);
  F16* d_f16_copy = allocate<F16>(m);
  run([&](const LaunchContext& ctx) {
    cast(ctx, FloatType::kBF16, d_bf16, kF32, d_in, n);
    cast(ctx, FloatType::kF16, d_f16, kF32, d_in, n);
    cast(ctx, kF32, d_from_bf16, FloatType::kBF16, d_every_bf16, m);
    cast(ctx, kF32, d_from_f16, FloatType::kF16, d_every_f16, m);
    cast(ctx, FloatType::kF16, d_bf16_to_f16, FloatType::kBF16, d_every_bf16, m);
    cast(ctx, FloatType::kBF16, d_f16_to_bf16, FloatType::kF16, d_every_f16, m);
    cast(ctx, FloatType::kF16, d_f16_copy, FloatType::kF16, d_every_f16, m);
  });
  const auto bf16 = download(d_bf16, n);
  for (std::size_t i = 0; i < cases.size(); i++) {
    EXPECT_EQ(bf16[i].bits, cases[i].second) << "fp32 bits 0x" << std::hex << cases[i].first;
  }
  expect_same_bits(bf16, cpu_bf16, "cast f32 to bf16 vs cpu");
  expect_same_bits(download(d_f16, n), cpu_f16, "cast f32 to f16 vs cpu");
  const auto from_bf16 = download(d_from_bf16, m);
  expect_same_bits(from_bf16, cpu_from_bf16, "cast bf16 to f32 vs cpu");
  expect_same_bits(download(d_from_f16, m), cpu_from_f16, "cast f16 to f32 vs cpu");
  expect_same_bits(download(d_bf16_to_f16, m), cpu_bf16_to_f16, "cast bf16 to f16 vs cpu");
  expect_same_bits(download(d_f16_to_bf16, m), cpu_f16_to_bf16, "cast f16 to bf16 vs cpu");
  expect_same_bits(download(d_f16_copy, m), every_f16, "cast f16 to f16 (a copy)");
  for (std::uint32_t i = 0; i < every_bf16.size(); i++) {
    std::uint32_t bits;
    std::memcpy(&bits, &from_bf16[i], sizeof bits);
    ASSERT_EQ(bits, i << 16) << "bf16 0x" << std::hex << i;
  }
}

template <typename S>
class NnCuda16Test : public NnCudaTest {};
using Storage16Types = ::testing::Types<Bf16, F16>;
TYPED_TEST_SUITE(NnCuda16Test, Storage16Types);

TYPED_TEST(NnCuda16Test, AccumulateMatchesCpuBitForBit) {
  using S = TypeParam;
  const std::int64_t n = 10007;
  const auto start = random_storage<S>(n, 73);
  const auto add = random_vector(n, 74, -1e-2F, 1e-2F);
  std::vector<S> summed = start, assigned = start;
  cpu::accumulate(summed.data(), add.data(), n, /*assign=*/false);
  cpu::accumulate(assigned.data(), add.data(), n, /*assign=*/true);
  S* d_summed = this->upload(start);
  S* d_assigned = this->upload(start);
  const float* d_add = this->upload(add);
  this->run([&](const LaunchContext& ctx) {
    accumulate(ctx, float_type_of<S>(), d_summed, d_add, n, /*assign=*/false);
    accumulate(ctx, float_type_of<S>(), d_assigned, d_add, n, /*assign=*/true);
  });
  expect_same_bits(this->download(d_summed, n), summed, "accumulate");
  expect_same_bits(this->download(d_assigned, n), assigned, "accumulate, assign");
}

// --- 16-bit storage ---------------------------------------------------------------------------
//
// Each kernel in bf16 and fp16 against the cpu backend's 16-bit kernel on the same 16-bit
// inputs: the float results before rounding agree to the fp32 tolerance above, and each side
// rounds a 16-bit output once, so rounded_tolerance adds one 16-bit ulp; fp32 outputs (mean,
// rstd, losses, weight gradients) keep the fp32 tolerance. Run twice for determinism.

TYPED_TEST(NnCuda16Test, EmbeddingMatchesCpuAndBackwardIsDeterministic) {
  using S = TypeParam;
  const FloatType t = float_type_of<S>();
  const int B = 3, T = 11, C = 70, V = 13;
  const auto tokens = random_tokens(std::size_t(B) * T, V - 2, 1);
  const auto wte = random_storage<S>(std::size_t(V) * C, 2);
  const auto wpe = random_storage<S>(std::size_t(T) * C, 3);
  const auto dout = random_storage<S>(std::size_t(B) * T * C, 4);
  std::vector<S> out(std::size_t(B) * T * C);
  std::vector<float> dwte(std::size_t(V) * C), dwpe(std::size_t(T) * C);
  cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V);

  const auto [d_tokens, d_wte, d_wpe, d_dout] = this->upload_each(tokens, wte, wpe, dout);
  S* d_out = this->template allocate<S>(out.size());
  float* d_dwte = this->template allocate<float>(dwte.size());
  float* d_dwpe = this->template allocate<float>(dwpe.size());
  this->run([&](const LaunchContext& ctx) {
    embedding_forward(ctx, t, d_out, d_tokens, d_wte, d_wpe, B, T, C, V);
  });
  expect_close(this->download(d_out, out.size()), out, rounded_tolerance<S>(kElementwiseTolerance),
               "embedding out");
  auto backward = [&] {
    this->run([&](const LaunchContext& ctx) {
      embedding_backward(ctx, t, d_dwte, d_dwpe, d_dout, d_tokens, B, T, C, V);
    });
    return std::make_pair(this->download(d_dwte, dwte.size()), this->download(d_dwpe, dwpe.size()));
  };
  const auto first = backward();
  expect_close(first.first, dwte, kElementwiseTolerance, "embedding dwte");
  expect_close(first.second, dwpe, kElementwiseTolerance, "embedding dwpe");
  const auto second = backward();
  expect_same_bits(first.first, second.first, "embedding dwte, run twice");
  expect_same_bits(first.second, second.second, "embedding dwpe, run twice");
}

TYPED_TEST(NnCuda16Test, LayernormMatchesCpuAndBackwardIsDeterministic) {
  using S = TypeParam;
  const FloatType t = float_type_of<S>();
  const double tolerance = rounded_tolerance<S>(kReductionTolerance);
  const int N = 37, C = 100;
  const auto inp = random_storage<S>(std::size_t(N) * C, 10, -2, 3);
  const auto weight = random_storage<S>(C, 11);
  const auto bias = random_storage<S>(C, 12);
  const auto dout = random_storage<S>(std::size_t(N) * C, 13);
  std::vector<S> out(inp.size()), dinp(inp.size());
  std::vector<float> mean(N), rstd(N), dweight(C), dbias(C);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);

  const auto [d_inp, d_weight, d_bias, d_dout] = this->upload_each(inp, weight, bias, dout);
  S* d_out = this->template allocate<S>(out.size());
  const auto [d_mean, d_rstd] = this->template allocate_each<float, 2>(N);
  this->run([&](const LaunchContext& ctx) {
    layernorm_forward(ctx, t, d_out, d_mean, d_rstd, d_inp, d_weight, d_bias, N, C);
  });
  expect_close(this->download(d_out, out.size()), out, tolerance, "layernorm out");
  expect_close(this->download(d_mean, N), mean, kReductionTolerance, "layernorm mean");
  expect_close(this->download(d_rstd, N), rstd, kReductionTolerance, "layernorm rstd");

  // The backward gets the cpu's mean and rstd, so it is compared on identical inputs.
  const auto [d_cpu_mean, d_cpu_rstd] = this->upload_each(mean, rstd);
  S* d_dinp = this->template allocate<S>(dinp.size());
  const auto [d_dweight, d_dbias] = this->template allocate_each<float, 2>(C);
  auto backward = [&] {
    this->run([&](const LaunchContext& ctx) {
      layernorm_backward(ctx, t, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, d_cpu_mean,
                         d_cpu_rstd, N, C);
    });
    return std::make_tuple(this->download(d_dinp, dinp.size()), this->download(d_dweight, C),
                           this->download(d_dbias, C));
  };
  const auto first = backward();
  expect_close(std::get<0>(first), dinp, tolerance, "layernorm dinp");
  expect_close(std::get<1>(first), dweight, kReductionTolerance, "layernorm dweight");
  expect_close(std::get<2>(first), dbias, kReductionTolerance, "layernorm dbias");
  const auto second = backward();
  expect_same_bits(std::get<0>(first), std::get<0>(second), "layernorm dinp, run twice");
  expect_same_bits(std::get<1>(first), std::get<1>(second), "layernorm dweight, run twice");
  expect_same_bits(std::get<2>(first), std::get<2>(second), "layernorm dbias, run twice");
}

TYPED_TEST(NnCuda16Test, MatmulMatchesCpuAndIsDeterministic) {
  using S = TypeParam;
  const FloatType t = float_type_of<S>();
  const double tolerance = rounded_tolerance<S>(kReductionTolerance);
  for (const MatmulShape& shape : {MatmulShape{34, 72, 104, true}, MatmulShape{64, 128, 96, false},
                                   MatmulShape{1, 5, 3, true}, MatmulShape{256, 384, 1152, true}}) {
    const int N = shape.N, C = shape.C, OC = shape.OC;
    const bool has_bias = shape.bias;
    SCOPED_TRACE(::testing::Message() << "N " << N << " C " << C << " OC " << OC);
    const auto inp = random_storage<S>(std::size_t(N) * C, 20);
    const auto weight = random_storage<S>(std::size_t(OC) * C, 21);
    const auto bias = random_storage<S>(OC, 22);
    const auto dout = random_storage<S>(std::size_t(N) * OC, 23);
    std::vector<S> out(std::size_t(N) * OC), dinp(inp.size());
    std::vector<float> dweight(weight.size()), dbias(OC);
    cpu::matmul_forward(out.data(), inp.data(), weight.data(), has_bias ? bias.data() : nullptr, N,
                        C, OC);
    cpu::matmul_backward(dinp.data(), dweight.data(), has_bias ? dbias.data() : nullptr,
                         dout.data(), inp.data(), weight.data(), N, C, OC);

    const auto [d_inp, d_weight, d_bias, d_dout] = this->upload_each(inp, weight, bias, dout);
    S* d_out = this->template allocate<S>(out.size());
    S* d_dinp = this->template allocate<S>(dinp.size());
    float* d_dweight = this->template allocate<float>(dweight.size());
    float* d_dbias = has_bias ? this->template allocate<float>(OC) : nullptr;
    auto forward = [&] {
      this->run([&](const LaunchContext& ctx) {
        matmul_forward(ctx, t, d_out, d_inp, d_weight, has_bias ? d_bias : nullptr, N, C, OC);
      });
      return this->download(d_out, out.size());
    };
    auto backward = [&] {
      this->run([&](const LaunchContext& ctx) {
        matmul_backward(ctx, t, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, N, C, OC);
      });
      return std::make_tuple(this->download(d_dinp, dinp.size()),
                             this->download(d_dweight, dweight.size()),
                             has_bias ? this->download(d_dbias, OC) : std::vector<float>());
    };
    const auto out1 = forward();
    expect_close(out1, out, tolerance, "matmul out");
    expect_same_bits(out1, forward(), "matmul out, run twice");
    const auto first = backward();
    expect_close(std::get<0>(first), dinp, tolerance, "matmul dinp");
    expect_close(std::get<1>(first), dweight, kReductionTolerance, "matmul dweight");
    if (has_bias) expect_close(std::get<2>(first), dbias, kReductionTolerance, "matmul dbias");
    const auto second = backward();
    expect_same_bits(std::get<0>(first), std::get<0>(second), "matmul dinp, run twice");
    expect_same_bits(std::get<1>(first), std::get<1>(second), "matmul dweight, run twice");
    expect_same_bits(std::get<2>(first), std::get<2>(second), "matmul dbias, run twice");
  }
}

TYPED_TEST(NnCuda16Test, GeluAndAddMatchCpu) {
  using S = TypeParam;
  const FloatType t = float_type_of<S>();
  const double tolerance = rounded_tolerance<S>(kElementwiseTolerance);
  const std::int64_t n = 10007;
  const auto inp = random_storage<S>(n, 30, -6, 6);
  const auto other = random_storage<S>(n, 31);
  const auto dout = random_storage<S>(n, 32);
  std::vector<S> out(n), dinp(n), sum(n);
  cpu::gelu_forward(out.data(), inp.data(), n);
  cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), n);
  cpu::add(sum.data(), inp.data(), other.data(), n);

  const auto [d_inp, d_other, d_dout] = this->upload_each(inp, other, dout);
  const auto [d_out, d_dinp, d_sum] = this->template allocate_each<S, 3>(n);
  this->run([&](const LaunchContext& ctx) {
    gelu_forward(ctx, t, d_out, d_inp, n);
    gelu_backward(ctx, t, d_dinp, d_inp, d_dout, n);
    add(ctx, t, d_sum, d_inp, d_other, n);
  });
  expect_close(this->download(d_out, n), out, tolerance, "gelu out");
  expect_close(this->download(d_dinp, n), dinp, tolerance, "gelu dinp");
  // One float addition of the same two values on both sides: the same bits.
  expect_same_bits(this->download(d_sum, n), sum, "add");
}

TYPED_TEST(NnCuda16Test, AttentionMatchesCpuAndIsDeterministic) {
  using S = TypeParam;
  const FloatType t = float_type_of<S>();
  const double tolerance = rounded_tolerance<S>(kReductionTolerance);
  // The shapes of NnCudaAttentionTest.
  for (const AttentionShape& shape :
       {AttentionShape{2, 40, 96, 2}, AttentionShape{1, 33, 64, 4}, AttentionShape{2, 17, 320, 2},
        AttentionShape{1, 70, 256, 2}}) {
    const int B = shape.B, T = shape.T, C = shape.C, NH = shape.NH;
    SCOPED_TRACE(::testing::Message() << "B " << B << " T " << T << " C " << C << " NH " << NH);
    const auto qkv = random_storage<S>(std::size_t(B) * T * 3 * C, 40);
    const auto dout = random_storage<S>(std::size_t(B) * T * C, 41);
    std::vector<S> out(std::size_t(B) * T * C), att(std::size_t(B) * NH * T * T);
    std::vector<S> dqkv(qkv.size());
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);

    const auto [d_qkv, d_dout, d_cpu_att] = this->upload_each(qkv, dout, att);
    S* d_out = this->template allocate<S>(out.size());
    S* d_att = this->template allocate<S>(att.size());
    S* d_dqkv = this->template allocate<S>(dqkv.size());
    auto forward = [&] {
      this->run([&](const LaunchContext& ctx) {
        attention_forward(ctx, t, d_out, d_att, d_qkv, B, T, C, NH);
      });
      return std::make_pair(this->download(d_out, out.size()), this->download(d_att, att.size()));
    };
    const auto first = forward();
    expect_close(first.first, out, tolerance, "attention out");
    expect_close(first.second, att, tolerance, "attention att");
    const auto second = forward();
    expect_same_bits(first.first, second.first, "attention out, run twice");
    expect_same_bits(first.second, second.second, "attention att, run twice");

    // The backward gets the cpu's att, so it is compared on identical inputs.
    auto backward = [&] {
      this->run([&](const LaunchContext& ctx) {
        attention_backward(ctx, t, d_dqkv, d_dout, d_qkv, d_cpu_att, B, T, C, NH);
      });
      return this->download(d_dqkv, dqkv.size());
    };
    const auto dqkv1 = backward();
    expect_close(dqkv1, dqkv, tolerance, "attention dqkv");
    expect_same_bits(dqkv1, backward(), "attention dqkv, run twice");
  }
}

TYPED_TEST(NnCuda16Test, SoftmaxCrossEntropyMatchesCpuAndIsDeterministic) {
  using S = TypeParam;
  const FloatType t = float_type_of<S>();
  const int N = 9, V = 3001;
  const auto logits = random_storage<S>(std::size_t(N) * V, 50, -4, 4);
  const auto targets = random_tokens(N, V, 51);
  const float dloss = 1.0F / N;
  std::vector<float> losses(N);
  std::vector<S> probs(logits.size()), dlogits(logits.size());
  cpu::softmax_cross_entropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N,
                                     V);
  cpu::softmax_cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V);

  const auto [d_logits, d_targets, d_cpu_probs] = this->upload_each(logits, targets, probs);
  float* d_losses = this->template allocate<float>(N);
  S* d_probs = this->template allocate<S>(probs.size());
  S* d_dlogits = this->template allocate<S>(dlogits.size());
  auto all = [&] {
    this->run([&](const LaunchContext& ctx) {
      softmax_cross_entropy_forward(ctx, t, d_losses, d_probs, d_logits, d_targets, N, V);
      softmax_cross_entropy_backward(ctx, t, d_dlogits, d_cpu_probs, d_targets, dloss, N, V);
    });
    return std::make_tuple(this->download(d_losses, N), this->download(d_probs, probs.size()),
                           this->download(d_dlogits, dlogits.size()));
  };
  const auto first = all();
  expect_close(std::get<0>(first), losses, kReductionTolerance, "cross-entropy losses");
  expect_close(std::get<1>(first), probs, rounded_tolerance<S>(kReductionTolerance),
               "softmax probs");
  expect_close(std::get<2>(first), dlogits, rounded_tolerance<S>(kElementwiseTolerance),
               "cross-entropy dlogits");
  const auto second = all();
  expect_same_bits(std::get<0>(first), std::get<0>(second), "losses, run twice");
  expect_same_bits(std::get<1>(first), std::get<1>(second), "probs, run twice");
  expect_same_bits(std::get<2>(first), std::get<2>(second), "dlogits, run twice");
}

}  // namespace
}  // namespace ebb::nn
