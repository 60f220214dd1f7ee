// ModelState: a model's parameters, gradients and fp32 master weights as flat buffers in an
// Engine (engine/optim/flat_layout.h), and each parameter and gradient as a view into them.
//
// Per slice of the layout it holds three engine tensors, carried across iterations: the working
// parameters in the precision's dtype (kind kParameter; what forward and backward read), the
// gradients in the gradient dtype (kind kGradient; accumulated in place during backward), and,
// in bf16 and fp16, the fp32 master weights (kind kOptimizerState; what the optimizer updates,
// rounding the working copy from them). In fp32 the working parameters are the master weights.
// The optimizer's own state lives beside them (engine/optim/optimizer.h). Alignment gaps and
// padding hold zeros and never change (their gradients are zero).
//
// Device bytes per parameter (ignoring alignment and padding): fp32: 4 parameters + 4 gradients;
// bf16 or fp16: 2 parameters + 2 gradients (4 with --grad-dtype fp32) + 4 master weights; plus
// the optimizer's state (AdamW: 8, the two moments).
//
// Ownership: references the Engine (which must outlive it and owns the storage); the tensors
// are released when the ModelState is destroyed outside an iteration.
// Thread safety: not thread-safe; the thread that drives the engine calls it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/optim/flat_layout.h"
#include "engine/optim/placement.h"
#include "engine/optim/precision.h"

namespace ebb {

struct ModelStateOptions {
  Precision precision = Precision::kF32;
  // The gradient buffers' dtype: kF32, or the precision's 16-bit dtype. REQUIRES: one of them.
  DType grad_dtype = DType::kF32;
  FlatLayoutOptions layout{};
  // Where each slice's master weights live (engine/optim/placement.h), in slices() order; empty:
  // every slice on the device. A slice off the device has no master tensor: the Optimizer made
  // for this state takes its initial values (take_initial_master) and keeps them where they go,
  // in every precision (in fp32 too, so that the host step never reads the device).
  std::vector<StatePlacement> placement{};
  // Put before every name the state gives (its tensors, the optimizer's state tensors, ops and
  // checkpoint blobs), so that a second state in the same engine (ZeRO's shard, engine/zero/)
  // keeps apart from the first.
  std::string name_prefix{};
  // No slice keeps master weights in this state (ZeRO stages 1 and 2, where each rank keeps a
  // shard of them): the initial values wait for take_initial_master(), and master_to_host() asks
  // the master reader, as for a slice off the device.
  bool external_master = false;
  // The working parameters (and, with discarded_grads, the gradient buffers) are made discarded
  // (Engine::discard), one slice at a time, so that the whole buffer never exists at once: ZeRO
  // stage 3's full parameters, which come by gathers, and stage 2's and 3's full gradients,
  // which live only while a slice is accumulated. Their initial values wait for
  // take_initial_master() (REQUIRES: external_master for discarded_params).
  bool discarded_params = false;
  bool discarded_grads = false;
  // How many times each parameter's gradient is accumulated in a step, in parameters order (the
  // micro-batches; twice that for a weight a model uses twice). Empty: learned from the first
  // step. Declared, the gradient listener runs from the first step on (so that ZeRO reduces its
  // buckets during the first backward too, and stages 2 and 3 never hold every full gradient
  // buffer at once); an accumulate() past the declared count fails.
  std::vector<int> accumulations{};
  // Per slice (in slices() order), buffers of another state to share instead of new ones: the
  // slice's working parameters, and its gradients when `grads` is valid, become views of them
  // from element `first` (ZeRO's shard of a full state: no second copy). Empty: new buffers.
  // REQUIRES: a slice placed off the device has no shared `params` (the off-device step replaces
  // its parameters on the host, which a view cannot be).
  struct Shared {
    Tensor params;
    Tensor grads;
    std::int64_t first = 0;
  };
  std::vector<Shared> shared{};
};

class ModelState {
 public:
  // The buffers of one slice of the layout.
  struct Slice {
    std::size_t group = 0;  // index into layout().groups
    std::size_t index = 0;  // index into that group's slices
    Tensor params;          // working dtype
    Tensor grads;           // gradient dtype
    Tensor master;          // fp32; invalid in fp32 (params is the master then) or off the device
    std::int64_t numel = 0;
    StatePlacement placement = StatePlacement::kDevice;

    const Tensor& master_weights() const { return master.valid() ? master : params; }
  };

  // Lays the parameters out, creates the buffers outside any iteration, and fills them:
  // `initial[i]` holds parameter i's values in fp32 (the master weights; the working copy is
  // rounded to nearest even from them), gradients start at zero. An empty `initial` starts every
  // buffer at zero without a host copy of the values (a sim device, whose memory holds none; the
  // state must then be on the device). kInvalidArgument for a bad declaration
  // (make_flat_layout), a gradient dtype the precision does not allow, initial values of the
  // wrong count, an empty `initial` with state off the device, or an engine inside an iteration.
  static Result<std::unique_ptr<ModelState>> create(Engine& engine,
                                                    std::vector<ParameterDecl> params,
                                                    const ModelStateOptions& options,
                                                    std::span<const std::vector<float>> initial);
  ~ModelState();
  ModelState(const ModelState&) = delete;
  ModelState& operator=(const ModelState&) = delete;

