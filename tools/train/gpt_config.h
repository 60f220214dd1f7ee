// GptConfig: the shape of ebb's reference model, a GPT-2-style decoder (token and position
// embeddings, `layers` pre-LayerNorm blocks of causal multi-head attention and a 4x GELU MLP, a
// final LayerNorm, and an output head tied to the token embedding), and what it implies: the
// parameter tensors in order, their shapes and counts.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/status.h"

namespace ebb::train {

struct GptConfig {
  int layers = 2;
  int d_model = 64;  // C, the width
  int heads = 4;     // NH; d_model must be a multiple of it
  int seq = 64;      // T, tokens per sequence
  int batch = 8;     // B, sequences per step
  int vocab = 256;   // V, token ids are in [0, vocab)
};

// A published model's shape under a name (--model): its depth, width, heads, vocabulary and
// sequence length. Every preset keeps this trainer's GPT-2 block (LayerNorm, a 4x GELU MLP,
// learned positions): the LLaMA-like ones have LLaMA's sizes, not its RMSNorm, SwiGLU or
// rotary positions.
struct ModelPreset {
  std::string_view name;
  int layers = 0;
  int d_model = 0;
  int heads = 0;
  int vocab = 0;
  int seq = 0;
};

// gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b, llama-7b-like, llama-13b-like.
std::span<const ModelPreset> model_presets();

// The preset called `name`; kInvalidArgument naming it and listing the presets.
Result<ModelPreset> find_model_preset(std::string_view name);

// The shape fields given explicitly alongside a preset, which win over the preset's.
struct ShapeOverrides {
  std::optional<int> layers;
  std::optional<int> d_model;
  std::optional<int> heads;
  std::optional<int> vocab;
  std::optional<int> seq;
};

// `config` with `preset`'s shape, except the fields `given` sets; batch stays config's.
GptConfig apply_preset(const ModelPreset& preset, GptConfig config, const ShapeOverrides& given);

// Why a configuration cannot be trained, each field named with its value (heads not dividing
// the width, a zero or negative size, a vocabulary above what uint16 token files can hold, sizes
// whose tensors would overflow the kernels' 32-bit dimensions).
Status validate_config(const GptConfig& config);

// One parameter tensor of the model: its name (e.g. "h0.qkv_w"), its shape, and how it is
// initialized (GPT-2: weights normal with std 0.02, the two residual projections of each block
// scaled by 1/sqrt(2 * layers), biases 0, LayerNorm weights 1).
struct ParameterShape {
  enum class Init : std::uint8_t { kNormal, kScaledNormal, kZeros, kOnes };
  std::string name;
  std::vector<std::int64_t> shape;
  Init init = Init::kNormal;
};

// The model's parameters in a fixed order: wte, wpe, then per block ln1_w, ln1_b, qkv_w, qkv_b,
// attproj_w, attproj_b, ln2_w, ln2_b, fc_w, fc_b, fcproj_w, fcproj_b, then lnf_w, lnf_b.
// The index of each is fixed by this order (see the k* constants of gpt_model.h).
std::vector<ParameterShape> parameter_shapes(const GptConfig& config);

// Total parameter elements.
std::int64_t parameter_count(const GptConfig& config);

}  // namespace ebb::train
