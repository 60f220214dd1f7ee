#include "engine/nn_ops.h"

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace ebb::ops {
namespace {

using Shape = std::vector<std::int64_t>;

// One dimension a check accepts: min <= size <= max.
struct Dim {
  std::int64_t min = 1;
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
};
Dim exactly(std::int64_t n) { return {n, n}; }
Dim any() { return {}; }
Dim at_least(std::int64_t n) { return {n, std::numeric_limits<std::int64_t>::max()}; }

// The shapes a check accepts: `dims`, after any number of leading dimensions when `leading`.
struct Pattern {
  bool leading = false;
  std::vector<Dim> dims;
};
Pattern exact(const Shape& shape) {
  Pattern p;
  for (std::int64_t d : shape) p.dims.push_back(exactly(d));
  return p;
}
// [..., last]: rank >= 1.
Pattern rows_of(Dim last) { return {true, {last}}; }
// Any shape.
Pattern any_shape() { return {true, {}}; }

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string pattern_string(const Pattern& p) {
  std::string s = "[";
  if (p.leading) s += p.dims.empty() ? "..." : "...,";
  for (std::size_t i = 0; i < p.dims.size(); ++i) {
    const Dim& d = p.dims[i];
    if (i > 0) s += ",";
    if (d.min == d.max) {
      s += std::to_string(d.min);
    } else if (d.max != std::numeric_limits<std::int64_t>::max() || d.min > 1) {
      s += ">=" + std::to_string(d.min);
    } else {
      s += "*";
    }
  }
  return s + "]";
}

bool matches(const Shape& shape, const Pattern& p) {
  if (p.leading ? shape.size() < p.dims.size() : shape.size() != p.dims.size()) return false;
  const std::size_t first = shape.size() - p.dims.size();
  for (std::size_t i = 0; i < p.dims.size(); ++i) {
    const std::int64_t d = shape[first + i];
    if (d < p.dims[i].min || d > p.dims[i].max) return false;
  }
  return true;
}

std::int64_t elements(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;  // no overflow: the engine created the tensor
  return n;
}
// Rows of an activation [..., C]: the product of the leading dimensions.
std::int64_t rows(const Shape& shape) { return elements(shape) / shape.back(); }

Shape with_last(Shape shape, std::int64_t last) {
  shape.back() = last;
  return shape;
}

// The checks of one op's arguments; every message starts "op '<name>': ".
class Checks {
 public:
  Checks(const Engine& engine, std::string_view op) : engine_(&engine), op_(op) {}

  Status error(const std::string& message) const {
    return invalid_argument("op '" + std::string(op_) + "': " + message);
  }

  // "weight 'h0.qkv_w' is [64,64] f32". REQUIRES: live(t).
  static std::string describe(const Tensor& t, std::string_view role) {
    return std::string(role) + " '" + t.name() + "' is " + shape_string(t.shape()) + " " +
           std::string(dtype_name(t.dtype()));
  }

  // OK when `t` is a live tensor of this engine (its shape may be read).
  Status live(const Tensor& t, std::string_view role) const {
    if (!t.valid()) return error(std::string(role) + " is an empty Tensor handle");
    if (t.engine() != engine_) {
      return error(std::string(role) + " (id " + std::to_string(t.id()) +
                   ") belongs to another engine");
    }
    Result<Residency> residency = engine_->residency(t);
    if (!residency.ok()) {
      return error(std::string(role) + " is not a live tensor (" + residency.status().message() +
                   ")");
    }
    return ok_status();
  }

  // OK when `t` is live, of `dtype` and its shape matches `pattern`.
  Status expect(const Tensor& t, std::string_view role, const Pattern& pattern, DType dtype) const {
    EBB_RETURN_IF_ERROR(live(t, role));
    if (t.dtype() == dtype && matches(t.shape(), pattern)) return ok_status();
    return error(describe(t, role) + ", expected " + pattern_string(pattern) + " " +
                 std::string(dtype_name(dtype)));
  }

  // The storage type of an op whose first float tensor is `t`: OK when `t` is live, of a float
  // dtype (f32, bf16 or f16) and its shape matches `pattern`. The op's other activations and
  // parameters are then expected in t's dtype.
  Result<nn::FloatType> expect_float(const Tensor& t, std::string_view role,
                                     const Pattern& pattern) const {
    EBB_RETURN_IF_ERROR(live(t, role));
    const std::optional<nn::FloatType> type = float_type_of(t.dtype());
    if (type.has_value() && matches(t.shape(), pattern)) return *type;
    return error(describe(t, role) + ", expected " + pattern_string(pattern) + " f32, bf16 or f16");
  }

  // OK when the activation `t` (already checked) has `want` rows; `why` says where that is from.
  Status expect_rows(const Tensor& t, std::string_view role, std::int64_t want,
                     const std::string& why) const {
    const std::int64_t have = rows(t.shape());
    if (have == want) return ok_status();
    return error(describe(t, role) + " with " + std::to_string(have) + " rows, expected " +
                 std::to_string(want) + " (" + why + ")");
  }

  // A size the kernel takes as int: `value` in [1, INT_MAX].
  Result<int> size(std::string_view what, std::int64_t value) const {
    if (value < 1) return error(std::string(what) + " is " + std::to_string(value) + ", not >= 1");
    if (value > INT_MAX) {
      return error(std::string(what) + " is " + std::to_string(value) +
                   ", more than the kernels' int sizes hold (INT_MAX)");
    }
    return static_cast<int>(value);
  }

 private:
  const Engine* engine_;
  std::string_view op_;  // the caller's name, which outlives the checks
};

TensorSpec spec(std::string name, Shape shape, TensorKind kind, DType dtype) {
  return {std::move(name), std::move(shape), dtype, kind};
}

const float* in_f32(const OpArgs& a, std::size_t i) {
  return static_cast<const float*>(a.inputs[i]);
}
const std::int32_t* in_i32(const OpArgs& a, std::size_t i) {
  return static_cast<const std::int32_t*>(a.inputs[i]);
}
float* out_f32(const OpArgs& a, std::size_t i) { return static_cast<float*>(a.outputs[i]); }

constexpr DType kF32 = DType::kF32;
constexpr DType kI32 = DType::kI32;

// Batch, sequence, channels and heads of an attention op, checked against qkv [..., 3C], and
// qkv's storage type, the op's.
struct AttentionDims {
  int batch;
  int seq;
  int channels;
  int heads;
  nn::FloatType type;
};
Result<AttentionDims> attention_dims(const Checks& check, const Tensor& qkv, int batch, int seq,
                                     int heads) {
  AttentionDims d{};
  EBB_ASSIGN_OR_RETURN(d.type, check.expect_float(qkv, "qkv", rows_of(any())));
  EBB_ASSIGN_OR_RETURN(d.batch, check.size("batch", batch));
  EBB_ASSIGN_OR_RETURN(d.seq, check.size("seq", seq));
  EBB_ASSIGN_OR_RETURN(d.heads, check.size("heads", heads));
  const std::int64_t c3 = qkv.shape().back();
  if (c3 % 3 != 0) {
    return check.error(Checks::describe(qkv, "qkv") + ", expected [...,3C] " +
                       std::string(dtype_name(qkv.dtype())) + " (" + std::to_string(c3) +
                       " is not a multiple of 3)");
  }
  EBB_ASSIGN_OR_RETURN(d.channels, check.size("C", c3 / 3));
  EBB_ASSIGN_OR_RETURN(int n, check.size("batch*seq", std::int64_t{batch} * seq));
  EBB_RETURN_IF_ERROR(check.expect_rows(qkv, "qkv", n, "batch*seq"));
  if (d.channels % d.heads != 0) {
    return check.error("heads " + std::to_string(heads) + " does not divide C = " +
                       std::to_string(d.channels) + " (" + Checks::describe(qkv, "qkv") + ")");
  }
  return d;
}

}  // namespace

std::optional<nn::FloatType> float_type_of(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return nn::FloatType::kF32;
    case DType::kBF16:
      return nn::FloatType::kBF16;
    case DType::kF16:
      return nn::FloatType::kF16;
    default:
      return std::nullopt;
  }
}

