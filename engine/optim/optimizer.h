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
// Off the device (engine/optim/placement.h). A slice the ModelState placed on the host or on NVMe
// keeps its master weights and state there, not in engine tensors: in pinned host tier buffers,
// or in an NvmeChunkStore (offload/chunk_store.h) of chunks that each hold whole parameters (an
// AdamW slice is cut by elements). Its step runs on the CPU, with the same kernels the cpu
// device runs (kernels/optim.h: the same bits), from a host copy of the slice's gradients that
// starts as soon as the slice's gradients are final in backward (ModelState's gradient
// listener; at the step for any not yet copied). The updated working parameters are put on the
// host tier as the parameter tensor's new bytes (Engine::replace_on_host) and prefetched back,
// so that they take device memory again only from when they are needed. The NVMe slices' chunks
// all stream through the step in one pass of one chunk store: chunk i+1 (of the same slice or
// the next) is read while chunk i is updated and chunk i-1 written, and a step that fails leaves
// the previous step's state on disk.
// With OffloadOptions::delayed_update (ZeRO-Offload's DPU), the CPU step of step t >= 2 runs
// on a worker thread while the loop's next forward and backward run, on parameters one update
// stale; step t+1 waits for it, puts its parameters on their way, and starts its own. The device
// slices (auto placement) are updated at once, as without it.
//
// Ownership: references the Engine and the ModelState, which must outlive it; owns (through the
// engine) its state tensors, a workspace and its host tier buffers and NVMe chunks, released
// when it is destroyed (after the CPU step in flight, if any, has finished).
// Thread safety: not thread-safe; the thread that drives the engine calls it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "engine/optim/model_state.h"
#include "kernels/device.h"
#include "offload/chunk_store.h"

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

struct OffloadOptions {
  // ZeRO-Offload's delayed parameter update for the off-device slices (changes the results:
  // theta(t+1) = theta(t) - u(g(theta(t-1))) from step 2 on). kInvalidArgument when every slice
  // is on the device.
  bool delayed_update = false;
  // Bytes of state per NVMe chunk; 0: stream_chunk_bytes(tier) (offload/chunk_store.h).
  std::size_t nvme_chunk_bytes = 0;
};

// What the off-device step did, since the optimizer was created.
struct OffloadStats {
  std::int64_t cpu_steps = 0;       // CPU steps run (one per step with off-device slices)
  double cpu_step_s = 0;            // seconds of the CPU steps (NVMe streaming included): wall
                                    // time, or on a sim device the modelled time
  double wait_s = 0;                // of which the loop's thread waited for (delayed update)
  std::int64_t gradient_bytes = 0;  // gradients copied to the host
  std::int64_t early_gradient_copies = 0;  // of the slices' copies: started during backward
  std::int64_t parameter_bytes = 0;        // working parameters sent back to the device
  std::size_t host_bytes = 0;              // host tier bytes held: state, masters and staging
  std::size_t nvme_bytes = 0;              // state bytes on NVMe
  double nvme_read_s = 0;                  // the chunk streams' phases (ChunkStoreStats), summed
  double nvme_write_s = 0;
  double nvme_update_s = 0;
};

// What one CPU step of the off-device slices moves, where the host's work is modelled rather
// than run (a sim device; Optimizer::set_host_step_cost). The update's host memory traffic per
// slice: gradients read, working parameters written, master weights and state read and written
// back; and the NVMe slices' state read from and written back to NVMe.
struct HostStepWork {
  std::size_t host_slice_bytes = 0;  // host memory traffic of the slices on the host
  std::size_t nvme_slice_bytes = 0;  // host memory traffic of the NVMe slices' chunk updates
  std::size_t nvme_read_bytes = 0;
  std::size_t nvme_write_bytes = 0;
};

// The host memory traffic of updating `elements` parameters whose master weights and state are
// `state_floats` floats: gradients read, working parameters written, the state read and written
// back (HostStepWork's slice bytes).
constexpr std::size_t host_step_traffic_bytes(std::size_t elements, std::size_t state_floats,
                                              std::size_t param_bytes, std::size_t grad_bytes) {
  return elements * (grad_bytes + param_bytes) + 2 * state_floats * sizeof(float);
}

