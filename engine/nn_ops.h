// nn_ops: the kernels of kernels/nn.h as typed engine ops. Each function checks its inputs'
// dtypes and shapes against what the kernel reads, derives its outputs' specs (shape, dtype,
// kind, name) from them, and runs the kernel through Engine::run with a closure that captures
// the sizes by value, so a training loop never writes an output spec or a closure by hand and a
// mismatch is reported before anything runs, naming the op, the argument and the tensor:
//   op 'h0.qkv': weight 'h0.qkv_w' is [64,64] f32, expected [192,64] f32
//
// Shape convention. Activations are 2-D [rows, channels]: a batch of B sequences of T positions
// is N = B*T rows, row b*T + t. Row-wise ops (layernorm, matmul, attention, softmax cross-entropy)
// take an activation of any rank >= 1 as [..., C], rows = the product of the leading dimensions,
// and their row-shaped outputs keep those leading dimensions; per-row statistics (layernorm mean
// and rstd, cross-entropy losses) are 1-D [rows]. Tokens and targets are i32; embedding reads B
// and T from tokens [B, T] and writes [B*T, C]; attention, which needs the sequence structure,
// takes batch and seq explicitly and checks batch*seq == rows. Parameters have the shapes of
// kernels/nn.h (weight [OC, C], bias [OC], layernorm weight and bias [C], wte [V, C], wpe
// [>= T, C]). Elementwise ops (gelu, add, adamw, cast) take any shape, equal between their
// inputs. A backward op's gradients have the shapes of what they are gradients of. Every size a
// kernel takes as int (rows, channels, B, T, V, heads) must fit in an int.
//
// Dtypes (mixed precision, kernels/nn.h). An op runs its kernels in the storage type of its
// activations and parameters, f32, bf16 or f16, taken from the activation it checks first (in,
// a, qkv, logits, probs; wte for embedding, dout for embedding_backward); every other
// activation or parameter input must have that dtype (a mismatch is refused naming the tensor),
// and its activation and activation-gradient outputs get it. These are f32 whatever the storage
// type: layernorm's mean and rstd (in and out), the cross-entropy losses, mean's input and
// output, and every weight and bias gradient (matmul and layernorm dweight and dbias, embedding
// dwte and dwpe). adamw is f32 only. cast converts between the three. nn::accumulate, which adds
// into a buffer it reads, has no op here: Engine::run never lets a closure write an input.
//
// Names. A single-output op's output is named after the op; a multi-output op's outputs are
// named "<op>.<field>" after the fields of its result struct (e.g. "h0.ln1.mean"). adamw is the
// exception: its outputs keep the names of the parameter and moments they replace, so that a
// parameter keeps its name from step to step. Forward outputs are kActivation, backward outputs
// kGradient, adamw's kParameter and kOptimizerState.
//
// Cost. Every op takes a `cost` (0: unknown), its modelled time, given to Engine::run: a sim
// device's clock advances by it in place of running the kernel, and eviction and recompute
// estimates use it (engine/engine.h).
//
// Errors: kInvalidArgument for an empty, foreign or released tensor, a wrong dtype or shape, or
// a bad size argument, with nothing run and the engine usable; otherwise whatever Engine::run
// returns. REQUIRES what the checks cannot see: token and target ids in [0, V).
//
// Thread safety: as Engine (not thread-safe; the thread that drives the engine calls these).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "engine/runtime/tensor.h"
#include "kernels/nn.h"
#include "kernels/status.h"

