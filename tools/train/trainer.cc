#include "tools/train/trainer.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "engine/planner/hardware_probe.h"
#include "engine/schema/checkpoint.h"
#include "engine/schema/sharded_checkpoint.h"
#include "kernels/arith.h"
#include "kernels/cpu/process_memory.h"
#include "kernels/nn_scalar.h"
#include "kernels/sim/sim_device.h"
#include "kernels/statistics.h"
#include "tools/train/checkpoint_io.h"
#include "tools/train/gpt_model.h"
#include "tools/train/op_work.h"
#include "tools/train/token_data.h"

namespace ebb::train {
namespace {

// cpu device memory: a lazily touched host region; pages small enough that budgets of a few
// MiB (the demo's model) are not rounded away by the mapping granularity.
constexpr std::size_t kCpuDeviceBytes = std::size_t{4} << 30;  // 4 GiB of address space
constexpr std::size_t kCpuPageBytes = std::size_t{64} << 10;   // 64 KiB
// Synthetic stream length: long enough that a demo does not see the same batch twice.
constexpr std::int64_t kSyntheticTokens = std::int64_t{1} << 20;

// The sim device's pages when the hardware names none: CUDA's mapping granularity.
constexpr std::size_t kSimPageBytes = std::size_t{2} << 20;  // 2 MiB

// A sim device of `memory_bytes` (rounded up to its pages) whose copies take `hw`'s host link.
Result<std::unique_ptr<Device>> make_sim_device(std::size_t memory_bytes, const HardwareModel& hw) {
  DeviceOptions options;
  options.kind = DeviceKind::kSim;
  options.page_bytes = hw.page_bytes > 0 ? hw.page_bytes : kSimPageBytes;
  options.capacity_bytes = round_up(memory_bytes, options.page_bytes);
  options.host_to_device = LinkModel{hw.host_to_device_bytes_per_s, hw.link_latency};
  options.device_to_host = LinkModel{hw.device_to_host_bytes_per_s, hw.link_latency};
  return create_device(options);
}

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

// The sim device's memory: as given, else the chip's.
std::size_t sim_memory_bytes(const TrainOptions& o) {
  if (o.device_memory_bytes > 0) return o.device_memory_bytes;
  return o.sim_chip.has_value() ? o.sim_chip->memory_bytes : 0;
}

// What a run on a sim device cannot do: whatever reads or writes the values of device memory,
// which a sim device does not hold, or runs the optimizer's step on the host's real memory.
Status check_simulable(const TrainOptions& o) {
  const auto refuse = [](const std::string& what) {
    return invalid_argument("--device sim: " + what +
                            " (a sim device runs no kernels and its memory holds no values)");
  };
  if (sim_memory_bytes(o) == 0) {
    return invalid_argument(
        "--device sim needs the device's memory: give --device-memory BYTES (e.g. 80GiB), or a "
        "hardware profile with a chip object");
  }
  if (o.checkpoint_every > 0 || o.resume || !o.checkpoint_at_start.empty()) {
    return refuse("checkpoints read and write the model state's values");
  }
  if (!o.init_from.empty()) return refuse("--init-from writes the weights' values");
  if (o.clip_grad_norm > 0) return refuse("--clip-grad-norm reads the gradient norm");
  if (o.precision == Precision::kF16) {
    return refuse("fp16's loss scaling reads the gradients for overflows; use bf16");
  }
  if (o.sim_ranks < 1) {
    return invalid_argument("--gpus " + std::to_string(o.sim_ranks) + ": at least 1");
  }
  if (o.sim_ranks > 1 && !o.zero_stage.has_value()) {
    return invalid_argument("--gpus " + std::to_string(o.sim_ranks) +
                            " without --zero: data parallelism over the sim's ranks is ZeRO "
                            "(stage 0 replicates everything)");
  }
  if (o.optimizer_state != StatePolicy::kDevice && !o.sim_chip.has_value()) {
    return invalid_argument(
        "--device sim with --optimizer-state host, nvme or auto: the CPU step off the device is "
        "timed on the host of a hardware profile's chip; give --hw FILE with a chip object");
  }
  if (o.delayed_update) {
    return refuse(
        "--delayed-update overlaps the CPU step on a thread of its own, which the sim's "
        "clock does not model");
  }
  if (!o.nvme_directories.empty()) return refuse("the NVMe tier writes real files");
  return ok_status();
}

Result<TokenData> load_data(const TrainOptions& o) {
  const std::int64_t needed = static_cast<std::int64_t>(o.model.batch) * o.model.seq + 1;
  if (o.data_path.empty()) {
    return TokenData::synthetic(o.model.vocab, std::max(kSyntheticTokens, needed), o.seed);
  }
  return TokenData::from_file(o.data_path, o.model.vocab, needed);
}

// Stage 3's second communicator, made (by every rank) before any model is (run_training).
Communicator* gather_communicator(const TrainOptions& o) {
  Result<Communicator*> gather = process_communicator(o.device, o.comm_timeout, true, o.sim_ranks);
  return gather.ok() ? *gather : nullptr;
}

// On sim with a chip: the optimizer's CPU step off the device timed on its host. Otherwise none.
Optimizer::HostStepCost sim_host_step_cost(const TrainOptions& o) {
  if (o.device != DeviceKind::kSim || !o.sim_chip.has_value()) return nullptr;
  return [chip = *o.sim_chip](const HostStepWork& work) { return host_step_time(chip, work); };
}

// On sim with a chip: each kernel's roofline time on it. Otherwise none.
std::function<std::chrono::nanoseconds(const KernelWork&)> sim_kernel_time(const TrainOptions& o) {
  if (o.device != DeviceKind::kSim || !o.sim_chip.has_value()) return nullptr;
  return [chip = *o.sim_chip](const KernelWork& work) { return kernel_time(chip, work); };
}

GptTraining training_of(const TrainOptions& o, std::vector<StatePlacement> placement,
                        Communicator* comm) {
  return GptTraining{
      .precision = o.precision,
      .grad_dtype = o.grad_dtype.value_or(precision_dtype(o.precision)),
      .optimizer = o.optimizer,
      .placement = std::move(placement),
      .offload = {.delayed_update = o.delayed_update, .nvme_chunk_bytes = o.nvme_chunk_bytes},
      .zero_stage = o.zero_stage,
      .zero_bucket_bytes = o.zero_bucket_bytes,
      .gather_policy = o.gather_policy,
      .comm = comm,
      // Made with the first one (run_training) when the stage is 3.
      .gather_comm = o.zero_stage == 3 && comm != nullptr ? gather_communicator(o) : nullptr,
      .micro_batches = o.grad_accum,
      .kernel_time = sim_kernel_time(o),
      .host_step_cost = sim_host_step_cost(o)};
}

// The ranks as the sharded checkpoint sees them (engine/schema/sharded_checkpoint.h).
RankGroup rank_group(Communicator* comm) {
  if (comm == nullptr) return single_rank();
  return RankGroup{
      .rank = comm->rank(),
      .size = comm->size(),
      .all_gather = [comm](std::span<const std::byte> send) -> Result<std::vector<std::byte>> {
        std::vector<std::byte> all(send.size() * static_cast<std::size_t>(comm->size()));
        EBB_RETURN_IF_ERROR(comm->host_all_gather(send.data(), all.data(), send.size()));
        return all;
      }};
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

// Each rank's status, shared (defined below).
Status agree(Communicator* comm, const Status& local);

// Writes the model's state at `at` into `dir` (o.checkpoint_dir, or o.checkpoint_at_start).
Status save_checkpoint(const TrainOptions& o, const std::string& dir, GptModel& model,
                       const RunPosition& at, Communicator* comm) {
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
  // What each blob holds, so that another number of ranks can read it (checkpoint_io.h).
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int ranks = comm != nullptr ? comm->size() : 1;
  EBB_ASSIGN_OR_RETURN(StateLayout layout, model_state_layout(model, rank, ranks));
  meta.state["layout"] = state_layout_json(layout);
  if (o.zero_stage.has_value()) meta.state["zero_stage"] = *o.zero_stage;
  // The samples a step reads: ranks x micro-batches (a resume must read as many).
  meta.state["global_micro_batches"] = ranks * o.grad_accum;
  // With ZeRO each rank writes its part, and rank 0 publishes the step once all have.
  if (o.zero_stage.has_value()) {
    return write_sharded_checkpoint(dir, meta, payloads, rank_group(comm));
  }
  return write_checkpoint(dir, meta, payloads);
}

// The latest checkpoint's step, checked before anything runs. With ZeRO and as many ranks as
// wrote it, this rank's shard is read whole and checked (as the load will); with another number
// of ranks, every shard's manifest (the load checks each file it reads).
Result<std::int64_t> latest_checkpoint_step(const TrainOptions& o, Communicator* comm) {
  if (!o.zero_stage.has_value()) {
    EBB_ASSIGN_OR_RETURN(Checkpoint c,
                         read_latest_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o)));
    return c.meta().step;
  }
  Result<ShardedCheckpoint> all =
      open_sharded_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o));
  EBB_RETURN_IF_ERROR(agree(comm, all.status()));
  if (static_cast<int>(all->shards.size()) != comm->size()) return all->step;
  EBB_ASSIGN_OR_RETURN(Checkpoint own,
                       read_latest_sharded_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o),
                                                      rank_group(comm)));
  return own.meta().step;
}

