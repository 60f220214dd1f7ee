#include "tools/train/trainer.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <memory>

#include "engine/planner/hardware_probe.h"
#include "engine/schema/checkpoint.h"
#include "kernels/nn_scalar.h"
#include "tools/train/gpt_model.h"
#include "tools/train/token_data.h"

namespace ebb::train {
namespace {

// cpu device memory: a lazily touched host region; pages small enough that budgets of a few
// MiB (the demo's model) are not rounded away by the mapping granularity.
constexpr std::size_t kCpuDeviceBytes = std::size_t{4} << 30;  // 4 GiB of address space
constexpr std::size_t kCpuPageBytes = std::size_t{64} << 10;   // 64 KiB
// Synthetic stream length: long enough that a demo does not see the same batch twice.
constexpr std::int64_t kSyntheticTokens = std::int64_t{1} << 20;

Result<std::unique_ptr<Device>> make_device(DeviceKind kind, double link_gbps) {
  DeviceOptions options;
  options.kind = kind;
  if (kind != DeviceKind::kCuda) {
    options.capacity_bytes = kCpuDeviceBytes;
    options.page_bytes = kCpuPageBytes;
    const LinkModel link{link_gbps * 1e9, link_gbps > 0 ? std::chrono::microseconds(5)
                                                        : std::chrono::microseconds(0)};
    options.host_to_device = link;
    options.device_to_host = link;
  }
  return create_device(options);
}

Result<TokenData> load_data(const TrainOptions& o) {
  const std::int64_t needed = static_cast<std::int64_t>(o.model.batch) * o.model.seq + 1;
  if (o.data_path.empty()) {
    return TokenData::synthetic(o.model.vocab, std::max(kSyntheticTokens, needed), o.seed);
  }
  return TokenData::from_file(o.data_path, o.model.vocab, needed);
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

GptTraining training_of(const TrainOptions& o, std::vector<StatePlacement> placement) {
  return GptTraining{
      .precision = o.precision,
      .grad_dtype = o.grad_dtype.value_or(precision_dtype(o.precision)),
      .optimizer = o.optimizer,
      .placement = std::move(placement),
      .offload = {.delayed_update = o.delayed_update, .nvme_chunk_bytes = o.nvme_chunk_bytes}};
}

float peak_learning_rate(const TrainOptions& o) {
  return o.optimizer.learning_rate > 0 ? o.optimizer.learning_rate
                                       : default_learning_rate(o.optimizer.kind);
}

// The trainer's side of a checkpoint: where the run is and what the loss scaler knows.
struct RunPosition {
  int step = 0;           // the last step done
  int applied_steps = 0;  // updates applied (fp16 skips do not count): the optimizer's step
  LossScaler scaler;
};

Status save_checkpoint(const TrainOptions& o, Engine& engine, GptModel& model,
                       const RunPosition& at) {
  // The master weights and the optimizer's state, wherever they live, by name (the same in
  // every placement, so a checkpoint moves between them).
  // A delayed update's CPU step in flight lands first, so that the checkpoint holds every step
  // taken; the run goes on from there as a resumed one does (the next step's forward sees the
  // update, not one stale), which keeps resume bit-exact.
  Optimizer& optimizer = model.optimizer();
  EBB_RETURN_IF_ERROR(optimizer.flush());
  const std::vector<Optimizer::Blob> blobs = optimizer.blobs();
  std::vector<std::vector<std::byte>> bytes(blobs.size());
  std::vector<CheckpointPayload> payloads;
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    bytes[i].resize(blobs[i].bytes);
    EBB_RETURN_IF_ERROR(optimizer.read_blob(i, bytes[i]));
    payloads.push_back({blobs[i].name, bytes[i]});
  }
  CheckpointMeta meta{.step = at.step,
                      .model_fingerprint = checkpoint_fingerprint(o),
                      .precision = std::string(precision_name(o.precision)),
                      .optimizer = std::string(optimizer_name(o.optimizer.kind))};
  // The data position is the step: batches are cut from the stream by their index
  // (TokenData::batch), and nothing else draws random numbers after initialization.
  meta.state = {{"applied_steps", at.applied_steps},
                {"loss_scale", at.scaler.scale()},
                {"loss_scale_growth_tracker", at.scaler.growth_tracker()},
                {"skipped_steps", at.scaler.skipped_steps()},
                {"seed", o.seed},
                {"next_batch_index", static_cast<std::int64_t>(at.step) * o.grad_accum},
                {"schedule_step", at.step}};
  return write_checkpoint(o.checkpoint_dir, meta, payloads);
}

// Loads the latest checkpoint of o.checkpoint_dir into the model (outside any iteration) and
// returns where it left off.
Result<RunPosition> load_checkpoint(const TrainOptions& o, Engine& engine, GptModel& model,
                                    RunPosition at) {
  EBB_ASSIGN_OR_RETURN(Checkpoint ckpt,
                       read_latest_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o)));
  // Each blob where it lives; a master also sets the working parameters (rounded).
  Optimizer& optimizer = model.optimizer();
  const std::vector<Optimizer::Blob> blobs = optimizer.blobs();
  std::vector<std::byte> bytes;
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    bytes.resize(blobs[i].bytes);
    EBB_RETURN_IF_ERROR(ckpt.read_payload(blobs[i].name, bytes));
    EBB_RETURN_IF_ERROR(optimizer.write_blob(i, bytes));
  }
  const nlohmann::json& s = ckpt.meta().state;
  at.step = static_cast<int>(ckpt.meta().step);
  at.applied_steps = s.at("applied_steps").get<int>();
  at.scaler.restore(s.at("loss_scale").get<float>(), s.at("loss_scale_growth_tracker").get<int>(),
                    s.at("skipped_steps").get<std::int64_t>());
  return at;
}

