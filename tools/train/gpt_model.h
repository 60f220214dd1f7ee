// GptModel: ebb's reference training loop, a GPT-2-style decoder (gpt_config.h) whose every
// operator (forward, backward and the optimizer's update) runs through the engine: forward and
// backward as typed ops of engine/nn_ops.h (one kernel of kernels/nn.h each, shapes checked), the
// update as the optimizer's in-place ops over the flat model-state buffers (engine/optim/). The
// activations saved for backward are engine tensors, so the engine can swap or drop and
// recompute any of them. It reads like llm.c's train_gpt2.c: step() goes from the embedding
// through each block, the loss, then backward in reverse, once per micro-batch, then the update.
//
// Model state. The parameters live in a ModelState: flat buffers per group (weight decay for the
// matrices; none for biases, LayerNorm gains and the two embeddings, as GPT-2 trains) sliced
// per block, each parameter a view. In bf16 and fp16, forward and backward run on the 16-bit
// working copies and 16-bit activations, and the optimizer updates fp32 master weights. Backward
// writes each weight and bias gradient in fp32 and accumulates it into the gradient buffer in
// place, so K micro-batches add up into one step.
//
// Ownership: the model holds its ModelState and Optimizer, whose storage the Engine owns; the
// Engine must outlive the model.
// Thread safety: not thread-safe; the thread that drives the engine calls it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/ebb.h"
#include "engine/planner/cost_model.h"
#include "tools/train/gpt_config.h"

namespace ebb::train {

// How the model's state is kept and updated.
struct GptTraining {
  Precision precision = Precision::kF32;
  DType grad_dtype = DType::kF32;  // f32, or the precision's 16-bit dtype
  OptimizerConfig optimizer;
  // Where each slice's master weights and optimizer state live (ModelStateOptions::placement;
  // empty: on the device), and the off-device step's options.
  std::vector<StatePlacement> placement;
  OffloadOptions offload;
  // ZeRO data parallelism (engine/zero/) over `comm`: the stage, or nullopt for none. With a
  // stage >= 1 `placement` is each rank's range's.
  std::optional<int> zero_stage;
  std::size_t zero_bucket_bytes = ZeroOptions{}.bucket_bytes;
  GatherPolicy gather_policy = GatherPolicy::kPlan;
  Communicator* comm = nullptr;
  Communicator* gather_comm = nullptr;  // stage 3: ZeroOptions::gather_comm
  // Micro-batches per optimizer step: each parameter's gradient is accumulated once per
  // micro-batch (the tied wte twice), declared to the model state (ModelStateOptions::
  // accumulations) so that the first step's gradients are final as early as the later steps'.
  int micro_batches = 1;
  // Each kernel's modelled time from its work (op_work.h), given as the cost of every op of the
  // model, each gradient accumulation and each slice's update (a sim device's clock advances by
  // it). Empty: 0, unknown, as where the kernels run and are timed.
  std::function<std::chrono::nanoseconds(const KernelWork&)> kernel_time;
  // On a sim device: the modelled time of the optimizer's CPU step for the slices off the device
  // (Optimizer::set_host_step_cost). Empty: state off a sim device is refused by the step.
  Optimizer::HostStepCost host_step_cost;
};

// What one optimizer step needs besides the tokens.
struct StepControl {
  int optimizer_step = 1;   // the update's number (from 1): bias corrections, Adafactor's decay
  float learning_rate = 0;  // this step's rate (the schedule's)
  float loss_scale = 1;     // the loss is multiplied by it before backward (fp16); 1: none
  float clip_norm = 0;      // clip the global gradient norm to this; 0: no clipping
  // Look for infinities and NaNs in the gradients and skip the update when there are any
  // (fp16's loss scaling).
  bool skip_nonfinite = false;
};

struct StepOutcome {
  float loss = 0;        // mean over the micro-batches' mean losses, before the update
  bool skipped = false;  // the gradients held an infinity or a NaN: no update
  float grad_norm = -1;  // the global gradient norm, when it was computed (clipping, fp16)
};

class GptModel {
 public:
  // Creates the model state and the optimizer outside any iteration, the parameters initialized
  // from `seed` (GPT-2's scheme, parameter_shapes()). REQUIRES: validate_config(config) is OK.
  static Result<std::unique_ptr<GptModel>> create(Engine& engine, const GptConfig& config,
                                                  std::uint64_t seed, const GptTraining& training);
  ~GptModel();

  // One optimizer step as one engine iteration: for each micro-batch, forward, mean
  // cross-entropy loss and backward, accumulating the gradients; then the update (unless
  // skipped). inputs[k] and targets[k] hold micro-batch k's batch*seq token ids in [0, vocab).
  // On error the iteration is ended and the engine stays usable, but an error inside the update
  // may leave the state partly updated: discard the model after a failed step.
  Result<StepOutcome> step(std::span<const std::vector<std::int32_t>> inputs,
                           std::span<const std::vector<std::int32_t>> targets,
                           const StepControl& control);

  // Every parameter's fp32 master weights, copied to host in parameter_shapes() order.
  // kFailedPrecondition on a sim device, whose memory holds no values.
  Result<std::vector<float>> parameters_to_host();

  // Whether the engine's device is a sim device, which runs no kernels (kernels/sim): the
  // parameters then start at zero without host values, the tokens are not uploaded, the loss is
  // not read (StepOutcome::loss is NaN), and clipping and fp16's overflow check, which read the
  // gradient norm, are refused.
  bool simulated() const { return engine_.device().kind() == DeviceKind::kSim; }

  const GptConfig& config() const { return config_; }
  ModelState& state() { return *state_; }
  // The optimizer that steps this process's state (with ZeRO, its rank's part).
  Optimizer& optimizer() { return zero_ != nullptr ? zero_->optimizer() : *optimizer_; }
  ZeroOptimizer* zero() { return zero_.get(); }
  // Bytes of all parameters in their working dtype.
  std::size_t parameter_bytes() const;

 private:
  GptModel(Engine& engine, const GptConfig& config) : engine_(engine), config_(config) {}
  // step()'s body, inside its iteration: the micro-batches, the gradient check, the update.
  Result<StepOutcome> accumulate_and_update(std::span<const std::vector<std::int32_t>> inputs,
                                            std::span<const std::vector<std::int32_t>> targets,
                                            const StepControl& control);
  // One micro-batch's forward and backward, the loss's gradient per token being `dloss`; its
  // weight and bias gradients are accumulated into the model state. Returns the loss tensor.
  Result<Tensor> forward_backward(const Tensor& tokens, const Tensor& targets, float dloss);
  // The modelled time of `work` (GptTraining::kernel_time); 0 without one.
  std::chrono::nanoseconds cost(const KernelWork& work) const;
  // The modelled costs of `optimizer`'s update and CPU step, where `training` has them.
  void set_optimizer_costs(Optimizer& optimizer, const GptTraining& training);

  Engine& engine_;
  GptConfig config_;
  std::unique_ptr<ModelState> state_;
  std::unique_ptr<Optimizer> optimizer_;  // without ZeRO
  std::unique_ptr<ZeroOptimizer> zero_;   // with ZeRO
  std::function<std::chrono::nanoseconds(const KernelWork&)> kernel_time_;
};

// The model's parameters as flat-buffer declarations: groups (decay for the block matrices;
// none for biases, LayerNorm gains and the embeddings) and one slice per block (the embeddings
// and the final LayerNorm their own).
std::vector<ParameterDecl> parameter_decls(const GptConfig& config);

}  // namespace ebb::train