// Writes every blob of `blobs` through the optimizer, then (ZeRO) gathers the working
// parameters every rank needs. Empty buffers are skipped.
template <typename Buffer>
Status write_blobs(GptModel& model, const std::vector<Buffer>& blobs) {
  Optimizer& optimizer = model.optimizer();
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    if (blobs[i].empty()) continue;
    EBB_RETURN_IF_ERROR(optimizer.write_blob(i, std::as_bytes(std::span(blobs[i]))));
  }
  // Each rank set the working parameters of its range; every rank needs all of them.
  if (model.zero() != nullptr) EBB_RETURN_IF_ERROR(model.zero()->sync_parameters());
  return ok_status();
}

// --init-from: every rank's master weights from the weights file, the optimizer's state fresh.
Status init_from_weights(const TrainOptions& o, GptModel& model, Communicator* comm) {
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int ranks = comm != nullptr ? comm->size() : 1;
  EBB_ASSIGN_OR_RETURN(StateLayout mine, model_state_layout(model, rank, ranks));
  Result<std::vector<std::vector<float>>> masters = masters_from_weights_file(o.init_from, mine);
  EBB_RETURN_IF_ERROR(agree(comm, masters.status()));
  return write_blobs(model, *masters);
}

// With ZeRO: this rank's blobs from a sharded checkpoint, read as written when the checkpoint's
// shard of this rank holds exactly them (as many ranks, the same layout), else re-partitioned
// from the shards that overlap this rank's ranges. Returns the checkpoint's meta.
Result<CheckpointMeta> load_sharded(const TrainOptions& o, GptModel& model, Communicator& comm) {
  EBB_ASSIGN_OR_RETURN(StateLayout mine, model_state_layout(model, comm.rank(), comm.size()));
  Result<ShardedCheckpoint> all =
      open_sharded_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o));
  EBB_RETURN_IF_ERROR(agree(&comm, all.status()));
  std::uint8_t as_written = 0;
  if (static_cast<int>(all->shards.size()) == comm.size()) {
    Result<StateLayout> theirs =
        recorded_state_layout(all->shards[static_cast<std::size_t>(comm.rank())]);
    as_written = theirs.ok() && same_blobs(mine, *theirs) ? 1 : 0;
  }
  std::vector<std::uint8_t> votes(static_cast<std::size_t>(comm.size()));
  EBB_RETURN_IF_ERROR(comm.host_all_gather(&as_written, votes.data(), 1));
  std::vector<std::vector<std::byte>> blobs(mine.blobs.size());
  if (std::all_of(votes.begin(), votes.end(), [](std::uint8_t v) { return v == 1; })) {
    EBB_ASSIGN_OR_RETURN(Checkpoint ckpt,
                         read_latest_sharded_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o),
                                                        rank_group(&comm)));
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      blobs[i].resize(mine.blobs[i].bytes);
      EBB_RETURN_IF_ERROR(ckpt.read_payload(mine.blobs[i].name, blobs[i]));
    }
  } else {
    EBB_RETURN_IF_ERROR(agree(&comm, read_repartitioned(*all, mine, blobs)));
  }
  EBB_RETURN_IF_ERROR(write_blobs(model, blobs));
  return all->shards[0].meta();
}

