// GptModel: ebb's reference training loop, a GPT-2-style decoder (gpt_config.h) whose every
// operator (forward, backward and the AdamW step) runs through the engine as one typed op of
// engine/nn_ops.h (one kernel of kernels/nn.h, shapes checked), with the activations saved for
// backward held as engine tensors, so the engine can swap or drop and recompute any of them. It
// reads like llm.c's train_gpt2.c: step() goes from the embedding through each block, the loss,
// then backward in reverse and the update.
//
// Ownership: the model holds handles to its parameters and AdamW moments (carried engine
// tensors); the Engine, which must outlive the model, owns their storage. Gradients flow as
// fresh tensors and every update is out of place (the engine's closures never write an input),
// so each step replaces the parameter and moment handles with the update's outputs.
//
// Thread safety: not thread-safe; the thread that drives the engine calls it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/ebb.h"
#include "kernels/nn.h"
#include "tools/train/gpt_config.h"

namespace ebb::train {

class GptModel {
 public:
  // Creates and initializes the parameters from `seed` (GPT-2's scheme, parameter_shapes()) and
  // zero AdamW moments, outside any iteration. REQUIRES: validate_config(config) is OK.
  static Result<std::unique_ptr<GptModel>> create(Engine& engine, const GptConfig& config,
                                                  std::uint64_t seed);

  // One training step as one engine iteration: forward, mean cross-entropy loss, backward,
  // AdamW (step number `step`, from 1). inputs and targets hold batch*seq token ids in
  // [0, vocab). Returns the loss (before the update). On error the iteration is ended and the
  // engine stays usable, but an error inside the update leaves the parameters partly updated
  // (each old parameter is released as soon as its update exists, to keep the peak low): discard
  // the model after a failed step.
  Result<float> step(std::span<const std::int32_t> inputs, std::span<const std::int32_t> targets,
                     const nn::AdamWConfig& adamw, int step);

  // Every parameter's bytes, copied to host in parameter_shapes() order.
  Result<std::vector<float>> parameters_to_host();

  const GptConfig& config() const { return config_; }
  // Bytes of all parameters (the moments take as much again, twice).
  std::size_t parameter_bytes() const { return parameter_bytes_; }

 private:
  GptModel(Engine& engine, const GptConfig& config) : engine_(engine), config_(config) {}
  // The step's body, run inside the iteration step() opens.
  Result<Tensor> forward_backward_update(const Tensor& tokens, const Tensor& targets,
                                         const nn::AdamWConfig& adamw, int step);

  Engine& engine_;
  GptConfig config_;
  std::vector<Tensor> params_;  // parameter_shapes() order
  std::vector<Tensor> m_;       // AdamW first moments, same order
  std::vector<Tensor> v_;       // AdamW second moments
  std::size_t parameter_bytes_ = 0;
};

}  // namespace ebb::train
