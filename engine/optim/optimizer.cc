#include "engine/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "engine/nn_ops.h"
#include "kernels/arith.h"
#include "kernels/optim.h"

namespace ebb {
namespace {

// State floats of one parameter start at a multiple of this (512 bytes), as the flat layout's
// parameters do.
constexpr std::int64_t kStateAlignFloats = 128;

// A parameter as the factored optimizers see it: a matrix of rows x cols (cols >= 2), or a
// vector (cols == 1). Higher ranks fold into rows x (the product of the rest).
std::pair<std::int64_t, std::int64_t> matrix_shape(const std::vector<std::int64_t>& shape) {
  if (shape.size() < 2) return {shape_numel(shape), 1};
  return {shape[0], shape_numel(shape) / shape[0]};
}

// State floats of a factored optimizer (Adafactor, SM3) for one parameter: a row and a column
// vector for a matrix, one full vector for a vector, aligned.
std::int64_t factored_floats(std::int64_t rows, std::int64_t cols) {
  return round_up(cols >= 2 ? rows + cols : rows, kStateAlignFloats);
}

bool has_second_buffer(const OptimizerConfig& c) {
  return c.kind == OptimizerKind::kAdamW ||
         (c.kind == OptimizerKind::kAdafactor && c.adafactor_beta1 > 0) ||
         (c.kind == OptimizerKind::kSm3 && c.momentum > 0);
}

}  // namespace

SliceStateFloats slice_state_floats(const OptimizerConfig& config,
                                    std::span<const ParameterDecl> params, const FlatSlice& slice) {
  SliceStateFloats f;
  if (config.kind == OptimizerKind::kAdamW) {
    f.a = slice.numel();
  } else {
    for (std::size_t p : slice.params) {
      const auto [rows, cols] = matrix_shape(params[p].shape);
      f.a += factored_floats(rows, cols);
    }
  }
  f.b = has_second_buffer(config) ? slice.numel() : 0;
  return f;
}

std::string_view optimizer_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kAdamW:
      return "adamw";
    case OptimizerKind::kAdafactor:
      return "adafactor";
    case OptimizerKind::kSm3:
      return "sm3";
  }
  return "unknown";
}

std::optional<OptimizerKind> optimizer_from_name(std::string_view name) {
  for (OptimizerKind k : {OptimizerKind::kAdamW, OptimizerKind::kAdafactor, OptimizerKind::kSm3}) {
    if (optimizer_name(k) == name) return k;
  }
  return std::nullopt;
}

float default_learning_rate(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kAdamW:
    case OptimizerKind::kAdafactor:
      return 1e-3F;
    case OptimizerKind::kSm3:
      return 1e-2F;
  }
  return 1e-3F;
}

float GradientStats::norm() const { return std::sqrt(sum_of_squares); }