// Loads the latest checkpoint of o.checkpoint_dir into the model (outside any iteration) and
// returns where it left off.
Result<RunPosition> load_checkpoint(const TrainOptions& o, GptModel& model, RunPosition at,
                                    Communicator* comm) {
  CheckpointMeta meta;
  if (comm != nullptr) {
    EBB_ASSIGN_OR_RETURN(meta, load_sharded(o, model, *comm));
  } else {
    EBB_ASSIGN_OR_RETURN(Checkpoint ckpt,
                         read_latest_checkpoint(o.checkpoint_dir, checkpoint_fingerprint(o)));
    // Each blob where it lives; a master also sets the working parameters (rounded).
    const std::vector<Optimizer::Blob> blobs = model.optimizer().blobs();
    std::vector<std::vector<std::byte>> bytes(blobs.size());
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      bytes[i].resize(blobs[i].bytes);
      EBB_RETURN_IF_ERROR(ckpt.read_payload(blobs[i].name, bytes[i]));
    }
    EBB_RETURN_IF_ERROR(write_blobs(model, bytes));
    meta = ckpt.meta();
  }
  const nlohmann::json& s = meta.state;
  // Rank r of N reads global sample (s*K + m)*N + r: the data position is the step's only when
  // N x K is the checkpoint's (another N resumes with --grad-accum making up the difference).
  const int global = (comm != nullptr ? comm->size() : 1) * o.grad_accum;
  if (s.value("global_micro_batches", global) != global) {
    return invalid_argument("--resume: the checkpoint's steps read " +
                            std::to_string(s.at("global_micro_batches").get<int>()) +
                            " micro-batches each (ranks x --grad-accum), this run's " +
                            std::to_string(global) +
                            ": give --grad-accum so that ranks x grad-accum is the same");
  }
  at.step = static_cast<int>(meta.step);
  at.applied_steps = s.at("applied_steps").get<int>();
  at.scaler.restore(s.at("loss_scale").get<float>(), s.at("loss_scale_growth_tracker").get<int>(),
                    s.at("skipped_steps").get<std::int64_t>());
  return at;
}