Result<Tensor> embedding(Engine& engine, const std::string& name, const Tensor& tokens,
                         const Tensor& wte, const Tensor& wpe, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_RETURN_IF_ERROR(check.expect(tokens, "tokens", {false, {any(), any()}}, kI32));
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type,
                       check.expect_float(wte, "wte", {false, {any(), any()}}));
  const DType dtype = wte.dtype();
  const std::int64_t t_len = tokens.shape()[1];
  const std::int64_t c_len = wte.shape()[1];
  EBB_RETURN_IF_ERROR(check.expect(wpe, "wpe", {false, {at_least(t_len), exactly(c_len)}}, dtype));
  EBB_ASSIGN_OR_RETURN(const int B, check.size("B", tokens.shape()[0]));
  EBB_ASSIGN_OR_RETURN(const int T, check.size("T", t_len));
  EBB_ASSIGN_OR_RETURN(const int C, check.size("C", c_len));
  EBB_ASSIGN_OR_RETURN(const int V, check.size("V", wte.shape()[0]));
  EBB_ASSIGN_OR_RETURN(const int N, check.size("B*T", std::int64_t{B} * T));
  EBB_ASSIGN_OR_RETURN(
      auto out, engine.run(
                    name, {tokens, wte, wpe}, {spec(name, {N, C}, TensorKind::kActivation, dtype)},
                    [=](const OpArgs& a) {
                      nn::embedding_forward(a.launch, type, a.outputs[0], in_i32(a, 0), a.inputs[1],
                                            a.inputs[2], B, T, C, V);
                    },
                    cost));
  return out[0];
}