// Trains steps up to `steps` on a fresh engine of `device` with `budget_bytes` (0: the device's
// size), from a checkpoint when o.resume.
Result<TrainResult> run(const TrainOptions& o, Device& device, const TokenData& data,
                        std::size_t budget_bytes, int steps, bool write_profile_out,
                        const std::vector<StatePlacement>& placement,
                        const std::function<void(const StepStats&)>& on_step) {
  EngineOptions engine_options{.device = device,
                               .budget_bytes = budget_bytes,
                               .policy = o.policy,
                               .warmup_iterations = o.warmup_iterations};
  if (o.host_tier_bytes > 0) engine_options.host_tier_bytes = o.host_tier_bytes;
  engine_options.nvme_directories = o.nvme_directories;
  engine_options.nvme_tier_bytes = o.nvme_tier_bytes;
  TrainResult result;
  if (o.plan_policy.has_value()) {
    EBB_ASSIGN_OR_RETURN(result.hardware, measure_host_link(device));
    engine_options.planner = [&o, &result, budget_bytes, &device](const Profile& profile) {
      PlannerOptions planner;
      planner.policy = *o.plan_policy;
      planner.budget_bytes = budget_bytes > 0 ? budget_bytes : device.capacity_bytes();
      planner.hardware = result.hardware;
      return make_plan(profile, planner);
    };
  }
  EBB_ASSIGN_OR_RETURN(auto engine, Engine::create(std::move(engine_options)));
  EBB_ASSIGN_OR_RETURN(auto model,
                       GptModel::create(*engine, o.model, o.seed, training_of(o, placement)));
  EBB_ASSIGN_OR_RETURN(LossScaler scaler, LossScaler::create(o.loss_scaler));
  RunPosition at{.scaler = scaler};
  if (o.resume) {
    EBB_ASSIGN_OR_RETURN(at, load_checkpoint(o, *engine, *model, at));
    result.resumed_from_step = at.step;
  }
  result.budget_bytes = engine->allocator().stats().budget_bytes;
  const auto micro = static_cast<std::size_t>(o.grad_accum);
  std::vector<std::vector<std::int32_t>> inputs(micro);
  std::vector<std::vector<std::int32_t>> targets(micro);
  std::vector<double> step_ms;
  std::vector<double> steady_ms;
  std::size_t peak_reserved = 0;  // over every step (the allocator's peak is reset after warm-up)
  const double tokens_per_step = static_cast<double>(o.model.batch) * o.model.seq * o.grad_accum;
  const float peak_lr = peak_learning_rate(o);
  const bool fp16 = o.precision == Precision::kF16;
  const int first = at.step + 1;
  for (int s = first; s <= steps; ++s) {
    for (std::size_t k = 0; k < micro; ++k) {
      data.batch(static_cast<std::int64_t>(s - 1) * o.grad_accum + static_cast<std::int64_t>(k),
                 o.model.batch, o.model.seq, inputs[k], targets[k]);
    }
    // The steady state starts after the warm-up (and the plan made at its end).
    if (s == first + o.warmup_iterations) engine->allocator().reset_peak_stats();
    StepControl control{.optimizer_step = at.applied_steps + 1,
                        .learning_rate = scheduled_learning_rate(s, steps, peak_lr, o.lr_warmup,
                                                                 o.lr_min.value_or(peak_lr)),
                        .loss_scale = fp16 ? at.scaler.scale() : 1.0F,
                        .clip_norm = o.clip_grad_norm,
                        .skip_nonfinite = fp16};
    const EngineStats before = engine->stats();
    const auto start = std::chrono::steady_clock::now();
    EBB_ASSIGN_OR_RETURN(StepOutcome outcome, model->step(inputs, targets, control));
    const auto end = std::chrono::steady_clock::now();
    const EngineStats after = engine->stats();
    if (!outcome.skipped) ++at.applied_steps;
    if (fp16) EBB_RETURN_IF_ERROR(at.scaler.update(outcome.skipped));
    at.step = s;
    StepStats st;
    st.step = s;
    st.loss = outcome.loss;
    st.ms = std::chrono::duration<double, std::milli>(end - start).count();
    st.tokens_per_s = st.ms > 0 ? tokens_per_step * 1000.0 / st.ms : 0;
    peak_reserved =
        std::max(peak_reserved,
                 static_cast<std::size_t>(engine->allocator().stats().all.reserved_bytes.peak));
    st.peak_reserved_bytes = peak_reserved;
    st.swapped_bytes = after.swapped_out_bytes - before.swapped_out_bytes;
    st.recompute_ms = static_cast<double>(after.recompute_ns - before.recompute_ns) / 1e6;
    st.recomputed_ops = after.recomputed_ops - before.recomputed_ops;
    st.learning_rate = control.learning_rate;
    st.loss_scale = control.loss_scale;
    st.skipped = outcome.skipped;
    st.grad_norm = outcome.grad_norm;
    step_ms.push_back(st.ms);
    if (s >= first + o.warmup_iterations) steady_ms.push_back(st.ms);
    result.steps.push_back(st);
    if (on_step) on_step(st);
    if (write_profile_out && s == first + o.warmup_iterations - 1) {
      EBB_ASSIGN_OR_RETURN(Profile profile, engine->profile());
      EBB_RETURN_IF_ERROR(write_profile(profile, o.profile_out));
    }
    if (o.checkpoint_every > 0 && s % o.checkpoint_every == 0) {
      EBB_RETURN_IF_ERROR(save_checkpoint(o, *engine, *model, at));
      result.checkpoints_written.push_back(s);
    }
  }
  // A delayed update's last CPU step lands before the results are read.
  EBB_RETURN_IF_ERROR(model->optimizer().flush());
  result.state_placement = placement;
  result.offload = model->optimizer().offload_stats();
  const AllocatorStats stats = engine->allocator().stats();
  result.peak_reserved_bytes =
      std::max(peak_reserved, static_cast<std::size_t>(stats.all.reserved_bytes.peak));
  if (static_cast<int>(steady_ms.size()) > 0) {
    result.steady_peak_reserved_bytes = static_cast<std::size_t>(stats.all.reserved_bytes.peak);
    result.steady_ms_median = median(steady_ms);
  }
  if (const Plan* plan = engine->active_plan()) result.plan = *plan;
  result.executor = engine->executor_stats();
  result.peak_live_bytes = static_cast<std::size_t>(stats.all.allocated_bytes.peak);
  result.ms_per_step_median = median(step_ms);
  result.tokens_per_s =
      result.ms_per_step_median > 0 ? tokens_per_step * 1000.0 / result.ms_per_step_median : 0;
  EBB_ASSIGN_OR_RETURN(result.final_parameters, model->parameters_to_host());
  result.engine = engine->stats();
  result.parameter_state_bytes = engine->memory_by_kind(TensorKind::kParameter).current;
  result.gradient_state_bytes = engine->memory_by_kind(TensorKind::kGradient).current;
  result.optimizer_state_bytes = engine->memory_by_kind(TensorKind::kOptimizerState).current;
  result.parameters = parameter_count(o.model);
  result.skipped_steps = at.scaler.skipped_steps();
  return result;
}

