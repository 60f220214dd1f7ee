// The typed nn ops (engine/nn_ops.h): each wrapper gives the bits of its kernel called directly
// on the same inputs, with the output shapes, kinds and names the header promises, in f32 and in
// bf16 (whose ops keep statistics, losses and weight gradients in f32); and a bad argument,
// mixed dtypes included, is refused with a message naming the op, the argument, the tensor, its
// shape and dtype and what was expected, leaving the engine usable.
#include "engine/nn_ops.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "kernels/nn_scalar.h"
#include "tests/engine/test_ops.h"

namespace ebb {
namespace {

using test_ops::f32;
using Shape = std::vector<std::int64_t>;

constexpr int kB = 2;
constexpr int kT = 4;
constexpr int kC = 8;
constexpr int kHeads = 2;
constexpr int kV = 11;
constexpr int kRows = kB * kT;

const LaunchContext kCpu{DeviceKind::kCpu, nullptr};
constexpr nn::FloatType kF32 = nn::FloatType::kF32;

std::vector<std::int32_t> random_tokens(std::size_t n, std::uint32_t seed) {
  std::vector<std::int32_t> tokens(n);
  std::uint32_t x = seed * 2654435761U + 7;
  for (std::int32_t& t : tokens) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    t = static_cast<std::int32_t>(x % kV);
  }
  return tokens;
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << what;
}

class NnOps : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = test_ops::make_cpu_device();
    engine_ = Engine::create({.device = *device_}).value();
    ASSERT_TRUE(engine_->begin_iteration().ok());
  }
  void TearDown() override { EXPECT_TRUE(engine_->end_iteration().ok()); }

  // A tensor filled from `host` (random when empty), with `seed`.
  Tensor floats(const std::string& name, const Shape& shape, std::uint32_t seed) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    host_[name] = test_ops::random_floats(static_cast<std::size_t>(n), seed);
    return engine_->input(f32(name, shape), host_[name].data()).value();
  }
  Tensor tokens(const std::string& name, const Shape& shape, std::uint32_t seed) {
    tokens_[name] = random_tokens(static_cast<std::size_t>(shape[0] * shape[1]), seed);
    return engine_->input({name, shape, DType::kI32, TensorKind::kInput}, tokens_[name].data())
        .value();
  }
  // A bf16 tensor of random values, with `seed`; host_bf16(name) holds its elements.
  Tensor bf16(const std::string& name, const Shape& shape, std::uint32_t seed) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    std::vector<std::uint16_t>& h = host_bf16_[name];
    for (const float x : test_ops::random_floats(static_cast<std::size_t>(n), seed)) {
      h.push_back(nn::f32_to_bf16(x));
    }
    return engine_->input({name, shape, DType::kBF16, TensorKind::kInput}, h.data()).value();
  }
  const std::uint16_t* host_bf16(const std::string& name) { return host_bf16_[name].data(); }
  const float* host(const std::string& name) { return host_[name].data(); }
  const std::int32_t* host_tokens(const std::string& name) { return tokens_[name].data(); }

  std::vector<float> read(const Tensor& t) {
    std::vector<float> out(t.bytes() / sizeof(float));
    Status s = engine_->read(t, out.data(), t.bytes());
    EXPECT_TRUE(s.ok()) << s.to_string();
    return out;
  }
  std::vector<std::uint16_t> read16(const Tensor& t) {
    std::vector<std::uint16_t> out(t.bytes() / sizeof(std::uint16_t));
    Status s = engine_->read(t, out.data(), t.bytes());
    EXPECT_TRUE(s.ok()) << s.to_string();
    return out;
  }

  // The op failed with kInvalidArgument and exactly `message`, ran nothing, and a valid op runs.
  template <typename R>
  void expect_refused(const Result<R>& result, const std::string& message) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(result.status().message(), message);
    const std::size_t ops = engine_->tape().size();
    Tensor x = floats("after_error", {kRows, kC}, 99);
    Result<Tensor> y = ops::gelu(*engine_, "after_error.gelu", x);
    ASSERT_TRUE(y.ok()) << y.status().to_string();
    EXPECT_EQ(engine_->tape().size(), ops + 1);
    std::vector<float> want(kRows * kC);
    nn::gelu_forward(kCpu, kF32, want.data(), host("after_error"), kRows * kC);
    expect_same_bits(read(*y), want, "gelu after the error");
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<Engine> engine_;
  std::map<std::string, std::vector<float>> host_;
  std::map<std::string, std::vector<std::int32_t>> tokens_;
  std::map<std::string, std::vector<std::uint16_t>> host_bf16_;
};

