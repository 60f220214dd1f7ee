// The FLOPs and bytes op_work.h counts for each op of the reference model, against counts done
// by hand on small shapes.
#include "tools/train/op_work.h"

#include <gtest/gtest.h>

namespace ebb::train {
namespace {

constexpr std::int64_t kB = 8;
constexpr std::int64_t kT = 1024;
constexpr std::int64_t kC = 768;
constexpr std::int64_t kN = kB * kT;

// The MLP's first matmul, [B*T, C] x [C, 4C]: 2 * B * T * C * 4C FLOPs, GPT-2 small's shapes.
TEST(OpWork, MatmulForwardIsTwoFlopsPerMultiplyAdd) {
  const KernelWork w = matmul_work(kN, kC, 4 * kC, /*bias=*/false, DType::kF32);
  EXPECT_EQ(w.kind, KernelClass::kGemm);
  EXPECT_EQ(w.precision, MathPrecision::kFp32);
  EXPECT_DOUBLE_EQ(w.flops, 2.0 * kB * kT * kC * 4 * kC);  // 77.3 GFLOP
  // in, weight, out in f32.
  EXPECT_DOUBLE_EQ(w.bytes, 4.0 * (kN * kC + 4 * kC * kC + kN * 4 * kC));
  // The bias: one add per output element, and its 4C values read.
  const KernelWork b = matmul_work(kN, kC, 4 * kC, /*bias=*/true, DType::kBF16);
  EXPECT_EQ(b.precision, MathPrecision::kBf16);
  EXPECT_DOUBLE_EQ(b.flops, 2.0 * kN * kC * 4 * kC + kN * 4 * kC);
  EXPECT_DOUBLE_EQ(b.bytes, 2.0 * (kN * kC + 4 * kC * kC + 4 * kC + kN * 4 * kC));
}

// Backward is two matmuls of the forward's size (dinp and dweight); the weight gradients are f32.
TEST(OpWork, MatmulBackwardIsTwiceTheForward) {
  const KernelWork f = matmul_work(kN, kC, 3 * kC, false, DType::kBF16);
  const KernelWork b = matmul_backward_work(kN, kC, 3 * kC, false, DType::kBF16);
  EXPECT_DOUBLE_EQ(b.flops, 2 * f.flops);
  // dout, in, weight read (bf16); dinp (bf16) and dweight (f32) written.
  EXPECT_DOUBLE_EQ(b.bytes,
                   2.0 * (kN * 3 * kC + kN * kC + 3 * kC * kC) + 2.0 * kN * kC + 4.0 * 3 * kC * kC);
  const KernelWork with_bias = matmul_backward_work(kN, kC, 3 * kC, true, DType::kBF16);
  EXPECT_DOUBLE_EQ(with_bias.flops - b.flops, static_cast<double>(kN) * 3 * kC);  // dbias sums
  EXPECT_DOUBLE_EQ(with_bias.bytes - b.bytes, 4.0 * 3 * kC);                      // dbias f32
}

// B=1, T=2, C=4, two heads of 2 channels: 3 causal entries per head (t0-t0, t1-t0, t1-t1).
// Per entry and head: q.k 2 multiply-adds (4 FLOPs), att.v 4 FLOPs, softmax 5: 13, times 3
// entries and 2 heads is 78.
TEST(OpWork, AttentionCountsTheCausalEntries) {
  const KernelWork w = attention_work(1, 2, 4, 2, DType::kF32);
  EXPECT_EQ(w.kind, KernelClass::kAttention);
  EXPECT_DOUBLE_EQ(w.flops, 78);
  // qkv [2, 12] read; out [2, 4] and att [1, 2, 2, 2] written: 24 + 8 + 8 floats.
  EXPECT_DOUBLE_EQ(w.bytes, 4.0 * 40);
  // Backward: four products (16 FLOPs an entry and head) and the softmax's 4: 20 x 6 = 120;
  // dout [2, 4], qkv, att read, dqkv [2, 12] written: 8 + 24 + 8 + 24 floats.
  const KernelWork b = attention_backward_work(1, 2, 4, 2, DType::kF32);
  EXPECT_DOUBLE_EQ(b.flops, 120);
  EXPECT_DOUBLE_EQ(b.bytes, 4.0 * 64);
}

TEST(OpWork, ElementwiseAndReductionOps) {
  const KernelWork ln = layernorm_work(kN, kC, DType::kBF16);
  EXPECT_EQ(ln.kind, KernelClass::kReduction);
  EXPECT_EQ(ln.precision, MathPrecision::kFp32);  // not on tensor cores
  EXPECT_DOUBLE_EQ(ln.flops, 8.0 * kN * kC);
  // in, out (bf16), weight and bias (bf16), mean and rstd (f32).
  EXPECT_DOUBLE_EQ(ln.bytes, 2.0 * (2 * kN * kC + 2 * kC) + 4.0 * 2 * kN);

  const KernelWork add = add_work(kN * kC, DType::kF32);
  EXPECT_EQ(add.kind, KernelClass::kElementwise);
  EXPECT_DOUBLE_EQ(add.flops, static_cast<double>(kN) * kC);
  EXPECT_DOUBLE_EQ(add.bytes, 3.0 * 4 * kN * kC);  // a, b read; out written

  const KernelWork gelu = gelu_work(kN * 4 * kC, DType::kF32);
  EXPECT_DOUBLE_EQ(gelu.flops, 9.0 * kN * 4 * kC);
  EXPECT_DOUBLE_EQ(gelu.bytes, 2.0 * 4 * kN * 4 * kC);

  // Logits [N, 50257]: read, and the probabilities written, in the activation dtype.
  const KernelWork xent = cross_entropy_work(kN, 50257, DType::kBF16);
  EXPECT_DOUBLE_EQ(xent.flops, 5.0 * kN * 50257);
  EXPECT_DOUBLE_EQ(xent.bytes, 2.0 * 2 * kN * 50257 + 4.0 * 2 * kN);
}

TEST(OpWork, EmbeddingBackwardWritesTheWholeTables) {
  const KernelWork w = embedding_backward_work(2, 3, 4, 10, DType::kF32);
  // dout [6, 4] and the 6 tokens read; dwte [10, 4] and dwpe [3, 4] (f32) written.
  EXPECT_DOUBLE_EQ(w.bytes, 4.0 * (24 + 6 + 40 + 12));
  EXPECT_DOUBLE_EQ(w.flops, 2.0 * 24);
}

// AdamW: gradient read; weights (the f32 master, or the f32 parameters), m and v read and
// written; a 16-bit working copy written beside a master.
TEST(OpWork, AdamWMovesTheStateOnceEachWay) {
  const std::int64_t n = 1000;
  EXPECT_DOUBLE_EQ(adamw_work(n, DType::kF32, DType::kF32).bytes, n * (4.0 + 2 * 12));
  EXPECT_DOUBLE_EQ(adamw_work(n, DType::kBF16, DType::kBF16).bytes, n * (2.0 + 2 * 12 + 2));
  EXPECT_DOUBLE_EQ(adamw_work(n, DType::kBF16, DType::kF32).bytes, n * (4.0 + 2 * 12 + 2));
  EXPECT_DOUBLE_EQ(accumulate_work(n, DType::kBF16).bytes, n * (4.0 + 2 * 2));
}

}  // namespace
}  // namespace ebb::train