// Trains steps up to `steps` on a fresh engine of `device` with `budget_bytes` (0: the device's
// size), from a checkpoint when o.resume.
Result<TrainResult> run(const TrainOptions& o, Device& device, const TokenData& data,
                        std::size_t budget_bytes, int steps, bool write_profile_out,
                        const std::vector<StatePlacement>& placement, Communicator* comm,
                        const std::function<void(const StepStats&)>& on_step) {
  EngineOptions engine_options{.device = device,
                               .budget_bytes = budget_bytes,
                               .policy = o.policy,
                               .warmup_iterations = o.warmup_iterations,
                               .max_recompute_overhead = o.max_recompute_overhead};
  if (o.host_tier_bytes > 0) {
    engine_options.host_tier_bytes = o.host_tier_bytes;
  } else if (device.kind() == DeviceKind::kSim && o.sim_chip.has_value() &&
             o.optimizer_state != StatePolicy::kDevice) {
    // The modelled host's memory for one GPU (address space only: it holds no values), for the
    // state placed there; with the state on the device the tier stays the engine's default.
    engine_options.host_tier_bytes = o.sim_chip->host_memory_bytes_per_gpu;
  }
  engine_options.nvme_directories = o.nvme_directories;
  engine_options.nvme_tier_bytes = o.nvme_tier_bytes;
  TrainResult result;
  const bool simulated = device.kind() == DeviceKind::kSim;
  // A sim device's link is the hardware's it models; the others' is measured.
  if (simulated) engine_options.host_link_bytes_per_s = o.sim_hardware.host_to_device_bytes_per_s;
  if (o.plan_policy.has_value()) {
    if (simulated) {
      result.hardware = o.sim_hardware;
    } else {
      EBB_ASSIGN_OR_RETURN(result.hardware, measure_host_link(device));
    }
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
                       GptModel::create(*engine, o.model, o.seed, training_of(o, placement, comm)));
  EBB_ASSIGN_OR_RETURN(LossScaler scaler, LossScaler::create(o.loss_scaler));
  RunPosition at{.scaler = scaler};
  if (!o.init_from.empty()) EBB_RETURN_IF_ERROR(init_from_weights(o, *model, comm));
  if (o.resume) {
    EBB_ASSIGN_OR_RETURN(at, load_checkpoint(o, *model, at, comm));
    result.resumed_from_step = at.step;
  }
  if (!o.checkpoint_at_start.empty()) {
    EBB_RETURN_IF_ERROR(save_checkpoint(o, o.checkpoint_at_start, *model, at, comm));
  }
  result.budget_bytes = engine->allocator().stats().budget_bytes;
  const auto micro = static_cast<std::size_t>(o.grad_accum);
  std::vector<std::vector<std::int32_t>> inputs(micro);
  std::vector<std::vector<std::int32_t>> targets(micro);
  // The step times behind the medians, in arrays sized (and so touched) for every step of the
  // run before the first: host memory that grew with the steps would read as a leak
  // (tools/soak.sh).
  const auto run_steps = static_cast<std::size_t>(std::max(0, steps - at.step));
  std::vector<double> step_ms(run_steps);
  std::vector<double> steady_ms(run_steps);
  std::size_t timed_steps = 0;
  std::size_t steady_steps = 0;
  std::size_t peak_reserved = 0;  // over every step (the allocator's peak is reset after warm-up)
  const double tokens_per_step = static_cast<double>(o.model.batch) * o.model.seq * o.grad_accum;
  const float peak_lr = peak_learning_rate(o);
  const bool fp16 = o.precision == Precision::kF16;
  const int first = at.step + 1;
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int ranks = comm != nullptr ? comm->size() : 1;
  std::int64_t gathered_before = model->zero() != nullptr ? model->zero()->stats().gather_bytes : 0;
  bool steady = false;
  bool profile_written = false;
  for (int s = first; s <= steps; ++s) {
    if (o.inject_exit_step == s && rank == o.inject_exit_rank) {
      std::fprintf(stderr, "ebb train: rank %d: injected exit at step %d (testing)\n", rank, s);
      std::fflush(stderr);
      std::_Exit(3);
    }
    // Rank r of N reads global sample (s*K + m)*N + r: the same global order for every N.
    for (std::size_t k = 0; k < micro; ++k) {
      const std::int64_t global =
          static_cast<std::int64_t>(s - 1) * o.grad_accum + static_cast<std::int64_t>(k);
      data.batch(global * ranks + rank, o.model.batch, o.model.seq, inputs[k], targets[k]);
    }
    // The steady state starts after the warm-up (and the plan made at its end).
    // (The profiler extends a warm-up whose first iteration differs, as ZeRO's does: the steady
    // state starts once the profile exists.)
    if (!steady && (o.warmup_iterations == 0 || engine->profile().ok())) {
      steady = true;
      engine->allocator().reset_peak_stats();
    }
    StepControl control{.optimizer_step = at.applied_steps + 1,
                        .learning_rate = scheduled_learning_rate(s, steps, peak_lr, o.lr_warmup,
                                                                 o.lr_min.value_or(peak_lr)),
                        .loss_scale = fp16 ? at.scaler.scale() : 1.0F,
                        .clip_norm = o.clip_grad_norm,
                        .skip_nonfinite = fp16};
    const EngineStats before = engine->stats();
    const auto start = std::chrono::steady_clock::now();
    std::chrono::nanoseconds simulated_start{0};
    if (simulated) {
      EBB_ASSIGN_OR_RETURN(simulated_start, simulated_time(device));
    }
    EBB_ASSIGN_OR_RETURN(StepOutcome outcome, model->step(inputs, targets, control));
    // The sim's clock reads the work the host has waited for: wait for the whole step.
    std::chrono::nanoseconds simulated_end{0};
    if (simulated) {
      EBB_RETURN_IF_ERROR(engine->synchronize());
      EBB_ASSIGN_OR_RETURN(simulated_end, simulated_time(device));
    }
    if (ranks > 1) {
      // The job's loss: every rank's, each divided by N and added in rank order (as one
      // process adds its micro-batches' losses).
      std::vector<float> losses(static_cast<std::size_t>(ranks));
      EBB_RETURN_IF_ERROR(comm->host_all_gather(&outcome.loss, losses.data(), sizeof(float)));
      outcome.loss = 0;
      for (const float l : losses) outcome.loss += l / static_cast<float>(ranks);
    }
    const auto end = std::chrono::steady_clock::now();
    const EngineStats after = engine->stats();
    if (!outcome.skipped) ++at.applied_steps;
    if (fp16) EBB_RETURN_IF_ERROR(at.scaler.update(outcome.skipped));
    at.step = s;
    StepStats st;
    st.step = s;
    st.loss = outcome.loss;
    st.host_ms = std::chrono::duration<double, std::milli>(end - start).count();
    st.ms = simulated
                ? std::chrono::duration<double, std::milli>(simulated_end - simulated_start).count()
                : st.host_ms;
    st.tokens_per_s = st.ms > 0 ? tokens_per_step * 1000.0 / st.ms : 0;
    peak_reserved =
        std::max(peak_reserved,
                 static_cast<std::size_t>(engine->allocator().stats().all.reserved_bytes.peak));
    st.peak_reserved_bytes = peak_reserved;
    EBB_ASSIGN_OR_RETURN(st.rss_bytes, process_resident_bytes());
    st.swapped_bytes = after.swapped_out_bytes - before.swapped_out_bytes;
    st.recompute_ms = static_cast<double>(after.recompute_ns - before.recompute_ns) / 1e6;
    st.recomputed_ops = after.recomputed_ops - before.recomputed_ops;
    st.learning_rate = control.learning_rate;
    st.loss_scale = control.loss_scale;
    st.skipped = outcome.skipped;
    st.grad_norm = outcome.grad_norm;
    st.gathers = after.gathers - before.gathers;
    st.exposed_gather_ms =
        static_cast<double>(after.exposed_gather_ns - before.exposed_gather_ns) / 1e6;
    if (model->zero() != nullptr && o.zero_stage == 3) {
      const std::int64_t sent = model->zero()->stats().gather_bytes;
      st.gather_bytes = sent - gathered_before;
      gathered_before = sent;
    }
    step_ms[timed_steps++] = st.ms;
    if (steady) steady_ms[steady_steps++] = st.ms;
    if (!o.keep_steps) result.steps.clear();  // keeps its capacity: no allocation per step
    result.steps.push_back(st);
    if (on_step) on_step(st);
    if (write_profile_out && !profile_written && engine->profile().ok()) {
      profile_written = true;
      EBB_ASSIGN_OR_RETURN(Profile profile, engine->profile());
      EBB_RETURN_IF_ERROR(write_profile(profile, o.profile_out));
    }
    if (o.checkpoint_every > 0 && s % o.checkpoint_every == 0) {
      EBB_RETURN_IF_ERROR(save_checkpoint(o, o.checkpoint_dir, *model, at, comm));
      result.checkpoints_written.push_back(s);
    }
  }
  // The warm-up never agreed (or the run was shorter than it): say why there is no profile.
  if (write_profile_out && !profile_written) EBB_RETURN_IF_ERROR(engine->profile().status());
  // A delayed update's last CPU step lands before the results are read.
  EBB_RETURN_IF_ERROR(model->optimizer().flush());
  result.state_placement = placement;
  result.offload = model->optimizer().offload_stats();
  step_ms.resize(timed_steps);
  steady_ms.resize(steady_steps);
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
  result.simulated = simulated;
  if (!simulated) {
    EBB_ASSIGN_OR_RETURN(result.final_parameters, model->parameters_to_host());
  }
  result.engine = engine->stats();
  result.parameter_state_bytes = engine->memory_by_kind(TensorKind::kParameter).current;
  result.gradient_state_bytes = engine->memory_by_kind(TensorKind::kGradient).current;
  result.optimizer_state_bytes = engine->memory_by_kind(TensorKind::kOptimizerState).current;
  result.parameters = parameter_count(o.model);
  result.skipped_steps = at.scaler.skipped_steps();
  result.rank = rank;
  result.ranks = ranks;
  if (model->zero() != nullptr) result.zero = model->zero()->stats();
  if (comm != nullptr) result.comm = comm->stats();
  if (model->zero() != nullptr && o.zero_stage == 3) {
    result.gather_comm = model->zero()->options().gather_comm->stats();
    result.predicted_gathers = model->zero()->predicted_gathers();
  }
  result.peak_parameter_bytes = engine->memory_by_kind(TensorKind::kParameter).peak;
  result.peak_gradient_bytes = engine->memory_by_kind(TensorKind::kGradient).peak;
  result.peak_optimizer_state_bytes = engine->memory_by_kind(TensorKind::kOptimizerState).peak;
  result.peak_workspace_bytes = engine->memory_by_kind(TensorKind::kWorkspace).peak;
  result.peak_activation_bytes = engine->memory_by_kind(TensorKind::kActivation).peak;
  result.peak_op_gradient_bytes = engine->op_gradient_memory().peak;
  return result;
}