void expect_same_bits(const std::vector<std::uint16_t>& got, const std::vector<std::uint16_t>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(got, want) << what;
}

TEST_F(NnOps, EmbeddingMatchesTheKernel) {
  Tensor tok = tokens("tokens", {kB, kT}, 1);
  Tensor wte = floats("wte", {kV, kC}, 2);
  Tensor wpe = floats("wpe", {kT, kC}, 3);
  Tensor out = ops::embedding(*engine_, "embedding", tok, wte, wpe).value();
  EXPECT_EQ(out.name(), "embedding");
  EXPECT_EQ(out.shape(), (Shape{kRows, kC}));
  EXPECT_EQ(out.kind(), TensorKind::kActivation);
  std::vector<float> want(kRows * kC);
  nn::embedding_forward(kCpu, kF32, want.data(), host_tokens("tokens"), host("wte"), host("wpe"),
                        kB, kT, kC, kV);
  expect_same_bits(read(out), want, "embedding");

  Tensor dout = floats("dout", {kRows, kC}, 4);
  ops::EmbeddingGrads g = ops::embedding_backward(*engine_, "emb_bwd", dout, tok, kV).value();
  EXPECT_EQ(g.dwte.name(), "emb_bwd.dwte");
  EXPECT_EQ(g.dwte.shape(), (Shape{kV, kC}));
  EXPECT_EQ(g.dwpe.shape(), (Shape{kT, kC}));
  EXPECT_EQ(g.dwte.kind(), TensorKind::kGradient);
  std::vector<float> dwte(kV * kC), dwpe(kT * kC);
  nn::embedding_backward(kCpu, kF32, dwte.data(), dwpe.data(), host("dout"), host_tokens("tokens"),
                         kB, kT, kC, kV);
  expect_same_bits(read(g.dwte), dwte, "dwte");
  expect_same_bits(read(g.dwpe), dwpe, "dwpe");
}

TEST_F(NnOps, LayerNormMatchesTheKernel) {
  Tensor in = floats("in", {kRows, kC}, 1);
  Tensor w = floats("w", {kC}, 2);
  Tensor b = floats("b", {kC}, 3);
  ops::LayerNormOut ln = ops::layernorm(*engine_, "ln", in, w, b).value();
  EXPECT_EQ(ln.out.name(), "ln.out");
  EXPECT_EQ(ln.mean.name(), "ln.mean");
  EXPECT_EQ(ln.rstd.shape(), (Shape{kRows}));
  std::vector<float> out(kRows * kC), mean(kRows), rstd(kRows);
  nn::layernorm_forward(kCpu, kF32, out.data(), mean.data(), rstd.data(), host("in"), host("w"),
                        host("b"), kRows, kC);
  expect_same_bits(read(ln.out), out, "out");
  expect_same_bits(read(ln.mean), mean, "mean");
  expect_same_bits(read(ln.rstd), rstd, "rstd");

  Tensor dout = floats("dout", {kRows, kC}, 4);
  ops::LayerNormGrads g =
      ops::layernorm_backward(*engine_, "ln_bwd", dout, in, w, ln.mean, ln.rstd).value();
  EXPECT_EQ(g.dinp.kind(), TensorKind::kGradient);
  std::vector<float> dinp(kRows * kC), dw(kC), db(kC);
  nn::layernorm_backward(kCpu, kF32, dinp.data(), dw.data(), db.data(), host("dout"), host("in"),
                         host("w"), mean.data(), rstd.data(), kRows, kC);
  expect_same_bits(read(g.dinp), dinp, "dinp");
  expect_same_bits(read(g.dweight), dw, "dweight");
  expect_same_bits(read(g.dbias), db, "dbias");
}

