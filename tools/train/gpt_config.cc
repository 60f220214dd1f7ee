#include "tools/train/gpt_config.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ebb::train {
namespace {

// GPT-2's four sizes (Radford et al. 2019; vocabulary 50257, context 1024) and LLaMA's 7B and
// 13B shapes (Touvron et al. 2023; vocabulary 32000, context 2048).
constexpr ModelPreset kModelPresets[] = {
    {"gpt2-124m", 12, 768, 12, 50257, 1024},      {"gpt2-350m", 24, 1024, 16, 50257, 1024},
    {"gpt2-774m", 36, 1280, 20, 50257, 1024},     {"gpt2-1.5b", 48, 1600, 25, 50257, 1024},
    {"llama-7b-like", 32, 4096, 32, 32000, 2048}, {"llama-13b-like", 40, 5120, 40, 32000, 2048},
};

}  // namespace

std::span<const ModelPreset> model_presets() { return kModelPresets; }

Result<ModelPreset> find_model_preset(std::string_view name) {
  std::string names;
  for (const ModelPreset& p : kModelPresets) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + std::string(p.name);
  }
  return invalid_argument("--model \"" + std::string(name) +
                          "\" is not a preset (the presets: " + names + ")");
}

GptConfig apply_preset(const ModelPreset& preset, GptConfig config, const ShapeOverrides& given) {
  config.layers = given.layers.value_or(preset.layers);
  config.d_model = given.d_model.value_or(preset.d_model);
  config.heads = given.heads.value_or(preset.heads);
  config.vocab = given.vocab.value_or(preset.vocab);
  config.seq = given.seq.value_or(preset.seq);
  return config;
}

Status validate_config(const GptConfig& c) {
  auto positive = [](const char* name, int value) -> Status {
    if (value > 0) return ok_status();
    return invalid_argument(std::string(name) + " must be positive (got " + std::to_string(value) +
                            ")");
  };
  EBB_RETURN_IF_ERROR(positive("--layers", c.layers));
  EBB_RETURN_IF_ERROR(positive("--d-model", c.d_model));
  EBB_RETURN_IF_ERROR(positive("--heads", c.heads));
  EBB_RETURN_IF_ERROR(positive("--seq", c.seq));
  EBB_RETURN_IF_ERROR(positive("--batch", c.batch));
  EBB_RETURN_IF_ERROR(positive("--vocab", c.vocab));
  if (c.d_model % c.heads != 0) {
    return invalid_argument("--heads " + std::to_string(c.heads) + " does not divide --d-model " +
                            std::to_string(c.d_model) +
                            " (each head gets d_model / heads channels)");
  }
  // Token ids are stored as uint16 in token files and int32 on the device.
  if (c.vocab > 65535) {
    return invalid_argument("--vocab " + std::to_string(c.vocab) +
                            " is above 65535, the largest vocabulary uint16 token data can index");
  }
  // The kernels index rows and matrices with int; keep every tensor's element count in range.
  constexpr double kLimit = std::numeric_limits<int>::max();
  const double rows = static_cast<double>(c.batch) * c.seq;
  const double widest = std::max({4.0 * c.d_model, 3.0 * c.d_model, static_cast<double>(c.vocab)});
  const double attention = static_cast<double>(c.batch) * c.heads * c.seq * c.seq;
  if (rows * widest > kLimit || attention > kLimit ||
      static_cast<double>(c.vocab) * c.d_model > kLimit) {
    return invalid_argument("the model is too large for the kernels' 32-bit sizes (batch " +
                            std::to_string(c.batch) + " x seq " + std::to_string(c.seq) +
                            " x width " + std::to_string(static_cast<std::int64_t>(widest)) +
                            " elements per tensor)");
  }
  return ok_status();
}

std::vector<ParameterShape> parameter_shapes(const GptConfig& c) {
  using Init = ParameterShape::Init;
  const std::int64_t C = c.d_model;
  std::vector<ParameterShape> p;
  p.push_back({"wte", {c.vocab, C}, Init::kNormal});
  p.push_back({"wpe", {c.seq, C}, Init::kNormal});
  for (int l = 0; l < c.layers; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    p.push_back({h + "ln1_w", {C}, Init::kOnes});
    p.push_back({h + "ln1_b", {C}, Init::kZeros});
    p.push_back({h + "qkv_w", {3 * C, C}, Init::kNormal});
    p.push_back({h + "qkv_b", {3 * C}, Init::kZeros});
    p.push_back({h + "attproj_w", {C, C}, Init::kScaledNormal});
    p.push_back({h + "attproj_b", {C}, Init::kZeros});
    p.push_back({h + "ln2_w", {C}, Init::kOnes});
    p.push_back({h + "ln2_b", {C}, Init::kZeros});
    p.push_back({h + "fc_w", {4 * C, C}, Init::kNormal});
    p.push_back({h + "fc_b", {4 * C}, Init::kZeros});
    p.push_back({h + "fcproj_w", {C, 4 * C}, Init::kScaledNormal});
    p.push_back({h + "fcproj_b", {C}, Init::kZeros});
  }
  p.push_back({"lnf_w", {C}, Init::kOnes});
  p.push_back({"lnf_b", {C}, Init::kZeros});
  return p;
}

std::int64_t parameter_count(const GptConfig& config) {
  std::int64_t total = 0;
  for (const ParameterShape& p : parameter_shapes(config)) {
    std::int64_t n = 1;
    for (std::int64_t d : p.shape) n *= d;
    total += n;
  }
  return total;
}

}  // namespace ebb::train