// Two steps of the same model on a fresh engine of `device`, nothing evicted and every slice's
// state on the device (empty placement): the unconstrained peak that a budget's percentage and
// auto placement start from.
Result<TrainResult> unconstrained_run(const TrainOptions& o, Device& device, const TokenData& data,
                                      Communicator* comm) {
  TrainOptions probe = o;
  probe.policy = EvictionPolicy::kNone;
  probe.plan_policy.reset();
  probe.resume = false;
  probe.checkpoint_every = 0;
  probe.init_from.clear();
  probe.checkpoint_at_start.clear();
  probe.optimizer_state = StatePolicy::kDevice;
  probe.delayed_update = false;
  probe.inject_exit_step = 0;
  return run(probe, device, data, 0, std::min(2, o.steps), false, {}, comm, {});
}

// Where each slice's state lives for this run, and with auto the planner's choice.
struct PlacementChoice {
  std::vector<StatePlacement> slices;  // in the ModelState's slice order
  std::optional<StatePlacementPlan> plan;
};

// Per slice of the model's layout (the ModelState's order): the device bytes its master weights
// and optimizer state take when kept, and what a host step moves over the link.
// With ZeRO (stage >= 1) a rank keeps 1/N of each slice's state (and at stage 2 of its
// gradients).
Result<std::vector<StateSliceCost>> slice_costs(const TrainOptions& o, int ranks) {
  const std::vector<ParameterDecl> decls = parameter_decls(o.model);
  EBB_ASSIGN_OR_RETURN(FlatLayout layout, make_flat_layout(decls, {.ranks = ranks}));
  const int stage = o.zero_stage.value_or(0);
  const std::size_t state_share = stage >= 1 ? static_cast<std::size_t>(ranks) : 1;
  const std::size_t grad_share = stage >= 2 ? static_cast<std::size_t>(ranks) : 1;
  const std::size_t master = has_master_weights(o.precision) ? sizeof(float) : 0;
  const std::size_t param = dtype_bytes(precision_dtype(o.precision));
  const std::size_t grad = dtype_bytes(o.grad_dtype.value_or(precision_dtype(o.precision)));
  std::vector<StateSliceCost> costs;
  for (const FlatGroup& g : layout.groups) {
    for (std::size_t k = 0; k < g.slices.size(); ++k) {
      const FlatSlice& slice = g.slices[k];
      const SliceStateFloats floats = slice_state_floats(o.optimizer, decls, slice);
      const auto numel = static_cast<std::size_t>(slice.numel());
      costs.push_back(
          {.name = slice_name(g.group, k),
           .state_bytes =
               (numel * master + static_cast<std::size_t>(floats.a + floats.b) * sizeof(float)) /
               state_share,
           .gradient_bytes = numel * grad / grad_share,
           .parameter_bytes = numel * param / state_share});
    }
  }
  return costs;
}