TEST_F(NnOps, MatmulMatchesTheKernelWithAndWithoutBias) {
  constexpr int kOC = 12;
  // A 3-D input: rows are the product of the leading dimensions, which the output keeps.
  Tensor in = floats("in", {kB, kT, kC}, 1);
  Tensor w = floats("w", {kOC, kC}, 2);
  Tensor b = floats("b", {kOC}, 3);
  Tensor y = ops::matmul(*engine_, "mm", in, w, &b).value();
  EXPECT_EQ(y.shape(), (Shape{kB, kT, kOC}));
  std::vector<float> want(kRows * kOC);
  nn::matmul_forward(kCpu, kF32, want.data(), host("in"), host("w"), host("b"), kRows, kC, kOC);
  expect_same_bits(read(y), want, "matmul with bias");
  Tensor y0 = ops::matmul(*engine_, "mm0", in, w, nullptr).value();
  nn::matmul_forward(kCpu, kF32, want.data(), host("in"), host("w"), nullptr, kRows, kC, kOC);
  expect_same_bits(read(y0), want, "matmul without bias");

  Tensor dout = floats("dout", {kB, kT, kOC}, 4);
  ops::MatmulGrads g = ops::matmul_backward(*engine_, "mm_bwd", dout, in, w, true).value();
  EXPECT_EQ(g.dinp.shape(), (Shape{kB, kT, kC}));
  EXPECT_EQ(g.dweight.shape(), (Shape{kOC, kC}));
  EXPECT_EQ(g.dbias.name(), "mm_bwd.dbias");
  std::vector<float> dinp(kRows * kC), dw(kOC * kC), db(kOC);
  nn::matmul_backward(kCpu, kF32, dinp.data(), dw.data(), db.data(), host("dout"), host("in"),
                      host("w"), kRows, kC, kOC);
  expect_same_bits(read(g.dinp), dinp, "dinp");
  expect_same_bits(read(g.dweight), dw, "dweight");
  expect_same_bits(read(g.dbias), db, "dbias");
  ops::MatmulGrads g0 = ops::matmul_backward(*engine_, "mm0_bwd", dout, in, w, false).value();
  EXPECT_FALSE(g0.dbias.valid());
  nn::matmul_backward(kCpu, kF32, dinp.data(), dw.data(), nullptr, host("dout"), host("in"),
                      host("w"), kRows, kC, kOC);
  expect_same_bits(read(g0.dinp), dinp, "dinp without bias");
  expect_same_bits(read(g0.dweight), dw, "dweight without bias");
}

TEST_F(NnOps, ElementwiseOpsMatchTheKernels) {
  constexpr std::int64_t kElements = kRows * kC;
  Tensor x = floats("x", {kRows, kC}, 1);
  Tensor d = floats("d", {kRows, kC}, 2);
  std::vector<float> want(kElements);
  Tensor g = ops::gelu(*engine_, "gelu", x).value();
  nn::gelu_forward(kCpu, kF32, want.data(), host("x"), kElements);
  expect_same_bits(read(g), want, "gelu");
  Tensor gb = ops::gelu_backward(*engine_, "gelu_bwd", x, d).value();
  EXPECT_EQ(gb.kind(), TensorKind::kGradient);
  nn::gelu_backward(kCpu, kF32, want.data(), host("x"), host("d"), kElements);
  expect_same_bits(read(gb), want, "gelu_backward");
  Tensor s = ops::add(*engine_, "sum", x, d, TensorKind::kGradient).value();
  EXPECT_EQ(s.name(), "sum");
  EXPECT_EQ(s.kind(), TensorKind::kGradient);
  nn::add(kCpu, kF32, want.data(), host("x"), host("d"), kElements);
  expect_same_bits(read(s), want, "add");
  Tensor m = ops::mean(*engine_, "mean", x).value();
  EXPECT_EQ(m.shape(), (Shape{1}));
  std::vector<float> one(1);
  nn::mean(kCpu, kF32, one.data(), host("x"), kElements);
  expect_same_bits(read(m), one, "mean");
}

