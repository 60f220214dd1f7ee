// Optimizer: AdamW, Adafactor or SM3 over a ModelState's flat buffers, stepped through the
// Engine as in-place ops (Engine::update), one per slice of the layout, so that the engine sees,
// profiles, plans and moves the optimizer's state like any other tensor.
//
// The state of each slice is one or more engine tensors (kind kOptimizerState), laid out per
// parameter in the slice's order: AdamW's two moments in the slice's own layout; Adafactor's
// factored second moment (a row and a column vector per matrix, one full vector per vector
// parameter, and a first moment only when beta1 > 0); SM3's row and column accumulators per
// matrix (a full accumulator per vector, a momentum buffer only when momentum > 0). A step
// reads the slice's gradients, updates its master weights and state, and rounds the working
// parameters from the masters (kernels/optim.h). Weight decay is decoupled and applies to the
// decay group only.
//
// Learning rates. Each optimizer's default, when OptimizerConfig::learning_rate is 0:
//  - AdamW 1e-3: Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1's
//    "good default settings" (alpha = 0.001), which PyTorch's AdamW keeps as its default;
//  - Adafactor 1e-3 with an explicit step size: the Hugging Face Transformers documentation of
//    its Adafactor, which recommends lr=1e-3 with relative_step=False for a manual schedule (the
//    paper's own default is the relative step size, OptimizerConfig::relative_step);
//  - SM3 1e-2: the default learning_rate of the Trax implementation by the paper's authors
//    (trax/optimizers/sm3.py).
//
// Ownership: references the Engine and the ModelState, which must outlive it; owns (through the
// engine) its state tensors and a workspace, released when it is destroyed.
// Thread safety: not thread-safe; the thread that drives the engine calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "engine/optim/model_state.h"

namespace ebb {

enum class OptimizerKind : std::uint8_t { kAdamW, kAdafactor, kSm3 };
// "adamw", "adafactor", "sm3".
std::string_view optimizer_name(OptimizerKind kind);
std::optional<OptimizerKind> optimizer_from_name(std::string_view name);
// The default learning rate of each optimizer, with its source in the file comment.
float default_learning_rate(OptimizerKind kind);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdamW;
  float learning_rate = 0;       // the peak rate a schedule scales; 0: default_learning_rate(kind)
  float weight_decay = 0;        // decoupled; the decay group only
  float beta1 = 0.9F;            // AdamW
  float beta2 = 0.999F;          // AdamW
  float eps = 1e-8F;             // AdamW
  bool relative_step = false;    // Adafactor: the paper's relative step size instead of the rate
  float adafactor_beta1 = 0.0F;  // Adafactor: first moment when > 0 (off by default, as the paper)
  float momentum = 0.0F;         // SM3: momentum when > 0 (0.9 when on)
};

// The gradients' global statistics, for clipping and for fp16's overflow check.
struct GradientStats {
  float sum_of_squares = 0;  // of the unscaled gradients, in fp32, in one fixed order
  float nonfinite = 0;       // elements that are an infinity or a NaN
  float norm() const;        // sqrt(sum_of_squares)
};

class Optimizer {
 public:
  // A named state buffer, for checkpoints.
  struct StateBuffer {
    std::string name;
    Tensor tensor;
  };

  // Creates the state (zeros) outside any iteration. kInvalidArgument for a negative rate or
  // weight decay, betas outside [0, 1), momentum outside [0, 1).
  static Result<std::unique_ptr<Optimizer>> create(Engine& engine, ModelState& state,
                                                   const OptimizerConfig& config);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One step, number `step` (from 1), at learning rate `lr`, every gradient multiplied by
  // `grad_scale` first (1 / loss scale, times the clipping factor). Inside an iteration.
  Status step(int step, float lr, float grad_scale);

  const OptimizerConfig& config() const { return config_; }
  // Every state buffer, in a fixed order (the master weights are the ModelState's).
  const std::vector<StateBuffer>& state() const { return state_; }
  // Bytes of optimizer state (not counting the master weights), and per parameter element.
  std::size_t state_bytes() const;
  double state_bytes_per_parameter() const;

 private:
  Optimizer(Engine& engine, ModelState& model, const OptimizerConfig& config)
      : engine_(engine), model_(model), config_(config) {}

  // Where one parameter's state is in its slice's state buffers (floats).
  struct ParamState {
    std::int64_t rows = 0;
    std::int64_t cols = 0;    // 1 for a vector
    std::int64_t first = 0;   // the parameter's first element within its slice
    std::int64_t offset = 0;  // its state's first float within the slice's state buffer
  };
  struct SliceState {
    std::vector<std::size_t> params;  // declarations, in slice order
    std::vector<ParamState> where;    // same order
    Tensor a;                         // AdamW m; Adafactor and SM3: their factored state
    Tensor b;                         // AdamW v; Adafactor and SM3: the first moment, if any
  };

  Engine& engine_;
  ModelState& model_;
  OptimizerConfig config_;
  std::vector<SliceState> slices_;  // as model_.slices()
  std::vector<StateBuffer> state_;
  Tensor workspace_;  // scratch the kernels with reductions need, for the largest parameter
};

// The global statistics of every gradient of `state`, multiplied by `inv_scale` (1 / the loss
// scale): one op reading every gradient buffer, its result read back to the host (which waits
// for the device). Inside an iteration.
Result<GradientStats> gradient_stats(Engine& engine, const ModelState& state, float inv_scale);

}  // namespace ebb