Result<EmbeddingGrads> embedding_backward(Engine& engine, const std::string& name,
                                          const Tensor& dout, const Tensor& tokens, int vocab,
                                          std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_RETURN_IF_ERROR(check.expect(tokens, "tokens", {false, {any(), any()}}, kI32));
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(dout, "dout", rows_of(any())));
  EBB_ASSIGN_OR_RETURN(const int B, check.size("B", tokens.shape()[0]));
  EBB_ASSIGN_OR_RETURN(const int T, check.size("T", tokens.shape()[1]));
  EBB_ASSIGN_OR_RETURN(const int C, check.size("C", dout.shape().back()));
  EBB_ASSIGN_OR_RETURN(const int V, check.size("vocab", vocab));
  EBB_RETURN_IF_ERROR(check.expect_rows(dout, "dout", std::int64_t{B} * T,
                                        "B*T of " + Checks::describe(tokens, "tokens")));
  EBB_ASSIGN_OR_RETURN(auto out, engine.run(
                                     name, {dout, tokens},
                                     {spec(name + ".dwte", {V, C}, TensorKind::kGradient, kF32),
                                      spec(name + ".dwpe", {T, C}, TensorKind::kGradient, kF32)},
                                     [=](const OpArgs& a) {
                                       nn::embedding_backward(a.launch, type, out_f32(a, 0),
                                                              out_f32(a, 1), a.inputs[0],
                                                              in_i32(a, 1), B, T, C, V);
                                     },
                                     cost));
  return EmbeddingGrads{out[0], out[1]};
}