// Two steps of the same model on a fresh engine of `device`, nothing evicted and every slice's
// state on the device (empty placement): the unconstrained peak that a budget's percentage and
// auto placement start from.
Result<TrainResult> unconstrained_run(const TrainOptions& o, Device& device,
                                      const TokenData& data) {
  TrainOptions probe = o;
  probe.policy = EvictionPolicy::kNone;
  probe.plan_policy.reset();
  probe.resume = false;
  probe.checkpoint_every = 0;
  probe.optimizer_state = StatePolicy::kDevice;
  probe.delayed_update = false;
  return run(probe, device, data, 0, std::min(2, o.steps), false, {}, {});
}

// Where each slice's state lives for this run, and with auto the planner's choice.
struct PlacementChoice {
  std::vector<StatePlacement> slices;  // in the ModelState's slice order
  std::optional<StatePlacementPlan> plan;
};

// Per slice of the model's layout (the ModelState's order): the device bytes its master weights
// and optimizer state take when kept, and what a host step moves over the link.
Result<std::vector<StateSliceCost>> slice_costs(const TrainOptions& o) {
  const std::vector<ParameterDecl> decls = parameter_decls(o.model);
  EBB_ASSIGN_OR_RETURN(FlatLayout layout, make_flat_layout(decls, {}));
  const std::size_t master = has_master_weights(o.precision) ? sizeof(float) : 0;
  const std::size_t param = dtype_bytes(precision_dtype(o.precision));
  const std::size_t grad = dtype_bytes(o.grad_dtype.value_or(precision_dtype(o.precision)));
  std::vector<StateSliceCost> costs;
  for (const FlatGroup& g : layout.groups) {
    for (std::size_t k = 0; k < g.slices.size(); ++k) {
      const FlatSlice& slice = g.slices[k];
      const SliceStateFloats floats = slice_state_floats(o.optimizer, decls, slice);
      const auto numel = static_cast<std::size_t>(slice.numel());
      costs.push_back({.name = slice_name(g.group, k),
                       .state_bytes = numel * master +
                                      static_cast<std::size_t>(floats.a + floats.b) * sizeof(float),
                       .gradient_bytes = numel * grad,
                       .parameter_bytes = numel * param});
    }
  }
  return costs;
}