namespace ebb::ops {

struct EmbeddingGrads {
  Tensor dwte;  // [V, C]
  Tensor dwpe;  // [T, C]
};

struct LayerNormOut {
  Tensor out;   // like the input
  Tensor mean;  // [rows]
  Tensor rstd;  // [rows]
};

struct LayerNormGrads {
  Tensor dinp;     // like the input
  Tensor dweight;  // [C]
  Tensor dbias;    // [C]
};

struct MatmulGrads {
  Tensor dinp;     // like the input
  Tensor dweight;  // [OC, C]
  Tensor dbias;    // [OC]; no tensor (valid() false) when the forward had no bias
};

struct AttentionOut {
  Tensor out;  // [..., C], the leading dimensions of qkv
  Tensor att;  // [B, NH, T, T], softmax probabilities saved for backward
};

struct CrossEntropyOut {
  Tensor losses;  // [rows]
  Tensor probs;   // like the logits
};

struct AdamWOut {
  Tensor param;  // p', kParameter, named as p
  Tensor m;      // m', kOptimizerState, named as m
  Tensor v;      // v', kOptimizerState, named as v
};

// out [B*T, C] = wte[tokens] + wpe[t]. tokens [B, T] i32, wte [V, C], wpe [>= T, C].
Result<Tensor> embedding(Engine& engine, const std::string& name, const Tensor& tokens,
                         const Tensor& wte, const Tensor& wpe,
                         std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
// dout [..., C] with B*T rows, tokens [B, T] i32. dwte [vocab, C], dwpe [T, C].
Result<EmbeddingGrads> embedding_backward(
    Engine& engine, const std::string& name, const Tensor& dout, const Tensor& tokens, int vocab,
    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// in [..., C], weight [C], bias [C].
Result<LayerNormOut> layernorm(Engine& engine, const std::string& name, const Tensor& in,
                               const Tensor& weight, const Tensor& bias,
                               std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
// dout like in; weight [C]; mean and rstd [rows] (layernorm's outputs for `in`).
Result<LayerNormGrads> layernorm_backward(
    Engine& engine, const std::string& name, const Tensor& dout, const Tensor& in,
    const Tensor& weight, const Tensor& mean, const Tensor& rstd,
    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// out [..., OC] = in [..., C] * weight[OC, C]^T + bias [OC]; bias may be null.
Result<Tensor> matmul(Engine& engine, const std::string& name, const Tensor& in,
                      const Tensor& weight, const Tensor* bias,
                      std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
// dout [..., OC] with in's leading dimensions. `has_bias` says whether the forward had a bias
// (whether dbias is computed).
Result<MatmulGrads> matmul_backward(Engine& engine, const std::string& name, const Tensor& dout,
                                    const Tensor& in, const Tensor& weight, bool has_bias,
                                    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// out = gelu(in), any shape.
Result<Tensor> gelu(Engine& engine, const std::string& name, const Tensor& in,
                    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
// dinp = gelu'(in) * dout; in and dout of one shape.
Result<Tensor> gelu_backward(Engine& engine, const std::string& name, const Tensor& in,
                             const Tensor& dout,
                             std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// out = a + b; a and b of one shape. `kind` is the output's: kActivation for the residual,
// kGradient for a sum of gradient contributions.
Result<Tensor> add(Engine& engine, const std::string& name, const Tensor& a, const Tensor& b,
                   TensorKind kind = TensorKind::kActivation,
                   std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// Causal self-attention with `heads` heads over qkv [..., 3C] with batch*seq rows; heads
// divides C.
Result<AttentionOut> attention(Engine& engine, const std::string& name, const Tensor& qkv,
                               int batch, int seq, int heads,
                               std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
// dqkv like qkv. dout [..., C] with qkv's leading dimensions, att [B, NH, T, T] (attention's).
Result<Tensor> attention_backward(Engine& engine, const std::string& name, const Tensor& dout,
                                  const Tensor& qkv, const Tensor& att, int batch, int seq,
                                  int heads,
                                  std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// logits [..., V]; targets i32 of any shape with one element per row.
Result<CrossEntropyOut> softmax_cross_entropy(
    Engine& engine, const std::string& name, const Tensor& logits, const Tensor& targets,
    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
// dlogits like probs = (probs - onehot(targets)) * dloss; dloss is d(loss)/d(losses[n]).
Result<Tensor> softmax_cross_entropy_backward(
    Engine& engine, const std::string& name, const Tensor& probs, const Tensor& targets,
    float dloss, std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// out [1] = the mean of every element of in (f32).
Result<Tensor> mean(Engine& engine, const std::string& name, const Tensor& in,
                    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// One AdamW step out of place: param, grad, m and v of one shape, f32; step >= 1.
Result<AdamWOut> adamw(Engine& engine, const std::string& name, const Tensor& param,
                       const Tensor& grad, const Tensor& m, const Tensor& v,
                       const nn::AdamWConfig& config, int step,
                       std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

// The kernels' storage type of an engine float dtype (f32, bf16, f16); nullopt for the others.
std::optional<nn::FloatType> float_type_of(DType dtype);

// out = in converted to dtype `to` (f32, bf16 or f16; nn::cast: narrowing rounds to nearest
// even, the same dtype copies). `kind` is the output's, as for add.
Result<Tensor> cast(Engine& engine, const std::string& name, const Tensor& in, DType to,
                    TensorKind kind = TensorKind::kActivation,
                    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));

}  // namespace ebb::ops