Result<LayerNormOut> layernorm(Engine& engine, const std::string& name, const Tensor& in,
                               const Tensor& weight, const Tensor& bias,
                               std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(in, "in", rows_of(any())));
  const DType dtype = in.dtype();
  const std::int64_t c_len = in.shape().back();
  EBB_RETURN_IF_ERROR(check.expect(weight, "weight", exact({c_len}), dtype));
  EBB_RETURN_IF_ERROR(check.expect(bias, "bias", exact({c_len}), dtype));
  EBB_ASSIGN_OR_RETURN(const int N, check.size("rows", rows(in.shape())));
  EBB_ASSIGN_OR_RETURN(const int C, check.size("C", c_len));
  EBB_ASSIGN_OR_RETURN(auto out,
                       engine.run(
                           name, {in, weight, bias},
                           {spec(name + ".out", in.shape(), TensorKind::kActivation, dtype),
                            spec(name + ".mean", {N}, TensorKind::kActivation, kF32),
                            spec(name + ".rstd", {N}, TensorKind::kActivation, kF32)},
                           [=](const OpArgs& a) {
                             nn::layernorm_forward(a.launch, type, a.outputs[0], out_f32(a, 1),
                                                   out_f32(a, 2), a.inputs[0], a.inputs[1],
                                                   a.inputs[2], N, C);
                           },
                           cost));
  return LayerNormOut{out[0], out[1], out[2]};
}

Result<LayerNormGrads> layernorm_backward(Engine& engine, const std::string& name,
                                          const Tensor& dout, const Tensor& in,
                                          const Tensor& weight, const Tensor& mean,
                                          const Tensor& rstd, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(in, "in", rows_of(any())));
  const DType dtype = in.dtype();
  const std::int64_t c_len = in.shape().back();
  const std::int64_t n_rows = rows(in.shape());
  EBB_RETURN_IF_ERROR(check.expect(dout, "dout", exact(in.shape()), dtype));
  EBB_RETURN_IF_ERROR(check.expect(weight, "weight", exact({c_len}), dtype));
  EBB_RETURN_IF_ERROR(check.expect(mean, "mean", exact({n_rows}), kF32));
  EBB_RETURN_IF_ERROR(check.expect(rstd, "rstd", exact({n_rows}), kF32));
  EBB_ASSIGN_OR_RETURN(const int N, check.size("rows", n_rows));
  EBB_ASSIGN_OR_RETURN(const int C, check.size("C", c_len));
  EBB_ASSIGN_OR_RETURN(auto out,
                       engine.run(
                           name, {dout, in, weight, mean, rstd},
                           {spec(name + ".dinp", in.shape(), TensorKind::kGradient, dtype),
                            spec(name + ".dweight", {C}, TensorKind::kGradient, kF32),
                            spec(name + ".dbias", {C}, TensorKind::kGradient, kF32)},
                           [=](const OpArgs& a) {
                             nn::layernorm_backward(a.launch, type, a.outputs[0], out_f32(a, 1),
                                                    out_f32(a, 2), a.inputs[0], a.inputs[1],
                                                    a.inputs[2], in_f32(a, 3), in_f32(a, 4), N, C);
                           },
                           cost));
  return LayerNormGrads{out[0], out[1], out[2]};
}

Result<Tensor> matmul(Engine& engine, const std::string& name, const Tensor& in,
                      const Tensor& weight, const Tensor* bias, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(in, "in", rows_of(any())));
  const DType dtype = in.dtype();
  const std::int64_t c_len = in.shape().back();
  EBB_RETURN_IF_ERROR(check.expect(weight, "weight", {false, {any(), exactly(c_len)}}, dtype));
  const std::int64_t oc_len = weight.shape()[0];
  if (bias != nullptr) EBB_RETURN_IF_ERROR(check.expect(*bias, "bias", exact({oc_len}), dtype));
  EBB_ASSIGN_OR_RETURN(const int N, check.size("rows", rows(in.shape())));
  EBB_ASSIGN_OR_RETURN(const int C, check.size("C", c_len));
  EBB_ASSIGN_OR_RETURN(const int OC, check.size("OC", oc_len));
  std::vector<Tensor> inputs{in, weight};
  if (bias != nullptr) inputs.push_back(*bias);
  const bool has_bias = bias != nullptr;
  EBB_ASSIGN_OR_RETURN(
      auto out,
      engine.run(
          name, inputs, {spec(name, with_last(in.shape(), oc_len), TensorKind::kActivation, dtype)},
          [=](const OpArgs& a) {
            nn::matmul_forward(a.launch, type, a.outputs[0], a.inputs[0], a.inputs[1],
                               has_bias ? a.inputs[2] : nullptr, N, C, OC);
          },
          cost));
  return out[0];
}