// On a sim device with a chip: the rates plan_state_placement weighs, from the cost model (AdamW's
// traffic over 16 Mi elements): the host link, the device step (kernel_time of adamw_work), the
// CPU step (host_step_time), and NVMe each way (the node's over its GPUs).
Status set_modelled_state_rates(const TrainOptions& o, StatePlacementInputs& in) {
  if (!o.sim_chip.has_value()) {
    return failed_precondition("--optimizer-state auto on a sim device without a chip to time");
  }
  const ChipSpec& chip = *o.sim_chip;
  constexpr std::int64_t kElements = std::int64_t{1} << 24;
  const DType param = precision_dtype(o.precision);
  const DType grad = o.grad_dtype.value_or(param);
  const double state_bytes = static_cast<double>(kElements) * 3 * sizeof(float);
  const auto seconds = [](std::chrono::nanoseconds t) {
    return std::chrono::duration<double>(t).count();
  };
  in.link_bytes_per_s = std::min(chip.host_to_device_bytes_per_s, chip.device_to_host_bytes_per_s);
  in.device_state_bytes_per_s =
      state_bytes / seconds(kernel_time(chip, adamw_work(kElements, param, grad)));
  const auto elements = static_cast<std::size_t>(kElements);
  const HostStepWork host{.host_slice_bytes = host_step_traffic_bytes(
                              elements, 3 * elements, dtype_bytes(param), dtype_bytes(grad))};
  in.cpu_state_bytes_per_s = state_bytes / seconds(host_step_time(chip, host));
  in.nvme_read_bytes_per_s = chip.nvme_bytes_per_s_per_node / chip.gpus_per_node;
  in.nvme_write_bytes_per_s = in.nvme_read_bytes_per_s;
  return ok_status();
}

Result<PlacementChoice> choose_placement(const TrainOptions& o, Device& device,
                                         const TokenData& data, std::size_t budget,
                                         Communicator* comm) {
  EBB_ASSIGN_OR_RETURN(std::vector<StateSliceCost> costs,
                       slice_costs(o, comm != nullptr ? comm->size() : 1));
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
  EBB_ASSIGN_OR_RETURN(TrainResult unconstrained, unconstrained_run(o, device, data, comm));
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
  if (device.kind() == DeviceKind::kSim) {
    // The modelled chip's figures (check_simulable asked for one), from the same cost model
    // that times the steps.
    EBB_RETURN_IF_ERROR(set_modelled_state_rates(o, in));
  } else {
    EBB_ASSIGN_OR_RETURN(HardwareModel link, measure_host_link(device));
    in.link_bytes_per_s =
        std::min(link.host_to_device_bytes_per_s, link.device_to_host_bytes_per_s);
    EBB_ASSIGN_OR_RETURN(in.device_state_bytes_per_s, measure_device_optimizer_bytes_per_s(device));
    in.cpu_state_bytes_per_s = measure_host_optimizer_bytes_per_s();
    // NVMe is not measured here, so auto places no slice there (--optimizer-state nvme does).
  }
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

double model_state_bytes_per_parameter(const TrainOptions& o, int ranks) {
  const int stage = o.zero_stage.value_or(0);
  const double n = static_cast<double>(std::max(ranks, 1));
  const double work =
      static_cast<double>(dtype_bytes(precision_dtype(o.precision))) / (stage >= 3 ? n : 1.0);
  const double grad =
      static_cast<double>(dtype_bytes(o.grad_dtype.value_or(precision_dtype(o.precision)))) /
      (stage >= 2 ? n : 1.0);
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
  return work + grad + (master + optimizer) / (stage >= 1 ? n : 1.0);
}

std::size_t minimum_budget_bytes(const TrainOptions& o, int ranks) {
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
                                              model_state_bytes_per_parameter(o, ranks));
  return working + (can_swap ? 0 : state);
}

std::string checkpoint_fingerprint(const TrainOptions& o) {
  const GptConfig& c = o.model;
  std::string f = "gpt layers=" + std::to_string(c.layers) +
                  " d_model=" + std::to_string(c.d_model) + " heads=" + std::to_string(c.heads) +
                  " seq=" + std::to_string(c.seq) + " batch=" + std::to_string(c.batch) +
                  " vocab=" + std::to_string(c.vocab) +
                  " precision=" + std::string(precision_name(o.precision)) + " grad_dtype=" +
                  std::string(dtype_name(o.grad_dtype.value_or(precision_dtype(o.precision)))) +
                  " optimizer=" + std::string(optimizer_name(o.optimizer.kind));
  if (o.optimizer.kind == OptimizerKind::kAdafactor) {
    f += o.optimizer.adafactor_beta1 > 0 ? " first_moment" : " no_first_moment";
  }
  if (o.optimizer.kind == OptimizerKind::kSm3) {
    f += o.optimizer.momentum > 0 ? " momentum" : " no_momentum";
  }
  // ZeRO writes a sharded checkpoint (one shard per rank), which any stage and any number of
  // ranks read (re-partitioned when the ranks' blobs differ: checkpoint_io.h).
  if (o.zero_stage.has_value()) f += " zero";
  return f;
}