TEST_F(NnOps, AttentionMatchesTheKernel) {
  Tensor qkv = floats("qkv", {kRows, 3 * kC}, 1);
  ops::AttentionOut a = ops::attention(*engine_, "attn", qkv, kB, kT, kHeads).value();
  EXPECT_EQ(a.out.shape(), (Shape{kRows, kC}));
  EXPECT_EQ(a.att.shape(), (Shape{kB, kHeads, kT, kT}));
  EXPECT_EQ(a.att.name(), "attn.att");
  std::vector<float> out(kRows * kC), att(kB * kHeads * kT * kT);
  nn::attention_forward(kCpu, kF32, out.data(), att.data(), host("qkv"), kB, kT, kC, kHeads);
  expect_same_bits(read(a.out), out, "out");
  expect_same_bits(read(a.att), att, "att");

  Tensor dout = floats("dout", {kRows, kC}, 2);
  Tensor dqkv =
      ops::attention_backward(*engine_, "attn_bwd", dout, qkv, a.att, kB, kT, kHeads).value();
  EXPECT_EQ(dqkv.shape(), (Shape{kRows, 3 * kC}));
  std::vector<float> want(kRows * 3 * kC);
  nn::attention_backward(kCpu, kF32, want.data(), host("dout"), host("qkv"), att.data(), kB, kT, kC,
                         kHeads);
  expect_same_bits(read(dqkv), want, "dqkv");
}

TEST_F(NnOps, SoftmaxCrossEntropyMatchesTheKernel) {
  Tensor logits = floats("logits", {kRows, kV}, 1);
  Tensor targets = tokens("targets", {kB, kT}, 2);
  ops::CrossEntropyOut x = ops::softmax_cross_entropy(*engine_, "xent", logits, targets).value();
  EXPECT_EQ(x.losses.shape(), (Shape{kRows}));
  EXPECT_EQ(x.probs.name(), "xent.probs");
  std::vector<float> losses(kRows), probs(kRows * kV);
  nn::softmax_cross_entropy_forward(kCpu, kF32, losses.data(), probs.data(), host("logits"),
                                    host_tokens("targets"), kRows, kV);
  expect_same_bits(read(x.losses), losses, "losses");
  expect_same_bits(read(x.probs), probs, "probs");

  const float dloss = 1.0F / kRows;
  Tensor d =
      ops::softmax_cross_entropy_backward(*engine_, "xent_bwd", x.probs, targets, dloss).value();
  EXPECT_EQ(d.kind(), TensorKind::kGradient);
  std::vector<float> want(kRows * kV);
  nn::softmax_cross_entropy_backward(kCpu, kF32, want.data(), probs.data(), host_tokens("targets"),
                                     dloss, kRows, kV);
  expect_same_bits(read(d), want, "dlogits");
}

TEST_F(NnOps, AdamWKeepsTheNamesAndKindsOfWhatItReplaces) {
  const Shape shape{3, kC};
  Tensor p = floats("p", shape, 1);
  Tensor g = floats("g", shape, 2);
  Tensor m = floats("p.m", shape, 3);
  Tensor v = floats("p.v", shape, 4);
  const nn::AdamWConfig config{.learning_rate = 1e-3F, .weight_decay = 0.1F};
  ops::AdamWOut out = ops::adamw(*engine_, "adamw.p", p, g, m, v, config, 3).value();
  EXPECT_EQ(out.param.name(), "p");
  EXPECT_EQ(out.param.kind(), TensorKind::kParameter);
  EXPECT_EQ(out.m.name(), "p.m");
  EXPECT_EQ(out.v.kind(), TensorKind::kOptimizerState);
  const std::int64_t n = 3 * kC;
  std::vector<float> p2(n), m2(n), v2(n);
  nn::adamw(kCpu, p2.data(), m2.data(), v2.data(), host("p"), host("g"), host("p.m"), host("p.v"),
            n, config, 3);
  expect_same_bits(read(out.param), p2, "param");
  expect_same_bits(read(out.m), m2, "m");
  expect_same_bits(read(out.v), v2, "v");
}