Result<MatmulGrads> matmul_backward(Engine& engine, const std::string& name, const Tensor& dout,
                                    const Tensor& in, const Tensor& weight, bool has_bias,
                                    std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(in, "in", rows_of(any())));
  const DType dtype = in.dtype();
  const std::int64_t c_len = in.shape().back();
  EBB_RETURN_IF_ERROR(check.expect(weight, "weight", {false, {any(), exactly(c_len)}}, dtype));
  const std::int64_t oc_len = weight.shape()[0];
  EBB_RETURN_IF_ERROR(check.expect(dout, "dout", exact(with_last(in.shape(), oc_len)), dtype));
  EBB_ASSIGN_OR_RETURN(const int N, check.size("rows", rows(in.shape())));
  EBB_ASSIGN_OR_RETURN(const int C, check.size("C", c_len));
  EBB_ASSIGN_OR_RETURN(const int OC, check.size("OC", oc_len));
  std::vector<TensorSpec> outputs{spec(name + ".dinp", in.shape(), TensorKind::kGradient, dtype),
                                  spec(name + ".dweight", {OC, C}, TensorKind::kGradient, kF32)};
  if (has_bias) outputs.push_back(spec(name + ".dbias", {OC}, TensorKind::kGradient, kF32));
  EBB_ASSIGN_OR_RETURN(auto out, engine.run(
                                     name, {dout, in, weight}, std::move(outputs),
                                     [=](const OpArgs& a) {
                                       nn::matmul_backward(
                                           a.launch, type, a.outputs[0], out_f32(a, 1),
                                           has_bias ? out_f32(a, 2) : nullptr, a.inputs[0],
                                           a.inputs[1], a.inputs[2], N, C, OC);
                                     },
                                     cost));
  return MatmulGrads{out[0], out[1], has_bias ? out[2] : Tensor()};
}

Result<Tensor> gelu(Engine& engine, const std::string& name, const Tensor& in,
                    std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(in, "in", any_shape()));
  const std::int64_t n = elements(in.shape());
  EBB_ASSIGN_OR_RETURN(
      auto out,
      engine.run(
          name, {in}, {spec(name, in.shape(), TensorKind::kActivation, in.dtype())},
          [=](const OpArgs& a) { nn::gelu_forward(a.launch, type, a.outputs[0], a.inputs[0], n); },
          cost));
  return out[0];
}

Result<Tensor> gelu_backward(Engine& engine, const std::string& name, const Tensor& in,
                             const Tensor& dout, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(in, "in", any_shape()));
  EBB_RETURN_IF_ERROR(check.expect(dout, "dout", exact(in.shape()), in.dtype()));
  const std::int64_t n = elements(in.shape());
  EBB_ASSIGN_OR_RETURN(
      auto out, engine.run(
                    name, {in, dout}, {spec(name, in.shape(), TensorKind::kGradient, in.dtype())},
                    [=](const OpArgs& a) {
                      nn::gelu_backward(a.launch, type, a.outputs[0], a.inputs[0], a.inputs[1], n);
                    },
                    cost));
  return out[0];
}

Result<Tensor> add(Engine& engine, const std::string& name, const Tensor& a, const Tensor& b,
                   TensorKind kind, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type, check.expect_float(a, "a", any_shape()));
  EBB_RETURN_IF_ERROR(check.expect(b, "b", exact(a.shape()), a.dtype()));
  const std::int64_t n = elements(a.shape());
  EBB_ASSIGN_OR_RETURN(auto out, engine.run(
                                     name, {a, b}, {spec(name, a.shape(), kind, a.dtype())},
                                     [=](const OpArgs& args) {
                                       nn::add(args.launch, type, args.outputs[0], args.inputs[0],
                                               args.inputs[1], n);
                                     },
                                     cost));
  return out[0];
}

