// memory_formulas: the published formulas of training memory that ebb's figures are checked
// against (issue 18, "Checked against published figures"), beside ebb's own, derived term by term
// from what the reference trainer keeps.
//
//  - The ZeRO paper (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
//    Parameter Models", SC 2020, Section 5 and Figure 1): mixed-precision Adam keeps 2Ψ bytes of
//    16-bit parameters, 2Ψ of 16-bit gradients and KΨ of optimizer state (K = 12: fp32 master
//    weights, momentum and variance); stage 1 partitions the KΨ over the N data-parallel ranks,
//    stage 2 the gradients too, stage 3 the parameters too.
//  - DeepSpeed's estimators, as read in deepspeedai/DeepSpeed on 2026-12-06:
//    estimate_zero2_model_states_mem_needs in deepspeed/runtime/zero/stage_1_and_2.py (commit
//    02aa38c3) and estimate_zero3_model_states_mem_needs in deepspeed/runtime/zero/stage3.py
//    (commit 007cca6a), without offload: per GPU 2Ψ + 18Ψ/N (stage 2) and 4·L + 18Ψ/N (stage 3,
//    L the largest layer's parameters). Their 18 = 2 (16-bit gradients) + 4 (fp32 gradients) + 4
//    (fp32 master weights) + 8 (Adam's moments): DeepSpeed keeps an fp32 copy of the gradient
//    partition that the paper's K leaves out, and its stage 3 term 4·L is the gathered working
//    copy of the largest layer (which ebb counts as communication buffers, not model state).
//  - Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (2022),
//    Section 4.1: 34·s·b·h + 5·a·s²·b bytes per layer in 16-bit without recompute, s the
//    sequence, b the micro-batch, h the width, a the heads. It counts dropout: a 1-byte mask and a
//    2-byte output after the attention softmax (3·a·s²·b) and a 1-byte mask after each of the two
//    residual projections (2·s·b·h). ebb's trainer has no dropout, so its own formula
//    (block_activation_terms) is 32·s·b·h + 2·a·s²·b in 16-bit, plus what the paper omits: the
//    LayerNorms' fp32 mean and reciprocal deviation per row (16·s·b).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "tools/train/trainer.h"

namespace ebb::train {

// Model-state bytes per GPU by the ZeRO paper: Ψ parameters, N ranks, stage 0-3, K bytes of
// optimizer state per parameter. REQUIRES: ranks >= 1, 0 <= stage <= 3.
double zero_paper_model_state_bytes(double parameters, int ranks, int stage, double k = 12);
// DeepSpeed's estimates per GPU without offload (see the file comment).
double deepspeed_zero2_model_state_bytes(double parameters, int gpus);
double deepspeed_zero3_model_state_bytes(double parameters, double largest_layer_parameters,
                                         int gpus);
// Korthikanti et al.'s activation bytes per layer: 34·s·b·h + 5·a·s²·b.
double korthikanti_activation_bytes_per_layer(double seq, double batch, double width, double heads);

// One tensor a block of the reference trainer keeps from its forward to its backward
// (tools/train/gpt_model.cc), with its bytes as the allocator holds them (rounded to 512 B) and
// the term of Korthikanti et al. it corresponds to.
struct ActivationTerm {
  std::string tensor;       // e.g. "qkv"
  std::size_t bytes = 0;    // as allocated
  std::string formula;      // its size, e.g. "6sbh" (16-bit)
  std::string korthikanti;  // the paper's term it matches, or why none does
};
// The tensors of one block, in the order the forward makes them, for the options' model and
// precision (activations in the precision's dtype, LayerNorm statistics in fp32).
std::vector<ActivationTerm> block_activation_terms(const TrainOptions& options);
// Their sum: the activation bytes one more block adds to the step's peak without recompute.
std::size_t block_activation_bytes(const TrainOptions& options);

}  // namespace ebb::train
