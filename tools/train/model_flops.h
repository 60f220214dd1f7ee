// model_flops: the FLOPs of one training token of the reference model, as model FLOPs
// utilisation (MFU) counts them: 6Ψ for the matrix products of the forward and backward passes
// (2 per parameter forward, 4 backward; Kaplan et al. 2020, Section 2.1) plus the attention's
// 12·L·h·s (its score and value products, which touch no parameter; Chowdhery et al. 2022,
// "PaLM", Appendix B: 6N + 12·L·H·Q·T with H·Q = h the width and T = s the sequence).
// Recompute is not counted: MFU measures the model's work, not the schedule's.
//
// Thread safety: pure functions.
#pragma once

#include "tools/train/gpt_config.h"

namespace ebb::train {

// Ψ in the 6Ψ term: the parameters of the matrix products, the embeddings included (the output
// head is tied to the token embedding, so its product is counted once, as PaLM counts N).
double model_flops_per_token(const GptConfig& config);
// Model FLOPs utilisation: tokens per second times model_flops_per_token, over the device's
// peak FLOP/s. REQUIRES: peak_flops_per_s > 0.
double model_flops_utilisation(const GptConfig& config, double tokens_per_s,
                               double peak_flops_per_s);

}  // namespace ebb::train