Result<std::unique_ptr<Optimizer>> Optimizer::create(Engine& engine, ModelState& model,
                                                     const OptimizerConfig& config,
                                                     const OffloadOptions& offload) {
  const auto in_unit = [](float x) { return x >= 0 && x < 1; };
  if (!(config.learning_rate >= 0) || !(config.weight_decay >= 0)) {
    return invalid_argument("optimizer " + std::string(optimizer_name(config.kind)) +
                            ": learning rate " + std::to_string(config.learning_rate) +
                            " and weight decay " + std::to_string(config.weight_decay) +
                            " must be >= 0");
  }
  if (!in_unit(config.beta1) || !in_unit(config.beta2) || !in_unit(config.adafactor_beta1) ||
      !in_unit(config.momentum)) {
    return invalid_argument("optimizer " + std::string(optimizer_name(config.kind)) +
                            ": beta1, beta2, the Adafactor beta1 and the SM3 momentum must be in "
                            "[0, 1)");
  }
  if (engine.in_iteration()) {
    return failed_precondition("Optimizer::create inside an iteration: its state is carried");
  }
  std::unique_ptr<Optimizer> opt(new Optimizer(engine, model, config, offload));
  if (offload.delayed_update && !opt->has_off_device()) {
    return invalid_argument(
        "--delayed-update with every slice's optimizer state on the device: the delayed update "
        "overlaps a CPU step with the next forward and backward, so it needs state on the host "
        "or on NVMe (--optimizer-state host, nvme or auto)");
  }
  OptimizerConfig& c = opt->config_;
  if (c.learning_rate == 0) c.learning_rate = default_learning_rate(c.kind);
  const FlatLayout& layout = model.layout();
  std::int64_t workspace_floats = 0;
  for (const ModelState::Slice& ms : model.slices()) {
    const FlatGroup& group = layout.groups[ms.group];
    const FlatSlice& fs = group.slices[ms.index];
    SliceState ss;
    ss.params = fs.params;
    std::int64_t factored = 0;
    for (std::size_t p : fs.params) {
      const FlatEntry& e = layout.entries[p];
      const auto [rows, cols] = matrix_shape(model.params()[p].shape);
      ParamState w{.rows = rows, .cols = cols, .first = e.offset - fs.begin, .offset = factored};
      switch (c.kind) {
        case OptimizerKind::kAdamW:
          break;
        case OptimizerKind::kAdafactor:
          factored += factored_floats(rows, cols);
          workspace_floats =
              std::max(workspace_floats, optim::adafactor_workspace_floats(rows, cols));
          break;
        case OptimizerKind::kSm3:
          factored += factored_floats(rows, cols);
          workspace_floats = std::max(workspace_floats, optim::sm3_workspace_floats(rows, cols));
          break;
      }
      ss.where.push_back(w);
    }
    const SliceStateFloats floats = slice_state_floats(c, model.params(), fs);
    ss.a_floats = floats.a;
    ss.b_floats = floats.b;
    if (ms.placement != StatePlacement::kDevice) {
      opt->slices_.push_back(std::move(ss));
      continue;
    }
    const std::string base = model.slice_label(opt->slices_.size()) + ".";
    const auto make = [&](const std::string& name, std::int64_t floats) -> Result<Tensor> {
      EBB_ASSIGN_OR_RETURN(
          Tensor t,
          engine.parameter(
              {name, {std::max<std::int64_t>(floats, 1)}, DType::kF32, TensorKind::kOptimizerState},
              nullptr));
      opt->state_.push_back({name, t});
      return t;
    };
    if (c.kind == OptimizerKind::kAdamW) {
      EBB_ASSIGN_OR_RETURN(ss.a, make(base + "adamw_m", ms.numel));
      EBB_ASSIGN_OR_RETURN(ss.b, make(base + "adamw_v", ms.numel));
    } else if (c.kind == OptimizerKind::kAdafactor) {
      EBB_ASSIGN_OR_RETURN(ss.a, make(base + "adafactor_second_moment", factored));
      if (c.adafactor_beta1 > 0) {
        EBB_ASSIGN_OR_RETURN(ss.b, make(base + "adafactor_first_moment", ms.numel));
      }
    } else {
      EBB_ASSIGN_OR_RETURN(ss.a, make(base + "sm3_accumulators", factored));
      if (c.momentum > 0) {
        EBB_ASSIGN_OR_RETURN(ss.b, make(base + "sm3_momentum", ms.numel));
      }
    }
    opt->slices_.push_back(std::move(ss));
  }
  opt->host_workspace_.assign(static_cast<std::size_t>(workspace_floats), 0.0F);
  EBB_RETURN_IF_ERROR(opt->create_off_device());
  if (workspace_floats > 0) {
    EBB_ASSIGN_OR_RETURN(
        opt->workspace_,
        engine.parameter(
            {"optimizer.workspace", {workspace_floats}, DType::kF32, TensorKind::kWorkspace},
            nullptr));
  }
  return opt;
}

std::size_t Optimizer::state_bytes() const {
  std::size_t bytes = 0;
  for (const StateBuffer& s : state_) bytes += s.tensor.bytes();
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    if (off_[k] != nullptr) {
      bytes += static_cast<std::size_t>(slices_[k].a_floats + slices_[k].b_floats) * sizeof(float);
    }
  }
  return bytes;
}