TEST_F(NnOps, Bf16OpsMatchTheKernelsAndKeepStatisticsAndWeightGradientsInF32) {
  constexpr nn::FloatType kBf16 = nn::FloatType::kBF16;
  constexpr int kOC = 3 * kC;
  Tensor in = bf16("in", {kRows, kC}, 1);
  Tensor lw = bf16("lw", {kC}, 2);
  Tensor lb = bf16("lb", {kC}, 3);
  ops::LayerNormOut ln = ops::layernorm(*engine_, "ln", in, lw, lb).value();
  EXPECT_EQ(ln.out.dtype(), DType::kBF16);
  EXPECT_EQ(ln.mean.dtype(), DType::kF32);
  EXPECT_EQ(ln.rstd.dtype(), DType::kF32);
  std::vector<std::uint16_t> ln_out(kRows * kC);
  std::vector<float> mean(kRows), rstd(kRows);
  nn::layernorm_forward(kCpu, kBf16, ln_out.data(), mean.data(), rstd.data(), host_bf16("in"),
                        host_bf16("lw"), host_bf16("lb"), kRows, kC);
  expect_same_bits(read16(ln.out), ln_out, "layernorm out");
  expect_same_bits(read(ln.mean), mean, "layernorm mean");

  Tensor w = bf16("w", {kOC, kC}, 4);
  Tensor b = bf16("b", {kOC}, 5);
  Tensor qkv = ops::matmul(*engine_, "qkv", ln.out, w, &b).value();
  EXPECT_EQ(qkv.dtype(), DType::kBF16);
  std::vector<std::uint16_t> qkv_want(kRows * kOC);
  nn::matmul_forward(kCpu, kBf16, qkv_want.data(), ln_out.data(), host_bf16("w"), host_bf16("b"),
                     kRows, kC, kOC);
  expect_same_bits(read16(qkv), qkv_want, "matmul");

  ops::AttentionOut a = ops::attention(*engine_, "attn", qkv, kB, kT, kHeads).value();
  EXPECT_EQ(a.out.dtype(), DType::kBF16);
  EXPECT_EQ(a.att.dtype(), DType::kBF16);
  std::vector<std::uint16_t> att_out(kRows * kC), att(kB * kHeads * kT * kT);
  nn::attention_forward(kCpu, kBf16, att_out.data(), att.data(), qkv_want.data(), kB, kT, kC,
                        kHeads);
  expect_same_bits(read16(a.out), att_out, "attention out");
  expect_same_bits(read16(a.att), att, "attention att");

  Tensor dout = bf16("dout", {kRows, kOC}, 6);
  ops::MatmulGrads g = ops::matmul_backward(*engine_, "qkv_bwd", dout, ln.out, w, true).value();
  EXPECT_EQ(g.dinp.dtype(), DType::kBF16);
  EXPECT_EQ(g.dweight.dtype(), DType::kF32);
  EXPECT_EQ(g.dbias.dtype(), DType::kF32);
  std::vector<std::uint16_t> dinp(kRows * kC);
  std::vector<float> dw(kOC * kC), db(kOC);
  nn::matmul_backward(kCpu, kBf16, dinp.data(), dw.data(), db.data(), host_bf16("dout"),
                      ln_out.data(), host_bf16("w"), kRows, kC, kOC);
  expect_same_bits(read16(g.dinp), dinp, "matmul dinp");
  expect_same_bits(read(g.dweight), dw, "matmul dweight");
  expect_same_bits(read(g.dbias), db, "matmul dbias");

  Tensor targets = tokens("targets", {kB, kT}, 7);
  Tensor logits = bf16("logits", {kRows, kV}, 8);
  ops::CrossEntropyOut x = ops::softmax_cross_entropy(*engine_, "xent", logits, targets).value();
  EXPECT_EQ(x.losses.dtype(), DType::kF32);
  EXPECT_EQ(x.probs.dtype(), DType::kBF16);
  std::vector<float> losses(kRows);
  std::vector<std::uint16_t> probs(kRows * kV);
  nn::softmax_cross_entropy_forward(kCpu, kBf16, losses.data(), probs.data(), host_bf16("logits"),
                                    host_tokens("targets"), kRows, kV);
  expect_same_bits(read(x.losses), losses, "losses");
  expect_same_bits(read16(x.probs), probs, "probs");
  Tensor loss = ops::mean(*engine_, "loss", x.losses).value();
  EXPECT_EQ(loss.dtype(), DType::kF32);

  Tensor emb_dout = bf16("emb_dout", {kRows, kC}, 9);
  ops::EmbeddingGrads e =
      ops::embedding_backward(*engine_, "emb_bwd", emb_dout, targets, kV).value();
  EXPECT_EQ(e.dwte.dtype(), DType::kF32);
  EXPECT_EQ(e.dwpe.dtype(), DType::kF32);
  std::vector<float> dwte(kV * kC), dwpe(kT * kC);
  nn::embedding_backward(kCpu, kBf16, dwte.data(), dwpe.data(), host_bf16("emb_dout"),
                         host_tokens("targets"), kB, kT, kC, kV);
  expect_same_bits(read(e.dwte), dwte, "dwte");
  expect_same_bits(read(e.dwpe), dwpe, "dwpe");
}

