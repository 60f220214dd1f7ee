// The published memory formulas (tools/train/memory_formulas.h) at the figures their sources
// print, and ebb's own activation formula against what the trainer's engine measures.
#include "tools/train/memory_formulas.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tools/train/model_flops.h"

namespace ebb::train {
namespace {

// ZeRO paper, Figure 1: Ψ = 7.5B, N = 64, K = 12: 120 GB, 31.4 GB, 16.6 GB and 1.9 GB per GPU
// for the model states of stages 0 to 3 (GB = 1e9 bytes).
TEST(MemoryFormulas, ZeroPaperFigureOne) {
  const double psi = 7.5e9;
  const double expected_gb[] = {120.0, 31.4, 16.6, 1.9};
  for (int stage = 0; stage <= 3; ++stage) {
    EXPECT_NEAR(zero_paper_model_state_bytes(psi, 64, stage) / 1e9, expected_gb[stage], 0.05)
        << "stage " << stage;
  }
}

// ebb's own model-state formula (trainer.h) in bf16 with AdamW is the paper's with K = 12 at
// every stage: 16-bit parameters and gradients, fp32 master weights and two fp32 moments.
TEST(MemoryFormulas, EbbModelStateIsThePapersForMixedAdamW) {
  TrainOptions o;
  o.precision = Precision::kBF16;
  for (int stage = 0; stage <= 3; ++stage) {
    o.zero_stage = stage;
    EXPECT_DOUBLE_EQ(model_state_bytes_per_parameter(o, 64),
                     zero_paper_model_state_bytes(1.0, 64, stage))
        << "stage " << stage;
  }
}

// DeepSpeed's estimators at one GPU and many: 20Ψ at N = 1 for stage 2 (the paper's 16Ψ plus
// the fp32 gradient copy), and the stage 3 working copy of the largest layer.
TEST(MemoryFormulas, DeepSpeedEstimators) {
  EXPECT_DOUBLE_EQ(deepspeed_zero2_model_state_bytes(1e9, 1), 20e9);
  EXPECT_DOUBLE_EQ(deepspeed_zero2_model_state_bytes(1e9, 8), 2e9 + 18e9 / 8);
  EXPECT_DOUBLE_EQ(deepspeed_zero3_model_state_bytes(1e9, 1e8, 8), 4e8 + 18e9 / 8);
  // Above the paper's stage 2 by the fp32 gradient partition, 4Ψ/N.
  EXPECT_DOUBLE_EQ(
      deepspeed_zero2_model_state_bytes(1e9, 8) - zero_paper_model_state_bytes(1e9, 8, 2), 4e9 / 8);
}

// Korthikanti et al.'s formula, and ebb's derived from the tensors a block keeps: without
// dropout the paper's count is 32sbh + 2as^2b, which ebb's terms reproduce in 16-bit, plus the
// LayerNorm statistics the paper leaves out.
TEST(MemoryFormulas, EbbActivationsAreKorthikantiWithoutDropout) {
  EXPECT_DOUBLE_EQ(korthikanti_activation_bytes_per_layer(1024, 8, 4096, 32),
                   34.0 * 1024 * 8 * 4096 + 5.0 * 32 * 1024 * 1024 * 8);
  TrainOptions o;
  o.model = {.layers = 1, .d_model = 256, .heads = 4, .seq = 128, .batch = 4, .vocab = 512};
  o.precision = Precision::kBF16;
  const double s = 128, b = 4, h = 256, a = 4;
  const double without_dropout = 32 * s * b * h + 2 * a * s * s * b;
  const double statistics = 16 * s * b;
  EXPECT_DOUBLE_EQ(static_cast<double>(block_activation_bytes(o)), without_dropout + statistics);
  EXPECT_DOUBLE_EQ(korthikanti_activation_bytes_per_layer(s, b, h, a) - without_dropout,
                   2 * s * b * h + 3 * a * s * s * b);
}

// What one more block adds to the step's activation peak, measured by the engine's allocator
// (activations by kind), is the formula's sum, byte for byte, in fp32 and in bf16.
TEST(MemoryFormulas, OneMoreBlockAddsTheFormulasBytes) {
  for (Precision precision : {Precision::kF32, Precision::kBF16}) {
    TrainOptions o;
    o.model = {.layers = 2, .d_model = 64, .heads = 4, .seq = 32, .batch = 4, .vocab = 128};
    o.precision = precision;
    o.steps = 2;
    Result<TrainResult> two = train(o);
    ASSERT_TRUE(two.ok()) << two.status().to_string();
    o.model.layers = 3;
    Result<TrainResult> three = train(o);
    ASSERT_TRUE(three.ok()) << three.status().to_string();
    EXPECT_EQ(three->peak_activation_bytes - two->peak_activation_bytes,
              static_cast<std::int64_t>(block_activation_bytes(o)))
        << precision_name(precision);
  }
}

// GPT-2 124M at s = 1024: Ψ = 124,439,808 with the embeddings (vocab 50,257), so 6Ψ = 746.6
// MFLOP per token, and the attention's 12·L·h·s = 12 x 12 x 768 x 1024 = 113.2 MFLOP.
TEST(ModelFlops, PerTokenIsSixPsiPlusAttention) {
  GptConfig c{.layers = 12, .d_model = 768, .heads = 12, .seq = 1024, .batch = 16, .vocab = 50257};
  EXPECT_EQ(parameter_count(c), 124439808);
  EXPECT_DOUBLE_EQ(model_flops_per_token(c), 6.0 * 124439808 + 12.0 * 12 * 768 * 1024);
  // 100k tokens/s on a 989 TFLOP/s (H100 SXM, dense bf16) device.
  EXPECT_NEAR(model_flops_utilisation(c, 1e5, 989e12), 1e5 * 859.8e6 / 989e12, 1e-4);
}

}  // namespace
}  // namespace ebb::train