Result<Communicator*> process_communicator(DeviceKind device, std::chrono::milliseconds timeout,
                                           bool gather, int sim_ranks) {
  // MPI starts once per process, and NCCL's communicator is tied to its GPU: one per kind, kept.
  // On sim, one rank stands for sim_ranks (kernels/comm/sim_communicator.h): one per count.
  struct Held {
    std::unique_ptr<Device> device;
    std::unique_ptr<Communicator> comm;
    std::unique_ptr<Communicator> gather;
  };
  // Never destroyed: MPI is finalized at exit by its plugin, which must come last.
  static auto& held = *new std::map<std::pair<DeviceKind, int>, Held>();
  const bool sim = device == DeviceKind::kSim;
  CommOptions options;
  options.timeout = timeout;
  if (sim) {
    options.backend = CommBackend::kSim;
    options.sim_ranks = sim_ranks;
  }
  const std::pair<DeviceKind, int> key{device, sim ? sim_ranks : 1};
  auto it = held.find(key);
  if (it == held.end()) {
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Device> d, make_device(device, 0));
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, make_communicator(*d, options));
    it = held.emplace(key, Held{std::move(d), std::move(comm), nullptr}).first;
  }
  if (!gather) return it->second.comm.get();
  if (it->second.gather == nullptr) {
    EBB_ASSIGN_OR_RETURN(it->second.gather, make_communicator(*it->second.device, options));
  }
  return it->second.gather.get();
}