double Optimizer::state_bytes_per_parameter() const {
  const std::int64_t n = model_.layout().parameter_numel();
  return n > 0 ? static_cast<double>(state_bytes()) / static_cast<double>(n) : 0.0;
}

float Optimizer::weight_decay(std::size_t slice) const {
  const ModelState::Slice& ms = model_.slices()[slice];
  return model_.layout().groups[ms.group].group == ParameterGroup::kDecay ? config_.weight_decay
                                                                          : 0.0F;
}

std::string Optimizer::slice_base(std::size_t slice) const { return model_.slice_label(slice); }

void Optimizer::run_update(const LaunchContext& ctx, std::size_t slice,
                           std::span<const ParamState> where, std::int64_t numel,
                           const UpdateBuffers& b, const StepArgs& args) const {
  const nn::FloatType param_t = *ops::float_type_of(model_.param_dtype());
  const nn::FloatType grad_t = *ops::float_type_of(model_.grad_dtype());
  const OptimizerConfig& c = config_;
  const float wd = weight_decay(slice);
  if (c.kind == OptimizerKind::kAdamW) {
    const optim::AdamWStep s{.lr = args.lr,
                             .beta1 = c.beta1,
                             .beta2 = c.beta2,
                             .eps = c.eps,
                             .weight_decay = wd,
                             .step = args.step,
                             .grad_scale = args.grad_scale};
    optim::adamw(ctx, param_t, b.param, b.master, b.a, b.b, grad_t, b.grad, numel, s);
    return;
  }
  const std::size_t pbytes = nn::float_bytes(param_t);
  const std::size_t gbytes = nn::float_bytes(grad_t);
  for (const ParamState& w : where) {
    void* p = static_cast<std::byte*>(b.param) + w.first * pbytes;
    float* xm = b.master != nullptr ? b.master + w.first : nullptr;
    const void* g = static_cast<const std::byte*>(b.grad) + w.first * gbytes;
    float* first_moment = b.b != nullptr ? b.b + w.first : nullptr;
    float* state = b.a + w.offset;
    const bool matrix = w.cols >= 2;
    if (c.kind == OptimizerKind::kAdafactor) {
      const optim::AdafactorStep s{.lr = args.lr,
                                   .relative_step = c.relative_step,
                                   .beta1 = c.adafactor_beta1,
                                   .weight_decay = wd,
                                   .step = args.step,
                                   .grad_scale = args.grad_scale};
      optim::adafactor(ctx, param_t, p, xm, matrix ? state : nullptr,
                       matrix ? state + w.rows : nullptr, matrix ? nullptr : state, first_moment,
                       grad_t, g, w.rows, w.cols, s, b.workspace);
    } else {
      const optim::Sm3Step s{
          .lr = args.lr, .momentum = c.momentum, .weight_decay = wd, .grad_scale = args.grad_scale};
      optim::sm3(ctx, param_t, p, xm, matrix ? state : nullptr, matrix ? state + w.rows : nullptr,
                 matrix ? nullptr : state, first_moment, grad_t, g, w.rows, w.cols, s, b.workspace);
    }
  }
}