Result<PlacementChoice> choose_placement(const TrainOptions& o, Device& device,
                                         const TokenData& data, std::size_t budget) {
  EBB_ASSIGN_OR_RETURN(std::vector<StateSliceCost> costs, slice_costs(o));
  PlacementChoice choice;
  switch (o.optimizer_state) {
    case StatePolicy::kDevice:
      choice.slices.assign(costs.size(), StatePlacement::kDevice);
      return choice;
    case StatePolicy::kHost:
      choice.slices.assign(costs.size(), StatePlacement::kHost);
      return choice;
    case StatePolicy::kNvme:
      choice.slices.assign(costs.size(), StatePlacement::kNvme);
      return choice;
    case StatePolicy::kAuto:
      break;
  }
  // The device's bytes without the state, from a two-step run with every slice on the device
  // and nothing evicted: the peak less the state, and the model state a step needs besides.
  EBB_ASSIGN_OR_RETURN(TrainResult unconstrained, unconstrained_run(o, device, data));
  const auto state = static_cast<std::size_t>(unconstrained.optimizer_state_bytes);
  StatePlacementInputs in;
  in.slices = std::move(costs);
  in.budget_bytes = budget;
  // Where the engine may evict, activations beyond the budget are evicted anyway, and the state
  // gets only what they leave (the planner does not trade recomputes against state moves).
  in.other_peak_bytes =
      unconstrained.peak_reserved_bytes - std::min(unconstrained.peak_reserved_bytes, state);
  if (o.policy != EvictionPolicy::kNone)
    in.other_peak_bytes = std::min(in.other_peak_bytes, budget);
  in.step_other_bytes = static_cast<std::size_t>(unconstrained.parameter_state_bytes +
                                                 unconstrained.gradient_state_bytes);
  EBB_ASSIGN_OR_RETURN(HardwareModel link, measure_host_link(device));
  in.link_bytes_per_s = std::min(link.host_to_device_bytes_per_s, link.device_to_host_bytes_per_s);
  EBB_ASSIGN_OR_RETURN(in.device_state_bytes_per_s, measure_device_optimizer_bytes_per_s(device));
  in.cpu_state_bytes_per_s = measure_host_optimizer_bytes_per_s();
  // NVMe is not measured here, so auto places no slice there (--optimizer-state nvme does).
  in.allow_swap = o.policy == EvictionPolicy::kSwap || o.policy == EvictionPolicy::kBoth;
  Result<StatePlacementPlan> plan = plan_state_placement(in);
  if (!plan.ok()) {
    return Status(plan.status().code(), "--optimizer-state auto: " + plan.status().message());
  }
  for (const StateSliceChoice& c : plan->slices) choice.slices.push_back(placement_of(c.choice));
  choice.plan = *std::move(plan);
  return choice;
}

}  // namespace