Result<AttentionOut> attention(Engine& engine, const std::string& name, const Tensor& qkv,
                               int batch, int seq, int heads, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const AttentionDims d, attention_dims(check, qkv, batch, seq, heads));
  const DType dtype = qkv.dtype();
  EBB_ASSIGN_OR_RETURN(
      auto out,
      engine.run(
          name, {qkv},
          {spec(name + ".out", with_last(qkv.shape(), d.channels), TensorKind::kActivation, dtype),
           spec(name + ".att", {d.batch, d.heads, d.seq, d.seq}, TensorKind::kActivation, dtype)},
          [=](const OpArgs& a) {
            nn::attention_forward(a.launch, d.type, a.outputs[0], a.outputs[1], a.inputs[0],
                                  d.batch, d.seq, d.channels, d.heads);
          },
          cost));
  return AttentionOut{out[0], out[1]};
}

Result<Tensor> attention_backward(Engine& engine, const std::string& name, const Tensor& dout,
                                  const Tensor& qkv, const Tensor& att, int batch, int seq,
                                  int heads, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const AttentionDims d, attention_dims(check, qkv, batch, seq, heads));
  const DType dtype = qkv.dtype();
  EBB_RETURN_IF_ERROR(check.expect(dout, "dout", exact(with_last(qkv.shape(), d.channels)), dtype));
  EBB_RETURN_IF_ERROR(check.expect(att, "att", exact({d.batch, d.heads, d.seq, d.seq}), dtype));
  EBB_ASSIGN_OR_RETURN(
      auto out, engine.run(
                    name, {dout, qkv, att}, {spec(name, qkv.shape(), TensorKind::kGradient, dtype)},
                    [=](const OpArgs& a) {
                      nn::attention_backward(a.launch, d.type, a.outputs[0], a.inputs[0],
                                             a.inputs[1], a.inputs[2], d.batch, d.seq, d.channels,
                                             d.heads);
                    },
                    cost));
  return out[0];
}

Result<CrossEntropyOut> softmax_cross_entropy(Engine& engine, const std::string& name,
                                              const Tensor& logits, const Tensor& targets,
                                              std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type,
                       check.expect_float(logits, "logits", rows_of(any())));
  EBB_RETURN_IF_ERROR(check.expect(targets, "targets", any_shape(), kI32));
  const std::int64_t n_rows = rows(logits.shape());
  if (elements(targets.shape()) != n_rows) {
    return check.error(Checks::describe(targets, "targets") + ", expected one per row of " +
                       Checks::describe(logits, "logits") + " (" + std::to_string(n_rows) + ")");
  }
  EBB_ASSIGN_OR_RETURN(const int N, check.size("rows", n_rows));
  EBB_ASSIGN_OR_RETURN(const int V, check.size("V", logits.shape().back()));
  EBB_ASSIGN_OR_RETURN(
      auto out,
      engine.run(
          name, {logits, targets},
          {spec(name + ".losses", {N}, TensorKind::kActivation, kF32),
           spec(name + ".probs", logits.shape(), TensorKind::kActivation, logits.dtype())},
          [=](const OpArgs& a) {
            nn::softmax_cross_entropy_forward(a.launch, type, out_f32(a, 0), a.outputs[1],
                                              a.inputs[0], in_i32(a, 1), N, V);
          },
          cost));
  return CrossEntropyOut{out[0], out[1]};
}