Status Optimizer::step(int step, float lr, float grad_scale) {
  if (step < 1) return invalid_argument("optimizer step " + std::to_string(step) + " (from 1)");
  const bool master = has_master_weights(model_.precision());
  const StepArgs args{.step = step, .lr = lr, .grad_scale = grad_scale};
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    const ModelState::Slice& ms = model_.slices()[k];
    if (ms.placement != StatePlacement::kDevice) continue;
    const SliceState& ss = slices_[k];
    // Targets: [master], parameters, state a, [state b], [workspace]; the closure finds each by
    // the index it gets here.
    std::vector<Tensor> targets;
    const auto target = [&](const Tensor& t) {
      if (!t.valid()) return -1;
      targets.push_back(t);
      return static_cast<int>(targets.size()) - 1;
    };
    const int t_master = master ? target(ms.master) : -1;
    const int t_param = target(ms.params);
    const int t_a = target(ss.a);
    const int t_b = target(ss.b);
    const int t_ws = config_.kind != OptimizerKind::kAdamW ? target(workspace_) : -1;
    const auto ptr = [](const OpArgs& a, int i) -> void* { return i < 0 ? nullptr : a.outputs[i]; };
    OpFn fn = [this, k, where = ss.where, numel = ms.numel, args, t_master, t_param, t_a, t_b, t_ws,
               ptr](const OpArgs& a) {
      const UpdateBuffers b{.param = ptr(a, t_param),
                            .master = static_cast<float*>(ptr(a, t_master)),
                            .a = static_cast<float*>(ptr(a, t_a)),
                            .b = static_cast<float*>(ptr(a, t_b)),
                            .grad = a.inputs[0],
                            .workspace = static_cast<float*>(ptr(a, t_ws))};
      run_update(a.launch, k, where, numel, b, args);
    };
    const Tensor grads[] = {ms.grads};
    const std::chrono::nanoseconds cost =
        update_cost_ ? update_cost_(ms.numel) : std::chrono::nanoseconds(0);
    EBB_RETURN_IF_ERROR(
        engine_.update("optimizer." + slice_base(k), grads, targets, std::move(fn), cost));
  }
  if (!has_off_device()) return ok_status();
  // Off the device: the previous step's CPU step first (a delayed update), then this one's.
  EBB_RETURN_IF_ERROR(wait_for_worker());
  EBB_RETURN_IF_ERROR(install_parameters());
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    if (off_[k] != nullptr) EBB_RETURN_IF_ERROR(copy_gradients(k));
  }
  EBB_RETURN_IF_ERROR(engine_.wait_reads());
  const int buffer = grad_buffer_;
  if (offload_.delayed_update) grad_buffer_ ^= 1;  // the next step's copies fill the other one
  if (offload_.delayed_update && step >= 2) {
    worker_ =
        std::async(std::launch::async, [this, args, buffer] { return cpu_step(args, buffer); });
    return ok_status();
  }
  EBB_RETURN_IF_ERROR(cpu_step(args, buffer));
  parameters_ready_ = true;
  return install_parameters();
}

Result<GradientStats> gradient_stats(Engine& engine, const ModelState& state, float inv_scale) {
  const nn::FloatType grad_t = *ops::float_type_of(state.grad_dtype());
  std::vector<Tensor> grads;
  std::vector<std::int64_t> numels;
  std::int64_t workspace = 1;
  for (const ModelState::Slice& s : state.slices()) {
    grads.push_back(s.grads);
    numels.push_back(s.numel);
    workspace = std::max(workspace, optim::grad_stats_workspace_floats(s.numel));
  }
  const auto k = static_cast<std::int64_t>(grads.size());
  // Output 0: the total, then each slice's part, 2 floats each; output 1: scratch.
  EBB_ASSIGN_OR_RETURN(
      std::vector<Tensor> out,
      engine.run("gradient_stats", grads,
                 {{"gradient_stats", {k + 1, 2}, DType::kF32, TensorKind::kWorkspace},
                  {"gradient_stats.scratch", {workspace}, DType::kF32, TensorKind::kWorkspace}},
                 [grad_t, numels, inv_scale](const OpArgs& a) {
                   auto* stats = static_cast<float*>(a.outputs[0]);
                   auto* scratch = static_cast<float*>(a.outputs[1]);
                   for (std::size_t i = 0; i < numels.size(); ++i) {
                     optim::grad_stats(a.launch, grad_t, a.inputs[i], numels[i], inv_scale,
                                       stats + 2 * (i + 1), scratch);
                   }
                   optim::combine_stats(a.launch, stats + 2, static_cast<int>(numels.size()),
                                        stats);
                 }));
  float host[2] = {0, 0};
  Status read = engine.read(out[0], host, sizeof host);
  (void)engine.release(out[0]);
  (void)engine.release(out[1]);
  EBB_RETURN_IF_ERROR(read);
  return GradientStats{.sum_of_squares = host[0], .nonfinite = host[1]};
}

}  // namespace ebb