double model_state_bytes_per_parameter(const TrainOptions& o) {
  const double work = static_cast<double>(dtype_bytes(precision_dtype(o.precision)));
  const double grad =
      static_cast<double>(dtype_bytes(o.grad_dtype.value_or(precision_dtype(o.precision))));
  // Off the device (auto: possibly all of it), master weights and moments take no device bytes.
  if (o.optimizer_state != StatePolicy::kDevice) return work + grad;
  const double master = has_master_weights(o.precision) ? 4.0 : 0.0;
  double optimizer = 0;
  switch (o.optimizer.kind) {
    case OptimizerKind::kAdamW:
      optimizer = 8;
      break;
    case OptimizerKind::kAdafactor:
      optimizer = o.optimizer.adafactor_beta1 > 0 ? 4 : 0;
      break;
    case OptimizerKind::kSm3:
      optimizer = o.optimizer.momentum > 0 ? 4 : 0;
      break;
  }
  return work + grad + master + optimizer;
}

std::size_t minimum_budget_bytes(const TrainOptions& o) {
  const GptConfig& c = o.model;
  const std::size_t a = dtype_bytes(precision_dtype(o.precision));  // activations
  const std::size_t f = sizeof(float);  // statistics, losses, weight gradients
  const std::size_t N = static_cast<std::size_t>(c.batch) * c.seq;
  const std::size_t C = c.d_model;
  const std::size_t V = c.vocab;
  const std::size_t att = static_cast<std::size_t>(c.batch) * c.heads * c.seq * c.seq;
  // Each op's inputs and outputs that are not model state (counted apart).
  const std::size_t ops[] = {
      N * V * 2 * a + N * 2 * f,              // cross_entropy: logits, probs, losses
      N * V * a + N * C * 2 * a + V * C * f,  // logits_backward: dlogits, lnf, dlnf, dwte
      (N * C * 3 * 2 + att + N * C) * a,      // attention_backward: dout, qkv, att, dqkv
      N * C * 4 * 2 * a + N * C * 2 * a + C * C * 4 * f + C * 4 * f,  // fc backward
  };
  std::size_t working = 0;
  for (std::size_t bytes : ops) working = std::max(working, bytes);
  const bool can_swap = o.policy == EvictionPolicy::kSwap || o.policy == EvictionPolicy::kBoth;
  const auto state = static_cast<std::size_t>(static_cast<double>(parameter_count(c)) *
                                              model_state_bytes_per_parameter(o));
  return working + (can_swap ? 0 : state);
}