Result<Tensor> softmax_cross_entropy_backward(Engine& engine, const std::string& name,
                                              const Tensor& probs, const Tensor& targets,
                                              float dloss, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType type,
                       check.expect_float(probs, "probs", rows_of(any())));
  EBB_RETURN_IF_ERROR(check.expect(targets, "targets", any_shape(), kI32));
  const std::int64_t n_rows = rows(probs.shape());
  if (elements(targets.shape()) != n_rows) {
    return check.error(Checks::describe(targets, "targets") + ", expected one per row of " +
                       Checks::describe(probs, "probs") + " (" + std::to_string(n_rows) + ")");
  }
  if (!std::isfinite(dloss))
    return check.error("dloss " + std::to_string(dloss) + " is not finite");
  EBB_ASSIGN_OR_RETURN(const int N, check.size("rows", n_rows));
  EBB_ASSIGN_OR_RETURN(const int V, check.size("V", probs.shape().back()));
  EBB_ASSIGN_OR_RETURN(
      auto out,
      engine.run(
          name, {probs, targets}, {spec(name, probs.shape(), TensorKind::kGradient, probs.dtype())},
          [=](const OpArgs& a) {
            nn::softmax_cross_entropy_backward(a.launch, type, a.outputs[0], a.inputs[0],
                                               in_i32(a, 1), dloss, N, V);
          },
          cost));
  return out[0];
}

Result<Tensor> mean(Engine& engine, const std::string& name, const Tensor& in,
                    std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_RETURN_IF_ERROR(check.expect(in, "in", any_shape(), kF32));
  const std::int64_t n = elements(in.shape());
  EBB_ASSIGN_OR_RETURN(auto out, engine.run(
                                     name, {in}, {spec(name, {1}, TensorKind::kActivation, kF32)},
                                     [=](const OpArgs& a) {
                                       nn::mean(a.launch, nn::FloatType::kF32, out_f32(a, 0),
                                                in_f32(a, 0), n);
                                     },
                                     cost));
  return out[0];
}

Result<AdamWOut> adamw(Engine& engine, const std::string& name, const Tensor& param,
                       const Tensor& grad, const Tensor& m, const Tensor& v,
                       const nn::AdamWConfig& config, int step, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_RETURN_IF_ERROR(check.expect(param, "param", any_shape(), kF32));
  const Pattern like_param = exact(param.shape());
  EBB_RETURN_IF_ERROR(check.expect(grad, "grad", like_param, kF32));
  EBB_RETURN_IF_ERROR(check.expect(m, "m", like_param, kF32));
  EBB_RETURN_IF_ERROR(check.expect(v, "v", like_param, kF32));
  if (step < 1) return check.error("step " + std::to_string(step) + " is not >= 1");
  const std::int64_t n = elements(param.shape());
  EBB_ASSIGN_OR_RETURN(
      auto out, engine.run(
                    name, {param, grad, m, v},
                    {spec(param.name(), param.shape(), TensorKind::kParameter, kF32),
                     spec(m.name(), param.shape(), TensorKind::kOptimizerState, kF32),
                     spec(v.name(), param.shape(), TensorKind::kOptimizerState, kF32)},
                    [=](const OpArgs& a) {
                      nn::adamw(a.launch, out_f32(a, 0), out_f32(a, 1), out_f32(a, 2), in_f32(a, 0),
                                in_f32(a, 1), in_f32(a, 2), in_f32(a, 3), n, config, step);
                    },
                    cost));
  return AdamWOut{out[0], out[1], out[2]};
}

Result<Tensor> cast(Engine& engine, const std::string& name, const Tensor& in, DType to,
                    TensorKind kind, std::chrono::nanoseconds cost) {
  const Checks check(engine, name);
  EBB_ASSIGN_OR_RETURN(const nn::FloatType from, check.expect_float(in, "in", any_shape()));
  const std::optional<nn::FloatType> to_type = float_type_of(to);
  if (!to_type.has_value()) {
    return check.error("cast of " + Checks::describe(in, "in") + " to " +
                       std::string(dtype_name(to)) + ", expected f32, bf16 or f16");
  }
  const std::int64_t n = elements(in.shape());
  EBB_ASSIGN_OR_RETURN(auto out, engine.run(
                                     name, {in}, {spec(name, in.shape(), kind, to)},
                                     [=, to = *to_type](const OpArgs& a) {
                                       nn::cast(a.launch, to, a.outputs[0], from, a.inputs[0], n);
                                     },
                                     cost));
  return out[0];
}

}  // namespace ebb::ops
