#include "engine/optim/model_state.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "engine/nn_ops.h"

namespace ebb {
namespace {

std::string slice_name(const std::string& prefix, const FlatGroup& g, std::size_t index,
                       const char* buffer) {
  return prefix + slice_name(g.group, index) + "." + buffer;
}

}  // namespace

Result<std::unique_ptr<ModelState>> ModelState::create(
    Engine& engine, std::vector<ParameterDecl> params, const ModelStateOptions& options,
    std::span<const std::vector<float>> initial) {
  if (engine.in_iteration()) {
    return failed_precondition(
        "ModelState::create inside an iteration: model state is created outside one so that it "
        "is carried");
  }
  const DType work = precision_dtype(options.precision);
  if (options.discarded_params && !options.external_master) {
    return invalid_argument(
        "model state: discarded parameters need external master weights (their initial values "
        "go to take_initial_master)");
  }
  if (options.grad_dtype != DType::kF32 && options.grad_dtype != work) {
    return invalid_argument("model state: gradient dtype " +
                            std::string(dtype_name(options.grad_dtype)) +
                            " is neither f32 nor the precision's " + std::string(dtype_name(work)));
  }
  if (!options.accumulations.empty()) {
    if (options.accumulations.size() != params.size()) {
      return invalid_argument("model state: " + std::to_string(options.accumulations.size()) +
                              " accumulation counts for " + std::to_string(params.size()) +
                              " parameters");
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (options.accumulations[i] < 1) {
        return invalid_argument("model state: parameter '" + params[i].name + "' is declared " +
                                std::to_string(options.accumulations[i]) +
                                " accumulations per step; at least 1");
      }
    }
  }
  // No initial values: zeros, and no host copy of the state (a sim device's). External master
  // weights (ZeRO's shard keeps them) are then valueless too: take_initial_master gives none.
  const bool zeros = initial.empty();
  // A sim device's off-device state holds no values either (engine/optim/offload_step.cc).
  if (zeros && engine.device().kind() != DeviceKind::kSim &&
      std::any_of(options.placement.begin(), options.placement.end(),
                  [](StatePlacement p) { return p != StatePlacement::kDevice; })) {
    return invalid_argument(
        "model state: no initial values, but state off the device takes them from the host");
  }
  if (!zeros && initial.size() != params.size()) {
    return invalid_argument("model state: " + std::to_string(initial.size()) +
                            " initial value arrays for " + std::to_string(params.size()) +
                            " parameters");
  }
  EBB_ASSIGN_OR_RETURN(FlatLayout layout, make_flat_layout(params, options.layout));
  std::size_t slice_count = 0;
  for (const FlatGroup& g : layout.groups) slice_count += g.slices.size();
  if (!options.placement.empty() && options.placement.size() != slice_count) {
    return invalid_argument("model state: " + std::to_string(options.placement.size()) +
                            " slice placements for " + std::to_string(slice_count) + " slices");
  }
  for (std::size_t i = 0; i < (zeros ? 0 : params.size()); ++i) {
    if (static_cast<std::int64_t>(initial[i].size()) != layout.entries[i].numel) {
      return invalid_argument("model state: parameter '" + params[i].name + "' has " +
                              std::to_string(layout.entries[i].numel) + " elements, given " +
                              std::to_string(initial[i].size()) + " initial values");
    }
  }
  if (!options.shared.empty() && options.shared.size() != slice_count) {
    return invalid_argument("model state: " + std::to_string(options.shared.size()) +
                            " shared slice buffers for " + std::to_string(slice_count) + " slices");
  }
  for (std::size_t k = 0; k < options.shared.size(); ++k) {
    if (options.shared[k].params.valid() && !options.placement.empty() &&
        options.placement[k] != StatePlacement::kDevice) {
      return invalid_argument("model state: slice " + std::to_string(k) +
                              " is placed off the device and cannot share its parameters");
    }
  }
  std::unique_ptr<ModelState> state(
      new ModelState(engine, std::move(layout), std::move(params), options));
  ModelState& s = *state;
  s.valueless_ = zeros;
  const bool master = has_master_weights(options.precision);
  std::vector<float> values;
  for (std::size_t g = 0; g < s.layout_.groups.size(); ++g) {
    const FlatGroup& group = s.layout_.groups[g];
    s.group_first_.push_back(s.slices_.size());
    for (std::size_t k = 0; k < group.slices.size(); ++k) {
      const FlatSlice& fs = group.slices[k];
      values.assign(zeros ? 0 : static_cast<std::size_t>(fs.numel()), 0.0F);
      for (std::size_t p : fs.params) {
        if (zeros) break;
        const FlatEntry& e = s.layout_.entries[p];
        std::memcpy(values.data() + (e.offset - fs.begin), initial[p].data(),
                    initial[p].size() * sizeof(float));
      }
      Slice slice;
      slice.group = g;
      slice.index = k;
      slice.numel = fs.numel();
      if (!options.placement.empty()) slice.placement = options.placement[s.slices_.size()];
      const std::vector<std::int64_t> shape{fs.numel()};
      const std::string& prefix = options.name_prefix;
      const ModelStateOptions::Shared* shared =
          options.shared.empty() ? nullptr : &options.shared[s.slices_.size()];
      if (shared != nullptr && shared->params.valid()) {
        EBB_ASSIGN_OR_RETURN(
            slice.params,
            engine.view(
                shared->params, static_cast<std::size_t>(shared->first) * dtype_bytes(work),
                {slice_name(prefix, group, k, "param"), shape, work, TensorKind::kParameter}));
      } else {
        const bool no_values = options.discarded_params || zeros;
        const std::vector<std::byte> work_bytes =
            no_values ? std::vector<std::byte>() : round_to_dtype(values, work);
        EBB_ASSIGN_OR_RETURN(slice.params,
                             engine.parameter({slice_name(prefix, group, k, "param"), shape, work,
                                               TensorKind::kParameter},
                                              no_values ? nullptr : work_bytes.data()));
        if (options.discarded_params) EBB_RETURN_IF_ERROR(engine.discard(slice.params));
      }
      if (shared != nullptr && shared->grads.valid()) {
        EBB_ASSIGN_OR_RETURN(slice.grads, engine.view(shared->grads,
                                                      static_cast<std::size_t>(shared->first) *
                                                          dtype_bytes(options.grad_dtype),
                                                      {slice_name(prefix, group, k, "grad"), shape,
                                                       options.grad_dtype, TensorKind::kGradient}));
      } else {
        EBB_ASSIGN_OR_RETURN(slice.grads,
                             engine.parameter({slice_name(prefix, group, k, "grad"), shape,
                                               options.grad_dtype, TensorKind::kGradient},
                                              nullptr));
        if (options.discarded_grads) EBB_RETURN_IF_ERROR(engine.discard(slice.grads));
      }
      if (slice.placement != StatePlacement::kDevice || options.external_master) {
        s.initial_master_.resize(s.slices_.size() + 1);
        s.initial_master_.back() = values;
      } else if (master) {
        EBB_ASSIGN_OR_RETURN(slice.master,
                             engine.parameter({slice_name(prefix, group, k, "master"), shape,
                                               DType::kF32, TensorKind::kOptimizerState},
                                              zeros ? nullptr : values.data()));
      }
      s.slices_.push_back(slice);
    }
  }
  for (std::size_t i = 0; i < s.params_.size(); ++i) {
    const FlatEntry& e = s.layout_.entries[i];
    const Slice& sl = s.slice(e.group, e.slice);
    const std::int64_t first =
        e.offset - s.layout_.groups[e.group].slices[e.slice].begin;  // within the slice
    EBB_ASSIGN_OR_RETURN(
        Tensor p,
        engine.view(sl.params, static_cast<std::size_t>(first) * dtype_bytes(work),
                    {s.params_[i].name, s.params_[i].shape, work, TensorKind::kParameter}));
    EBB_ASSIGN_OR_RETURN(
        Tensor gr,
        engine.view(sl.grads, static_cast<std::size_t>(first) * dtype_bytes(options.grad_dtype),
                    {s.params_[i].name + ".grad", s.params_[i].shape, options.grad_dtype,
                     TensorKind::kGradient}));
    s.param_views_.push_back(p);
    s.grad_views_.push_back(gr);
  }
  s.written_.assign(s.params_.size(), 0);
  s.initial_master_.resize(s.slices_.size());
  s.step_accumulations_.assign(s.slices_.size(), 0);
  s.final_accumulations_.assign(s.slices_.size(), 0);
  for (std::size_t i = 0; i < options.accumulations.size(); ++i) {
    const FlatEntry& e = s.layout_.entries[i];
    s.final_accumulations_[s.group_first_[e.group] + e.slice] += options.accumulations[i];
  }
  return state;
}

ModelState::~ModelState() {
  // Views first: a base cannot be released while a view of it lives.
  for (const std::vector<Tensor>* views : {&param_views_, &grad_views_}) {
    for (const Tensor& t : *views) (void)engine_.release(t);
  }
  for (const Slice& s : slices_) {
    for (const Tensor* t : {&s.params, &s.grads, &s.master}) {
      if (t->valid()) (void)engine_.release(*t);
    }
  }
}

const ModelState::Slice& ModelState::slice(std::size_t group, std::size_t index) const {
  return slices_[group_first_[group] + index];
}

void ModelState::begin_step() {
  ++steps_begun_;
  written_.assign(params_.size(), 0);
  if (options_.accumulations.empty()) {
    for (std::size_t k = 0; k < slices_.size(); ++k) {
      if (step_accumulations_[k] > 0) final_accumulations_[k] = step_accumulations_[k];
    }
  }
  step_accumulations_.assign(slices_.size(), 0);
}

std::vector<float> ModelState::take_initial_master(std::size_t slice) {
  return std::exchange(initial_master_[slice], {});
}

Status ModelState::accumulate(std::size_t i, const Tensor& d, std::chrono::nanoseconds cost) {
  if (i >= params_.size()) {
    return invalid_argument("accumulate: parameter " + std::to_string(i) + " of " +
                            std::to_string(params_.size()));
  }
  const FlatEntry& e = layout_.entries[i];
  const std::int64_t n = e.numel;
  if (d.dtype() != DType::kF32 || d.bytes() != static_cast<std::size_t>(n) * sizeof(float)) {
    return invalid_argument("accumulate into '" + params_[i].name + "': the gradient '" + d.name() +
                            "' must be f32 with " + std::to_string(n) + " elements, it is " +
                            std::string(dtype_name(d.dtype())) + " of " +
                            std::to_string(d.bytes()) + " bytes");
  }
  const std::size_t k = group_first_[e.group] + e.slice;
  if (!options_.accumulations.empty() && step_accumulations_[k] >= final_accumulations_[k]) {
    return failed_precondition(
        "accumulate into '" + params_[i].name + "': its slice " + slice_label(k) + " has had the " +
        std::to_string(final_accumulations_[k]) +
        " accumulations per step its parameters declare (ModelStateOptions::accumulations)");
  }
  const bool assign = written_[i] == 0;
  const nn::FloatType t = *ops::float_type_of(options_.grad_dtype);
  EBB_RETURN_IF_ERROR(engine_.update(
      "grad_accumulate." + params_[i].name, {d}, {grad_views_[i]},
      [t, n, assign](const OpArgs& a) {
        nn::accumulate(a.launch, t, a.outputs[0], static_cast<const float*>(a.inputs[0]), n,
                       assign);
      },
      cost));
  written_[i] = 1;
  ++step_accumulations_[k];
  if (listener_ && step_accumulations_[k] == final_accumulations_[k]) return listener_(k);
  return ok_status();
}

Status ModelState::gradients_written(std::size_t slice) {
  ++step_accumulations_[slice];
  return listener_ ? listener_(slice) : ok_status();
}

std::string ModelState::slice_label(std::size_t slice) const {
  const Slice& s = slices_[slice];
  return options_.name_prefix + slice_name(layout_.groups[s.group].group, s.index);
}

Result<std::vector<float>> ModelState::master_to_host(std::size_t i) {
  const FlatEntry& e = layout_.entries[i];
  const Slice& s = slice(e.group, e.slice);
  const std::int64_t first = e.offset - layout_.groups[e.group].slices[e.slice].begin;
  std::vector<float> all(static_cast<std::size_t>(s.numel));
  if (s.placement == StatePlacement::kDevice && !options_.external_master) {
    EBB_RETURN_IF_ERROR(engine_.read(s.master_weights(), all.data(), all.size() * sizeof(float)));
  } else {
    if (!master_reader_) {
      return failed_precondition("master weights of '" + params_[i].name + "' are " +
                                 std::string(placement_name(s.placement)) +
                                 " and no optimizer reads them");
    }
    EBB_RETURN_IF_ERROR(master_reader_(group_first_[e.group] + e.slice, all));
  }
  return std::vector<float>(all.begin() + first, all.begin() + first + e.numel);
}

Result<std::vector<float>> ModelState::masters_to_host() {
  std::vector<float> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    EBB_ASSIGN_OR_RETURN(std::vector<float> p, master_to_host(i));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

}  // namespace ebb
