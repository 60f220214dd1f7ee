// Tests of the cuda nn kernels (kernels/cuda/nn_cuda*.cu), called through the dispatching
// ebb::nn API inside Stream::launch on a cuda Device:
// - every kernel against the cpu backend (kernels/cpu/nn_cpu.h) on seeded random inputs, by
//   normwise relative error (max |cuda - cpu| / max |cpu|), with outputs pre-filled with NaN so
//   an element left unwritten fails;
// - the bf16 casts bit for bit against the cpu backend and against hand-computed bits;
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
#include "tests/kernels/nn_test_support.h"

namespace ebb::nn {
namespace {

// Float rounding of one or a few operations per element (cuda's tanhf, expf and FMA
// contraction differ from the cpu's by an ulp or two).
constexpr double kElementwiseTolerance = 1e-5;
// Sums of up to a few thousand terms in different orders (cuBLAS blocking, tree reductions).
constexpr double kReductionTolerance = 1e-4;

void check(const Status& status) {
  if (!status.ok()) throw std::runtime_error(status.to_string());
}

template <typename T>
T value(Result<T> result) {
  check(result.status());
  return std::move(result).value();
}

class NnCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_present()) GTEST_SKIP() << "no CUDA GPU is visible";
    DeviceOptions options;
    options.kind = DeviceKind::kCuda;
    options.capacity_bytes = 256 * kMiB;
    device_ = value(create_device(options));
  }

  void TearDown() override {
    if (device_ == nullptr) return;
    (void)device_->synchronize();
    for (void* p : allocations_) (void)device_->free(p);
  }

  Stream& stream() { return device_->default_stream(); }

  // n elements of device memory, every byte 0xff: a NaN in fp32 and bf16, so an output element
  // a kernel does not write shows up.
  template <typename T>
  T* allocate(std::size_t n) {
    void* p = value(device_->allocate(n * sizeof(T)));
    allocations_.push_back(p);
    check(stream().memset_async(p, 0xff, n * sizeof(T)));
    return static_cast<T*>(p);
  }

  template <typename T>
  T* upload(const std::vector<T>& host) {
    T* p = allocate<T>(host.size());
    check(stream().copy_async(p, host.data(), host.size() * sizeof(T), CopyKind::kHostToDevice));
    check(stream().synchronize());
    return p;
  }

  // upload() of each vector, in order.
  template <typename... T>
  std::tuple<const T*...> upload_each(const std::vector<T>&... hosts) {
    return {upload(hosts)...};
  }

  // N buffers of allocate<T>(n).
  template <typename T, std::size_t N>
  std::array<T*, N> allocate_each(std::size_t n) {
    std::array<T*, N> buffers;
    for (T*& p : buffers) p = allocate<T>(n);
    return buffers;
  }

  template <typename T>
  std::vector<T> download(const T* p, std::size_t n) {
    std::vector<T> host(n);
    check(stream().copy_async(host.data(), p, n * sizeof(T), CopyKind::kDeviceToHost));
    check(stream().synchronize());
    return host;
  }

  // Runs `kernel` on the stream (the nn call inside dispatches on the cuda LaunchContext) and
  // waits for it, so a launch error or a fault surfaces here.
  void run(const std::function<void(const LaunchContext&)>& kernel) {
    check(stream().launch(kernel));
    check(stream().synchronize());
  }

  std::unique_ptr<Device> device_;
  std::vector<void*> allocations_;
};

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
    embedding_forward(ctx, d_out, d_tokens, d_wte, d_wpe, B, T, C, V);
  });
  expect_close(download(d_out, out.size()), out, kElementwiseTolerance, "embedding out");

  auto backward = [&] {
    run([&](const LaunchContext& ctx) {
      embedding_backward(ctx, d_dwte, d_dwpe, d_dout, d_tokens, B, T, C, V);
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
    layernorm_forward(ctx, d_out, d_mean, d_rstd, d_inp, d_weight, d_bias, N, C);
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
      layernorm_backward(ctx, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, d_cpu_mean,
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
      matmul_forward(ctx, d_out, d_inp, d_weight, d_bias, N, C, OC);
    });
    return download(d_out, out.size());
  };
  auto backward = [&] {
    run([&](const LaunchContext& ctx) {
      matmul_backward(ctx, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, N, C, OC);
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
    gelu_forward(ctx, d_out, d_inp, n);
    gelu_backward(ctx, d_dinp, d_inp, d_dout, n);
    add(ctx, d_sum, d_inp, d_other, n);
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
      attention_forward(ctx, d_out, d_att, d_qkv, B, T, C, NH);
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
      attention_backward(ctx, d_dqkv, d_dout, d_qkv, d_cpu_att, B, T, C, NH);
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
      softmax_cross_entropy_forward(ctx, d_losses, d_probs, d_logits, d_targets, N, V);
      softmax_cross_entropy_backward(ctx, d_dlogits, d_cpu_probs, d_targets, dloss, N, V);
      mean(ctx, d_avg, d_many, static_cast<std::int64_t>(many.size()));
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

// --- casts
// ----------------------------------------------------------------------------------------

float from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

TEST_F(NnCudaTest, CastsMatchCpuBitForBit) {
  // Hand-checked cases first: {fp32 bits, bf16 bits}.
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
  std::vector<float> in;
  for (const auto& c : cases) in.push_back(from_bits(c.first));
  std::mt19937 rng(70);
  for (int i = 0; i < 100000; i++) in.push_back(from_bits(static_cast<std::uint32_t>(rng())));
  const auto n = static_cast<std::int64_t>(in.size());
  std::vector<std::uint16_t> cpu_bf16(n);
  cpu::cast_f32_to_bf16(cpu_bf16.data(), in.data(), n);

  std::vector<std::uint16_t> every_bf16(1 << 16);
  for (std::uint32_t i = 0; i < every_bf16.size(); i++)
    every_bf16[i] = static_cast<std::uint16_t>(i);
  std::vector<float> cpu_f32(every_bf16.size());
  cpu::cast_bf16_to_f32(cpu_f32.data(), every_bf16.data(),
                        static_cast<std::int64_t>(every_bf16.size()));

  const float* d_in = upload(in);
  const std::uint16_t* d_every = upload(every_bf16);
  std::uint16_t* d_bf16 = allocate<std::uint16_t>(n);
  float* d_f32 = allocate<float>(every_bf16.size());
  run([&](const LaunchContext& ctx) {
    cast_f32_to_bf16(ctx, d_bf16, d_in, n);
    cast_bf16_to_f32(ctx, d_f32, d_every, static_cast<std::int64_t>(every_bf16.size()));
  });
  const auto bf16 = download(d_bf16, n);
  for (std::size_t i = 0; i < cases.size(); i++) {
    EXPECT_EQ(bf16[i], cases[i].second) << "fp32 bits 0x" << std::hex << cases[i].first;
  }
  expect_same_bits(bf16, cpu_bf16, "cast_f32_to_bf16 vs cpu");
  const auto f32 = download(d_f32, every_bf16.size());
  expect_same_bits(f32, cpu_f32, "cast_bf16_to_f32 vs cpu");
  for (std::uint32_t i = 0; i < every_bf16.size(); i++) {
    std::uint32_t bits;
    std::memcpy(&bits, &f32[i], sizeof bits);
    ASSERT_EQ(bits, i << 16) << "bf16 0x" << std::hex << i;
  }
}

}  // namespace
}  // namespace ebb::nn