std::string checkpoint_fingerprint(const TrainOptions& o) {
  const GptConfig& c = o.model;
  std::string f = "gpt layers=" + std::to_string(c.layers) +
                  " d_model=" + std::to_string(c.d_model) + " heads=" + std::to_string(c.heads) +
                  " seq=" + std::to_string(c.seq) + " batch=" + std::to_string(c.batch) +
                  " vocab=" + std::to_string(c.vocab) +
                  " grad_accum=" + std::to_string(o.grad_accum) +
                  " precision=" + std::string(precision_name(o.precision)) + " grad_dtype=" +
                  std::string(dtype_name(o.grad_dtype.value_or(precision_dtype(o.precision)))) +
                  " optimizer=" + std::string(optimizer_name(o.optimizer.kind));
  if (o.optimizer.kind == OptimizerKind::kAdafactor) {
    f += o.optimizer.adafactor_beta1 > 0 ? " first_moment" : " no_first_moment";
  }
  if (o.optimizer.kind == OptimizerKind::kSm3) {
    f += o.optimizer.momentum > 0 ? " momentum" : " no_momentum";
  }
  return f;
}

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](float x, float y) { return same_bits(x, y); });
}

bool same_losses(const TrainResult& a, const TrainResult& b) {
  return std::equal(
      a.steps.begin(), a.steps.end(), b.steps.begin(), b.steps.end(),
      [](const StepStats& x, const StepStats& y) { return same_bits(x.loss, y.loss); });
}

std::uint64_t fingerprint(const std::vector<float>& values) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (std::size_t i = 0; i < values.size() * sizeof(float); ++i) {
    h = (h ^ bytes[i]) * 0x100000001b3ULL;
  }
  return h;
}