TEST_F(NnOps, CastConvertsBetweenFloatDtypes) {
  Tensor x = floats("x", {kRows, kC}, 1);
  Tensor h = ops::cast(*engine_, "x.bf16", x, DType::kBF16).value();
  EXPECT_EQ(h.dtype(), DType::kBF16);
  EXPECT_EQ(h.shape(), (Shape{kRows, kC}));
  EXPECT_EQ(h.kind(), TensorKind::kActivation);
  std::vector<std::uint16_t> want(kRows * kC);
  nn::cast(kCpu, nn::FloatType::kBF16, want.data(), kF32, host("x"), kRows * kC);
  expect_same_bits(read16(h), want, "f32 to bf16");
  Tensor back = ops::cast(*engine_, "x.f32", h, DType::kF32, TensorKind::kGradient).value();
  EXPECT_EQ(back.kind(), TensorKind::kGradient);
  std::vector<float> widened(kRows * kC);
  nn::cast(kCpu, kF32, widened.data(), nn::FloatType::kBF16, want.data(), kRows * kC);
  expect_same_bits(read(back), widened, "bf16 to f32");
  expect_refused(ops::cast(*engine_, "x.i32", x, DType::kI32),
                 "op 'x.i32': cast of in 'x' is [8,8] f32 to i32, expected f32, bf16 or f16");
}

TEST_F(NnOps, MixedDtypesAreRefused) {
  Tensor in = bf16("h0.ln1.out", {kRows, kC}, 1);
  Tensor w = floats("h0.qkv_w", {3 * kC, kC}, 2);
  expect_refused(ops::matmul(*engine_, "h0.qkv", in, w, nullptr),
                 "op 'h0.qkv': weight 'h0.qkv_w' is [24,8] f32, expected [*,8] bf16");
  Tensor x = floats("x", {kRows, kC}, 3);
  Tensor y = bf16("y", {kRows, kC}, 4);
  expect_refused(ops::add(*engine_, "res", x, y),
                 "op 'res': b 'y' is [8,8] bf16, expected [8,8] f32");
  Tensor lw = bf16("lw", {kC}, 5);
  Tensor lb = bf16("lb", {kC}, 6);
  ops::LayerNormOut ln = ops::layernorm(*engine_, "ln", in, lw, lb).value();
  // mean and rstd stay f32 with a bf16 input; a bf16 rstd is refused.
  Tensor rstd16 = bf16("rstd16", {kRows}, 7);
  expect_refused(ops::layernorm_backward(*engine_, "ln_bwd", in, in, lw, ln.mean, rstd16),
                 "op 'ln_bwd': rstd 'rstd16' is [8] bf16, expected [8] f32");
  expect_refused(ops::mean(*engine_, "loss", in),
                 "op 'loss': in 'h0.ln1.out' is [8,8] bf16, expected [...] f32");
}

TEST_F(NnOps, WrongDtypeIsRefused) {
  Tensor in = tokens("in", {kRows, kC}, 1);
  Tensor w = floats("w", {kC, kC}, 2);
  expect_refused(ops::matmul(*engine_, "h0.qkv", in, w, nullptr),
                 "op 'h0.qkv': in 'in' is [8,8] i32, expected [...,*] f32, bf16 or f16");
}

