// op_work: what each operator of the reference model (gpt_model.cc) does to the device, from
// its shapes: the FLOPs it computes and the bytes it moves to and from device memory, as a
// KernelWork (engine/planner/cost_model.h) whose kernel_time on a chip is the op's modelled
// cost on a sim device.
//
// Counting conventions, so that every op is counted alike:
//   - A multiply-add is 2 FLOPs; a matmul [rows, in] x [in, out] is 2 * rows * in * out. A
//     bias add, a layernorm's arithmetic and a softmax's are counted per element (the constants
//     of each function say how many).
//   - Bytes are each input read once and each output written once, in their storage dtypes
//     (`dtype` for activations and working parameters; f32 for layernorm statistics, losses,
//     and weight and bias gradients, as engine/nn_ops.h stores them). Caches and fusion are the
//     cost model's business, not this file's.
//   - Attention is the causal, materialized kind engine/nn_ops.h runs (llm.c's): the scores and
//     probabilities [B, NH, T, T] are written, and only the T(T+1)/2 causal entries of each head
//     are computed.
//   - Matmuls and attention run at the precision of their dtype (f32: kFp32; bf16, f16: their
//     tensor-core rate); every other op's arithmetic is counted at kFp32, which it runs in.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>

#include "engine/planner/cost_model.h"
#include "engine/schema/tensor_kind.h"

namespace ebb::train {

// The precision a matmul over `dtype` runs in: f32 -> kFp32, bf16 -> kBf16, f16 -> kFp16.
MathPrecision matmul_precision(DType dtype);

// out [rows, out] = in [rows, in] x weight[out, in]^T (+ bias [out]).
KernelWork matmul_work(std::int64_t rows, std::int64_t in, std::int64_t out, bool bias,
                       DType dtype);
// dinp = dout x weight, dweight = dout^T x in (f32), and dbias (f32) when there is a bias.
KernelWork matmul_backward_work(std::int64_t rows, std::int64_t in, std::int64_t out, bool bias,
                                DType dtype);

// Causal self-attention over qkv [batch * seq, 3 * channels] with `heads` heads.
KernelWork attention_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                          std::int64_t heads, DType dtype);
KernelWork attention_backward_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                                   std::int64_t heads, DType dtype);

// LayerNorm over [rows, channels] with a weight and bias [channels].
KernelWork layernorm_work(std::int64_t rows, std::int64_t channels, DType dtype);
KernelWork layernorm_backward_work(std::int64_t rows, std::int64_t channels, DType dtype);

// GELU (tanh approximation) over `elements`.
KernelWork gelu_work(std::int64_t elements, DType dtype);
KernelWork gelu_backward_work(std::int64_t elements, DType dtype);

// out = a + b over `elements` (the residual adds, and the backward's sums of gradients).
KernelWork add_work(std::int64_t elements, DType dtype);

// out [batch * seq, channels] = wte[tokens] + wpe[t], tokens i32.
KernelWork embedding_work(std::int64_t batch, std::int64_t seq, std::int64_t channels, DType dtype);
// dwte [vocab, channels] and dwpe [seq, channels] (f32) from dout [batch * seq, channels].
KernelWork embedding_backward_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                                   std::int64_t vocab, DType dtype);

// Softmax and cross-entropy over logits [rows, vocab]: probabilities and per-row losses (f32).
KernelWork cross_entropy_work(std::int64_t rows, std::int64_t vocab, DType dtype);
// dlogits = (probs - onehot(targets)) * dloss.
KernelWork cross_entropy_backward_work(std::int64_t rows, std::int64_t vocab, DType dtype);

// The mean of `elements` f32 values.
KernelWork mean_work(std::int64_t elements);

// A gradient (f32, `elements`) added into its buffer of `grad_dtype` (ModelState::accumulate).
KernelWork accumulate_work(std::int64_t elements, DType grad_dtype);

// One AdamW update of `elements` parameters: reads the gradient (grad_dtype), the two f32
// moments and the f32 master weights (when the working dtype is 16-bit), writes them back and
// the working parameters (param_dtype).
KernelWork adamw_work(std::int64_t elements, DType param_dtype, DType grad_dtype);

}  // namespace ebb::train