  const FlatLayout& layout() const { return layout_; }
  const std::vector<ParameterDecl>& params() const { return params_; }
  const ModelStateOptions& options() const { return options_; }
  Precision precision() const { return options_.precision; }
  DType param_dtype() const { return precision_dtype(options_.precision); }
  DType grad_dtype() const { return options_.grad_dtype; }
  std::size_t size() const { return params_.size(); }
  const std::vector<Slice>& slices() const { return slices_; }
  // The slice of layout().groups[group].slices[index].
  const Slice& slice(std::size_t group, std::size_t index) const;

  // Parameter i's working copy and gradient, as views into their slice's buffers.
  const Tensor& param(std::size_t i) const { return param_views_[i]; }
  const Tensor& grad(std::size_t i) const { return grad_views_[i]; }

  // Gradient accumulation. begin_step(): the next accumulate() of each gradient overwrites it
  // (so no buffer needs zeroing between steps). accumulate(i, d): adds `d` (fp32, parameter i's
  // shape, typically a backward op's output) into gradient i in place, rounded to the gradient
  // dtype; in order of the calls, so that the bits do not depend on anything else. `cost` is the
  // update's modelled time (Engine::update; 0: unknown).
  void begin_step();
  Status accumulate(std::size_t i, const Tensor& d,
                    std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
  // Whether gradient i has been written since begin_step().
  bool has_grad(std::size_t i) const { return written_[i] != 0; }

  // Off-device master weights. take_initial_master(k): slice k's initial master weights (numel
  // floats), once, for the optimizer that keeps them; empty for a device slice or a second call.
  // set_master_reader: how master_to_host() reads an off-device slice's master weights (the
  // optimizer's; null: not readable, kFailedPrecondition).
  std::vector<float> take_initial_master(std::size_t slice);
  // Made without initial values (a sim device's state): nothing of it is held on the host, and
  // take_initial_master gives nothing.
  bool valueless() const { return valueless_; }
  using MasterReader = std::function<Status(std::size_t slice, std::span<float> out)>;
  void set_master_reader(MasterReader reader) { master_reader_ = std::move(reader); }

  // When a slice's gradients are final in a step: after the accumulate() that brings the slice's
  // count of accumulations to the declared one (ModelStateOptions::accumulations), or else, from
  // the second step on, to what the previous step had (the loop does the same thing every step),
  // `listener(slice)` is called, so that the
  // optimizer can start moving them (an off-device step's host copy). accumulations(k): this
  // step's count so far, so that a listener that acted early can tell it must act again.
  using GradientListener = std::function<Status(std::size_t slice)>;
  void set_gradient_listener(GradientListener listener) { listener_ = std::move(listener); }
  int accumulations(std::size_t slice) const { return step_accumulations_[slice]; }
  // For a slice whose gradients an op other than accumulate() wrote whole (ZeRO's reduction into
  // its shard, engine/zero/): counts it as one accumulation and calls the listener at once, the
  // gradients being final.
  Status gradients_written(std::size_t slice);
  // begin_step() calls so far: tells one step's accumulations from the next one's.
  std::int64_t step_serial() const { return steps_begun_; }

  // Slice k's name with the state's prefix ("zero.decay.s3"): what its tensors, its optimizer
  // state and its checkpoint blobs are named after.
  std::string slice_label(std::size_t slice) const;

  // Master weights (fp32) of parameter i, or of every parameter in declaration order.
  Result<std::vector<float>> master_to_host(std::size_t i);
  Result<std::vector<float>> masters_to_host();

 private:
  ModelState(Engine& engine, FlatLayout layout, std::vector<ParameterDecl> params,
             const ModelStateOptions& options)
      : engine_(engine),
        layout_(std::move(layout)),
        params_(std::move(params)),
        options_(options) {}

  Engine& engine_;
  FlatLayout layout_;
  std::vector<ParameterDecl> params_;
  ModelStateOptions options_;
  std::vector<Slice> slices_;             // groups in order, slices in order within each
  std::vector<std::size_t> group_first_;  // index into slices_ of each group's first slice
  std::vector<Tensor> param_views_;       // declaration order
  std::vector<Tensor> grad_views_;        // declaration order
  std::vector<std::uint8_t> written_;     // per parameter, since begin_step()
  std::vector<std::vector<float>> initial_master_;  // per slice, off the device, until taken
  bool valueless_ = false;                          // made without initial values
  MasterReader master_reader_;
  GradientListener listener_;
  std::vector<int> step_accumulations_;   // per slice, since begin_step()
  std::vector<int> final_accumulations_;  // per slice, the previous step's count (0: unknown)
  std::int64_t steps_begun_ = 0;
};

}  // namespace ebb