TEST_F(NnOps, WrongInnerDimensionIsRefused) {
  Tensor in = floats("h0.ln1.out", {kRows, 2 * kC}, 1);
  Tensor w = floats("h0.qkv_w", {3 * kC, kC}, 2);
  expect_refused(ops::matmul(*engine_, "h0.qkv", in, w, nullptr),
                 "op 'h0.qkv': weight 'h0.qkv_w' is [24,8] f32, expected [*,16] f32");
  Tensor x = floats("x", {kRows, kC}, 3);
  Tensor dout = floats("dout", {kRows, kC}, 4);
  expect_refused(ops::matmul_backward(*engine_, "h0.qkv_backward", dout, x, w, false),
                 "op 'h0.qkv_backward': dout 'dout' is [8,8] f32, expected [8,24] f32");
}

TEST_F(NnOps, WrongBiasLengthIsRefused) {
  Tensor in = floats("in", {kRows, kC}, 1);
  Tensor w = floats("w", {3 * kC, kC}, 2);
  Tensor b = floats("b", {kC}, 3);
  expect_refused(ops::matmul(*engine_, "h0.qkv", in, w, &b),
                 "op 'h0.qkv': bias 'b' is [8] f32, expected [24] f32");
  Tensor lw = floats("lw", {kC}, 4);
  Tensor lb = floats("lb", {kC + 1}, 5);
  expect_refused(ops::layernorm(*engine_, "h0.ln1", in, lw, lb),
                 "op 'h0.ln1': bias 'lb' is [9] f32, expected [8] f32");
}

TEST_F(NnOps, TokensAndTargetsMustBeI32) {
  Tensor tok = floats("tokens", {kB, kT}, 1);
  Tensor wte = floats("wte", {kV, kC}, 2);
  Tensor wpe = floats("wpe", {kT, kC}, 3);
  expect_refused(ops::embedding(*engine_, "embedding", tok, wte, wpe),
                 "op 'embedding': tokens 'tokens' is [2,4] f32, expected [*,*] i32");
  Tensor logits = floats("logits", {kRows, kV}, 4);
  Tensor targets = floats("targets", {kRows}, 5);
  expect_refused(ops::softmax_cross_entropy(*engine_, "xent", logits, targets),
                 "op 'xent': targets 'targets' is [8] f32, expected [...] i32");
  Tensor short_wpe = floats("short_wpe", {kT - 1, kC}, 6);
  Tensor itok = tokens("itok", {kB, kT}, 7);
  expect_refused(ops::embedding(*engine_, "embedding", itok, wte, short_wpe),
                 "op 'embedding': wpe 'short_wpe' is [3,8] f32, expected [>=4,8] f32");
}

TEST_F(NnOps, AttentionChecksHeadsAndRows) {
  Tensor qkv = floats("h0.qkv", {kRows, 3 * kC}, 1);
  expect_refused(ops::attention(*engine_, "h0.attention", qkv, kB, kT, 3),
                 "op 'h0.attention': heads 3 does not divide C = 8 (qkv 'h0.qkv' is [8,24] f32)");
  expect_refused(ops::attention(*engine_, "h0.attention", qkv, kB, kT + 1, kHeads),
                 "op 'h0.attention': qkv 'h0.qkv' is [8,24] f32 with 8 rows, expected 10 "
                 "(batch*seq)");
  expect_refused(ops::attention(*engine_, "h0.attention", qkv, 65536, 65536, kHeads),
                 "op 'h0.attention': batch*seq is 4294967296, more than the kernels' int sizes "
                 "hold (INT_MAX)");
  Tensor odd = floats("odd", {kRows, 3 * kC + 1}, 2);
  expect_refused(ops::attention(*engine_, "h0.attention", odd, kB, kT, kHeads),
                 "op 'h0.attention': qkv 'odd' is [8,25] f32, expected [...,3C] f32 (25 is not "
                 "a multiple of 3)");
}

TEST_F(NnOps, ReleasedAndEmptyHandlesAreRefused) {
  Tensor x = floats("x", {kRows, kC}, 1);
  ASSERT_TRUE(engine_->release(x).ok());
  Result<Tensor> released = ops::gelu(*engine_, "gelu", x);
  ASSERT_FALSE(released.ok());
  EXPECT_EQ(released.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(released.status().message().find("op 'gelu': in is not a live tensor"),
            std::string::npos)
      << released.status().message();
  expect_refused(ops::mean(*engine_, "loss", Tensor()), "op 'loss': in is an empty Tensor handle");
}

}  // namespace
}  // namespace ebb