namespace {

// Each rank's status, shared: every rank returns the first failing rank's code and every failing
// rank's message, prefixed by its rank; OK when all are.
Status agree(Communicator* comm, const Status& local) {
  if (comm == nullptr || comm->size() == 1) return local;
  struct Vote {
    std::int32_t code = 0;
    char message[1020] = {};
  };
  Vote mine;
  mine.code = static_cast<std::int32_t>(local.code());
  const std::string text = local.message().substr(0, sizeof mine.message - 1);
  std::memcpy(mine.message, text.data(), text.size());
  std::vector<Vote> all(static_cast<std::size_t>(comm->size()));
  EBB_RETURN_IF_ERROR(comm->host_all_gather(&mine, all.data(), sizeof mine));
  std::optional<StatusCode> code;
  std::string message;
  for (int r = 0; r < comm->size(); ++r) {
    const Vote& v = all[static_cast<std::size_t>(r)];
    if (v.code == 0) continue;
    if (!code.has_value()) code = static_cast<StatusCode>(v.code);
    message += (message.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + ": " +
               std::string(v.message);
  }
  return code.has_value() ? Status(*code, message) : ok_status();
}

// Every rank compares a hash of its configuration with rank 0's before any step: flags that
// differ across ranks would make them run different collectives, or train different models.
Status check_same_configuration(const TrainOptions& o, Communicator& comm) {
  std::string c = checkpoint_fingerprint(o) + " stage=" + std::to_string(o.zero_stage.value_or(-1));
  c += " steps=" + std::to_string(o.steps) + " seed=" + std::to_string(o.seed) +
       " lr=" + std::to_string(o.optimizer.learning_rate) +
       " wd=" + std::to_string(o.optimizer.weight_decay) +
       " clip=" + std::to_string(o.clip_grad_norm) + " warmup=" + std::to_string(o.lr_warmup) +
       " lr_min=" + (o.lr_min.has_value() ? std::to_string(*o.lr_min) : "none") +
       " budget=" + std::to_string(o.budget_bytes) + "/" + std::to_string(o.budget_fraction) +
       " policy=" + std::string(eviction_policy_name(o.policy)) + " plan=" +
       (o.plan_policy.has_value() ? std::to_string(static_cast<int>(*o.plan_policy)) : "none") +
       " state=" + std::to_string(static_cast<int>(o.optimizer_state)) +
       " delayed=" + std::to_string(static_cast<int>(o.delayed_update)) +
       " bucket=" + std::to_string(o.zero_bucket_bytes) + " data=" + o.data_path +
       " device=" + std::to_string(static_cast<int>(o.device)) +
       " checkpoint_every=" + std::to_string(o.checkpoint_every) +
       " resume=" + std::to_string(static_cast<int>(o.resume)) + " init_from=" + o.init_from +
       " checkpoint_at_start=" + o.checkpoint_at_start +
       " warmup_iterations=" + std::to_string(o.warmup_iterations);
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char ch : c) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
  std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
  EBB_RETURN_IF_ERROR(comm.host_all_gather(&h, all.data(), sizeof h));
  std::string differ;
  for (int r = 1; r < comm.size(); ++r) {
    if (all[static_cast<std::size_t>(r)] != all[0]) {
      differ += (differ.empty() ? "" : ", ") + std::to_string(r);
    }
  }
  if (!differ.empty()) {
    return invalid_argument("--zero: the configuration of rank(s) " + differ +
                            " differs from rank 0's (every rank must run the same flags)");
  }
  return ok_status();
}

}  // namespace

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
  if (o.resume && !o.init_from.empty()) {
    return invalid_argument(
        "--init-from starts a fresh run from a weights file; --resume continues a checkpointed "
        "one: give one of them");
  }
  if ((o.checkpoint_every > 0 || o.resume) && o.checkpoint_dir.empty()) {
    return invalid_argument("--checkpoint-every and --resume need --checkpoint-dir");
  }
  if (o.optimizer_state == StatePolicy::kNvme && o.nvme_directories.empty() &&
      o.device != DeviceKind::kSim) {
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
  if (o.zero_stage.has_value() && (*o.zero_stage < 0 || *o.zero_stage > 3)) {
    return invalid_argument("--zero " + std::to_string(*o.zero_stage) +
                            ": the stage must be 0, 1, 2 or 3");
  }
  if (!o.zero_stage.has_value() && o.inject_exit_step > 0) {
    return invalid_argument("--inject-exit-step is for testing ZeRO ranks: give --zero");
  }
  if (o.optimizer_state == StatePolicy::kAuto && o.budget_bytes == 0 && o.budget_fraction == 0) {
    return invalid_argument(
        "--optimizer-state auto places the state to fit a budget: give --budget (or choose "
        "device, host or nvme)");
  }
  EBB_RETURN_IF_ERROR(LossScaler::create(o.loss_scaler).status());
  if (o.device == DeviceKind::kSim) EBB_RETURN_IF_ERROR(check_simulable(o));
  if (o.device != DeviceKind::kSim && o.sim_ranks != 1) {
    return invalid_argument("--gpus " + std::to_string(o.sim_ranks) +
                            " is for --device sim; real ranks come from mpirun");
  }
  Communicator* comm = nullptr;
  if (o.zero_stage.has_value()) {
    EBB_ASSIGN_OR_RETURN(comm, process_communicator(o.device, o.comm_timeout, false, o.sim_ranks));
    EBB_RETURN_IF_ERROR(check_same_configuration(o, *comm));
    // On sim with a chip, the collectives take the ring's time over its links (cost_model.h).
    const LinkModel link = o.device == DeviceKind::kSim && o.sim_chip.has_value()
                               ? collective_link_model(*o.sim_chip, comm->size())
                               : o.comm_link;
    comm->set_link_model(link);
    if (*o.zero_stage == 3) {
      EBB_ASSIGN_OR_RETURN(Communicator * gather,
                           process_communicator(o.device, o.comm_timeout, true, o.sim_ranks));
      gather->set_link_model(link);
    }
    if (comm->size() == 1 && o.device != DeviceKind::kSim) {
      std::fprintf(stderr,
                   "ebb train: warning: --zero %d with one rank partitions nothing (run under "
                   "mpirun -np N); going on\n",
                   *o.zero_stage);
    }
  }
  // What depends on this rank's machine (its checkpoint directory, the data file), checked on
  // every rank and agreed, so that no rank waits for one that has already failed.
  Result<TokenData> loaded = load_data(o);
  Status local = loaded.status();
  if (local.ok() && o.checkpoint_every > 0) {
    if (comm == nullptr) {
      local = check_checkpoint_dir(o.checkpoint_dir);
    } else {
      // Each rank writes its shard into DIR/rank-R (engine/schema/sharded_checkpoint.h).
      std::error_code ignored;
      std::filesystem::create_directories(o.checkpoint_dir, ignored);
      local = check_checkpoint_dir(o.checkpoint_dir + "/rank-" + std::to_string(comm->rank()));
    }
  }
  if (local.ok() && comm != nullptr && parameter_count(o.model) < comm->size()) {
    local = invalid_argument(
        "--zero over " + std::to_string(comm->size()) + " ranks: the model has only " +
        std::to_string(parameter_count(o.model)) + " parameter elements, fewer than the ranks");
  }
  EBB_RETURN_IF_ERROR(agree(comm, local));
  const TokenData& data = *loaded;
  if (o.resume) {
    // The latest checkpoint must exist and be this model's before anything runs (with ZeRO,
    // every rank's shard, agreed by the ranks).
    Result<std::int64_t> latest = latest_checkpoint_step(o, comm);
    if (!latest.ok()) {
      return Status(latest.status().code(),
                    "--resume: " + latest.status().message() +
                        (latest.status().code() == StatusCode::kNotFound
                             ? " (no checkpoint to resume from in " + o.checkpoint_dir + ")"
                             : std::string()));
    }
    if (*latest >= o.steps) {
      return invalid_argument("--resume: the latest checkpoint is at step " +
                              std::to_string(*latest) + ", not before --steps " +
                              std::to_string(o.steps) +
                              " (steps count from the run's start, not from the checkpoint)");
    }
  }
  Result<std::unique_ptr<Device>> made = o.device == DeviceKind::kSim
                                             ? make_sim_device(sim_memory_bytes(o), o.sim_hardware)
                                             : make_device(o.device, o.link_gbps);
  EBB_RETURN_IF_ERROR(agree(comm, made.status()));
  std::unique_ptr<Device> device = std::move(made).value();
  std::size_t budget = o.budget_bytes;
  if (budget == 0 && o.budget_fraction > 0) {
    // The unconstrained peak, from a short run of the same model on a fresh engine.
    EBB_ASSIGN_OR_RETURN(TrainResult unconstrained, unconstrained_run(o, *device, data, comm));
    budget = static_cast<std::size_t>(static_cast<double>(unconstrained.peak_reserved_bytes) *
                                      o.budget_fraction);
  }
  if (budget > 0) {
    const std::size_t floor = minimum_budget_bytes(o, comm != nullptr ? comm->size() : 1);
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
  EBB_ASSIGN_OR_RETURN(PlacementChoice placement, choose_placement(o, *device, data, budget, comm));
  EBB_ASSIGN_OR_RETURN(TrainResult result,
                       run(o, *device, data, budget, o.steps, !o.profile_out.empty(),
                           placement.slices, comm, on_step));
  if (placement.plan.has_value() && result.plan.has_value()) {
    result.plan->state_placement = state_decisions(*placement.plan);
  }
  result.state_plan = std::move(placement.plan);
  return result;
}

}  // namespace ebb::train