// The optimizer state of one slice of a flat layout, in floats, as Optimizer::create lays it out:
// `a` (AdamW's m; Adafactor's and SM3's factored statistics) and `b` (AdamW's v; a first moment
// or momentum when on; else 0). For planning a placement before any optimizer exists.
struct SliceStateFloats {
  std::int64_t a = 0;
  std::int64_t b = 0;
};
SliceStateFloats slice_state_floats(const OptimizerConfig& config,
                                    std::span<const ParameterDecl> params, const FlatSlice& slice);

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

  // Creates the state (zeros) outside any iteration, each slice where the ModelState placed it.
  // kInvalidArgument for a negative rate or weight decay, betas outside [0, 1), momentum outside
  // [0, 1), a delayed update with every slice on the device; kFailedPrecondition for NVMe slices
  // without an NVMe tier (EngineOptions::nvme_directories); kOutOfMemory when the host tier (or
  // the NVMe tier) cannot hold what is placed there, saying how many bytes it needs.
  static Result<std::unique_ptr<Optimizer>> create(Engine& engine, ModelState& state,
                                                   const OptimizerConfig& config,
                                                   const OffloadOptions& offload = {});
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One step, number `step` (from 1), at learning rate `lr`, every gradient multiplied by
  // `grad_scale` first (1 / loss scale, times the clipping factor). Inside an iteration.
  Status step(int step, float lr, float grad_scale);
  // The modelled time of a device slice's update of `elements` parameters (a sim device's clock;
  // Engine::update's cost). Unset: 0, unknown.
  using UpdateCost = std::function<std::chrono::nanoseconds(std::int64_t elements)>;
  void set_update_cost(UpdateCost cost) { update_cost_ = std::move(cost); }
  // On a sim device the off-device slices hold no values (its host tier is address space only,
  // and no NVMe tier is needed): the CPU step runs no kernel, and the host is busy for this cost
  // of the step's work instead (simulate_host_work, kernels/sim/sim_device.h). Unset there: the
  // step fails, saying so. Not used on other devices, where the step runs and is measured.
  using HostStepCost = std::function<std::chrono::nanoseconds(const HostStepWork&)>;
  void set_host_step_cost(HostStepCost cost) { host_step_cost_ = std::move(cost); }
  // With a delayed update: waits for the CPU step in flight and puts its parameters on their way
  // to the device, so that the state is that of every step taken (before a checkpoint, at the
  // end of a run). Otherwise nothing to do.
  Status flush();

  const OptimizerConfig& config() const { return config_; }
  const OffloadOptions& offload() const { return offload_; }
  // The state buffers of the device slices, in a fixed order (their master weights are the
  // ModelState's).
  const std::vector<StateBuffer>& state() const { return state_; }
  // Everything a checkpoint holds, wherever it lives: every slice's master weights
  // ("master.<group>.s<k>"), then every slice's state buffers ("optimizer.<group>.s<k>.adamw_m",
  // ...), with the same names and bytes in every placement, so that a checkpoint moves between
  // placements. write_blob() of a master also sets the working parameters (rounded); outside an
  // iteration, after flush().
  struct Blob {
    std::string name;
    std::size_t bytes = 0;
  };
  std::vector<Blob> blobs() const;
  Status read_blob(std::size_t i, std::span<std::byte> out);
  Status write_blob(std::size_t i, std::span<const std::byte> in);
  OffloadStats offload_stats() const;
  // Bytes of optimizer state (not counting the master weights), and per parameter element.
  std::size_t state_bytes() const;
  double state_bytes_per_parameter() const;

 private:
  // Out of line (offload_step.cc), where OffSlice is complete.
  Optimizer(Engine& engine, ModelState& model, const OptimizerConfig& config,
            const OffloadOptions& offload);

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
    std::int64_t a_floats = 0;        // of a (numel for AdamW)
    std::int64_t b_floats = 0;        // of b; 0: none
  };
  // The pointers of one update: a slice's, or a chunk's of an NVMe slice.
  struct UpdateBuffers {
    void* param = nullptr;
    float* master = nullptr;
    float* a = nullptr;
    float* b = nullptr;
    const void* grad = nullptr;
    float* workspace = nullptr;
  };
  struct StepArgs {
    int step = 1;
    float lr = 0;
    float grad_scale = 1;
  };
  // A chunk of an NVMe slice: elements [e0, e1) and state a floats [s0, s1), whole parameters
  // (`where` rebased to the chunk) except for AdamW.
  struct Chunk {
    std::int64_t e0 = 0, e1 = 0, s0 = 0, s1 = 0;
    std::vector<ParamState> where;
  };
  // A slice off the device (engine/optim/offload_step.cc).
  struct OffSlice;

  // The kernels of one update, on `ctx`'s backend.
  void run_update(const LaunchContext& ctx, std::size_t slice, std::span<const ParamState> where,
                  std::int64_t numel, const UpdateBuffers& b, const StepArgs& args) const;
  float weight_decay(std::size_t slice) const;
  std::string slice_base(std::size_t slice) const;

  // Off the device (offload_step.cc).
  Status create_off_device();
  Status on_gradients_final(std::size_t slice);
  Status copy_gradients(std::size_t slice);
  // The CPU step of every off-device slice, from gradient buffer `buffer`.
  Status cpu_step(const StepArgs& args, int buffer);
  // On a sim device: the host busy for the step's modelled cost instead.
  Status simulated_cpu_step();
  bool simulated() const;
  // Puts the updated working parameters on their way to the device.
  Status install_parameters();
  Status wait_for_worker();
  bool has_off_device() const;

  Engine& engine_;
  ModelState& model_;
  OptimizerConfig config_;
  OffloadOptions offload_;
  std::vector<SliceState> slices_;              // as model_.slices()
  std::vector<std::unique_ptr<OffSlice>> off_;  // as model_.slices(); null on the device
  // Every NVMe slice's chunks, slice after slice, and the slice of each chunk.
  std::unique_ptr<NvmeChunkStore> nvme_store_;
  std::vector<std::size_t> nvme_chunk_slices_;
  std::vector<float> host_workspace_;
  int grad_buffer_ = 0;                        // the staging buffer this step's copies fill
  bool parameters_ready_ = false;              // a CPU step's parameters wait to be installed
  std::optional<std::future<Status>> worker_;  // the delayed CPU step in flight
  OffloadStats offload_stats_;
  std::vector<StateBuffer> state_;
  Tensor workspace_;  // scratch the kernels with reductions need, for the largest parameter
  UpdateCost update_cost_;
  HostStepCost host_step_cost_;
};

// The global statistics of every gradient of `state`, multiplied by `inv_scale` (1 / the loss
// scale): one op reading every gradient buffer, its result read back to the host (which waits
// for the device). Inside an iteration.
Result<GradientStats> gradient_stats(Engine& engine, const ModelState& state, float inv_scale);

}  // namespace ebb