Result<TrainResult> train(const TrainOptions& o,
                          const std::function<void(const StepStats&)>& on_step) {
  EBB_RETURN_IF_ERROR(validate_config(o.model));
  if (o.steps <= 0) {
    return invalid_argument("--steps must be positive (got " + std::to_string(o.steps) + ")");
  }
  if (o.budget_fraction < 0 || o.budget_fraction > 1) {
    return invalid_argument("--budget " + std::to_string(o.budget_fraction * 100) +
                            "% is not within 0-100% of the unconstrained peak");
  }
  if (!o.profile_out.empty() && o.steps < o.warmup_iterations) {
    return invalid_argument("--profile-out needs at least " + std::to_string(o.warmup_iterations) +
                            " steps (the warm-up)");
  }
  if (o.grad_accum < 1) {
    return invalid_argument("--grad-accum " + std::to_string(o.grad_accum) +
                            " must be at least 1 (micro-batches per optimizer step)");
  }
  if (!(o.clip_grad_norm >= 0)) {
    return invalid_argument("--clip-grad-norm " + std::to_string(o.clip_grad_norm) +
                            " must be >= 0 (0: no clipping)");
  }
  if (o.lr_warmup < 0 || (o.lr_min.has_value() && !(*o.lr_min >= 0))) {
    return invalid_argument("--lr-warmup and --lr-min must be >= 0");
  }
  const DType work = precision_dtype(o.precision);
  if (o.grad_dtype.has_value() && *o.grad_dtype != DType::kF32 && *o.grad_dtype != work) {
    return invalid_argument("--grad-dtype " + std::string(dtype_name(*o.grad_dtype)) +
                            " is neither f32 nor the precision's " + std::string(dtype_name(work)));
  }
  if (o.checkpoint_every < 0) {
    return invalid_argument("--checkpoint-every must be >= 0 (0: never)");
  }
  if ((o.checkpoint_every > 0 || o.resume) && o.checkpoint_dir.empty()) {
    return invalid_argument("--checkpoint-every and --resume need --checkpoint-dir");
  }
  if (o.checkpoint_every > 0) EBB_RETURN_IF_ERROR(check_checkpoint_dir(o.checkpoint_dir));
  if (o.resume) {
    // The latest checkpoint must exist and be this model's before anything runs.
    Result<Checkpoint> latest = read_latest_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o));
    if (!latest.ok()) {
      return Status(latest.status().code(),
                    "--resume: " + latest.status().message() +
                        (latest.status().code() == StatusCode::kNotFound
                             ? " (no checkpoint to resume from in " + o.checkpoint_dir + ")"
                             : std::string()));
    }
    if (latest->meta().step >= o.steps) {
      return invalid_argument("--resume: the latest checkpoint is at step " +
                              std::to_string(latest->meta().step) + ", not before --steps " +
                              std::to_string(o.steps) +
                              " (steps count from the run's start, not from the checkpoint)");
    }
  }
  if (o.optimizer_state == StatePolicy::kNvme && o.nvme_directories.empty()) {
    return invalid_argument(
        "--optimizer-state nvme needs an NVMe tier to stream the state through: give --nvme-dir "
        "DIR (or use --optimizer-state host)");
  }
  if (o.delayed_update && o.optimizer_state == StatePolicy::kDevice) {
    return invalid_argument(
        "--delayed-update with --optimizer-state device: the delayed update overlaps the CPU "
        "step with the next forward and backward, so it needs the state on the host or on NVMe "
        "(--optimizer-state host, nvme or auto)");
  }
  if (o.optimizer_state == StatePolicy::kAuto && o.budget_bytes == 0 && o.budget_fraction == 0) {
    return invalid_argument(
        "--optimizer-state auto places the state to fit a budget: give --budget (or choose "
        "device, host or nvme)");
  }
  EBB_RETURN_IF_ERROR(LossScaler::create(o.loss_scaler).status());
  EBB_ASSIGN_OR_RETURN(TokenData data, load_data(o));
  EBB_ASSIGN_OR_RETURN(auto device, make_device(o.device, o.link_gbps));
  std::size_t budget = o.budget_bytes;
  if (budget == 0 && o.budget_fraction > 0) {
    // The unconstrained peak, from a short run of the same model on a fresh engine.
    EBB_ASSIGN_OR_RETURN(TrainResult unconstrained, unconstrained_run(o, *device, data));
    budget = static_cast<std::size_t>(static_cast<double>(unconstrained.peak_reserved_bytes) *
                                      o.budget_fraction);
  }
  if (budget > 0) {
    const std::size_t floor = minimum_budget_bytes(o);
    if (budget < floor) {
      return invalid_argument(
          "--budget " + std::to_string(budget) + " B is below the " + std::to_string(floor) +
          " B that one step needs at once under policy " +
          std::string(eviction_policy_name(o.policy)) + " (the largest op's working set" +
          (o.policy == EvictionPolicy::kSwap || o.policy == EvictionPolicy::kBoth
               ? ")"
               : ", plus the model state, which only swapping could evict)"));
    }
    if (budget > device->capacity_bytes()) {
      return invalid_argument("--budget " + std::to_string(budget) + " B is above the device's " +
                              std::to_string(device->capacity_bytes()) + " B");
    }
  }
  EBB_ASSIGN_OR_RETURN(PlacementChoice placement, choose_placement(o, *device, data, budget));
  EBB_ASSIGN_OR_RETURN(TrainResult result, run(o, *device, data, budget, o.steps,
                                               !o.profile_out.empty(), placement.slices, on_step));
  if (placement.plan.has_value() && result.plan.has_value()) {
    result.plan->state_placement = state_decisions(*placement.plan);
  }
  result.state_plan = std::move(placement.plan);
  return result;
}

}  // namespace ebb::train
