// Trainer: runs GptModel for a number of steps on one device under a budget and eviction policy,
// measuring what users judge ebb by: the loss curve, the memory peaks (model state by kind), the
// time per step, and what the engine did (bytes swapped, ops recomputed). It owns the training
// schedule around the model: precision and loss scaling, gradient accumulation over
// micro-batches, clipping, the learning-rate schedule, and checkpoints (engine/schema/
// checkpoint.h) that a run resumes from bit for bit. `ebb train` and `ebb demo` are thin front
// ends over it; the tests drive it directly.
//
// Thread safety: not thread-safe; one call at a time per Trainer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "engine/planner/planner.h"
#include "engine/planner/state_placement.h"
#include "engine/schema/chip_spec.h"
#include "engine/schema/hardware_model.h"
#include "kernels/nn.h"
#include "tools/train/gpt_config.h"
#include "tools/train/gpt_model.h"

namespace ebb::train {

struct TrainOptions {
  GptConfig model;
  int steps = 20;
  // Every step's StepStats in TrainResult::steps; false: the last step's only, for a caller
  // that takes them from on_step as they come (ebb train), so that a long run's host memory
  // does not grow with its steps.
  bool keep_steps = true;
  // What the model trains in, and how it is updated.
  Precision precision = Precision::kF32;
  std::optional<DType> grad_dtype;  // the gradient buffers' dtype; default the precision's
  // The optimizer; learning_rate 0: the optimizer's default (engine/optim/optimizer.h), which
  // is the schedule's peak.
  OptimizerConfig optimizer;
  int grad_accum = 1;             // micro-batches per optimizer step (each of `model.batch`)
  float clip_grad_norm = 0;       // clip the global gradient norm to this; 0: off
  int lr_warmup = 0;              // linear warm-up steps
  std::optional<float> lr_min;    // the cosine decay's floor; none: no decay (a constant rate)
  LossScalerOptions loss_scaler;  // fp16 only
  // Checkpoints: every `checkpoint_every` steps into `checkpoint_dir` (0: never); `resume`
  // continues from the latest one there (steps count from the run's step 0 either way).
  // With ZeRO the checkpoint may come from another number of ranks or another stage: it is
  // re-partitioned on load.
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  bool resume = false;
  // Before the first step, also write the state the run starts from (initialized, --init-from or
  // resumed) as a checkpoint of its start step into this directory, sharded for this run's ranks
  // with ZeRO (--checkpoint-at-start: re-sharding a checkpoint for another number of ranks, and
  // how the tests see the state a run starts from). Empty: no.
  std::string checkpoint_at_start;
  // A fresh run (step 0, fresh optimizer state) from the weights of a weights file
  // (engine/schema/weights_file.h, `ebb checkpoint export`); empty: the seed's initialization.
  std::string init_from;
  std::uint64_t seed = 1337;
  std::string data_path;  // empty: synthetic tokens
  DeviceKind device = DeviceKind::kCpu;
  // --device sim (kernels/sim): the device's memory, the hardware whose host link its copies
  // take (--hw), and the chip whose roofline (engine/planner/cost_model.h) times each kernel from
  // its work (op_work.h); without a chip, kernels take no simulated time. The model's kernels
  // are accounted, never run: no values exist, so the loss is NaN, and what reads or writes
  // values (checkpoints, --init-from, clipping, fp16, off-device optimizer state, NVMe, ZeRO) is
  // refused. Step times are the sim's virtual time.
  std::size_t device_memory_bytes = 0;
  HardwareModel sim_hardware;
  std::optional<ChipSpec> sim_chip;
  // With --zero on sim: the data-parallel ranks (GPUs) one simulated rank stands for (ZeRO's
  // ranks are symmetric), its collectives costed over the chip's links.
  int sim_ranks = 1;
  // Device budget: budget_bytes when non-zero, else budget_fraction of the unconstrained peak
  // (measured by a two-step probe run on a fresh engine) when non-zero, else unconstrained.
  std::size_t budget_bytes = 0;
  double budget_fraction = 0;
  EvictionPolicy policy = EvictionPolicy::kNone;
  // A planner (keep, recompute-all, sqrt, swap-all, plan): when the warm-up's profile is
  // complete the engine plans with it, checks the plan on the sim device, and follows it in
  // every later step; `policy` stays the dynamic eviction that covers what the plan does not (a
  // divergent step, a late prefetch). nullopt: dynamic eviction alone.
  std::optional<PlanPolicy> plan_policy;
  // The cpu device's modelled host link, GB/s each way (0: as fast as memcpy). The planner's
  // hardware model is measured on the device at start-up (engine/planner/hardware_probe.h) either
  // way.
  double link_gbps = 0;
  std::string profile_out;  // where to write the warm-up profile (JSON); empty: not written
  int warmup_iterations = 2;
  // The engine's thrash limit (EngineOptions::max_recompute_overhead): a replay that would take a
  // step's recompute time past this multiple of its compute fails the step; 0: no limit.
  double max_recompute_overhead = 0;
  std::size_t host_tier_bytes = 0;  // pinned host tier for swapped tensors; 0: the engine's default
  // NVMe tier below the host tier (EngineOptions::nvme_directories); empty: none.
  std::vector<std::string> nvme_directories;
  std::size_t nvme_tier_bytes = kGiB;  // reserved on disk up front
  // Where master weights and optimizer state live (--optimizer-state): on the device, the host
  // (a CPU step), NVMe (streamed through the CPU step; needs nvme_directories), or per slice as
  // plan_state_placement chooses for the budget (auto; needs a budget).
  StatePolicy optimizer_state = StatePolicy::kDevice;
  bool delayed_update = false;       // --delayed-update (off-device slices; changes the results)
  std::size_t nvme_chunk_bytes = 0;  // the NVMe stream's chunk; 0: the tier's default
  // ZeRO data parallelism (--zero; engine/zero/): the stage, or nullopt for one process without
  // it. The ranks come from the launcher (mpirun); rank r of N reads global sample
  // (s*K + m)*N + r at step s, micro-batch m, so the global order does not depend on N. With a
  // stage >= 1, --optimizer-state places each rank's range of the state.
  std::optional<int> zero_stage;
  std::size_t zero_bucket_bytes = ZeroOptions{}.bucket_bytes;  // --bucket-mb
  // How long a collective waits for its peers before the job is ended (--comm-timeout).
  std::chrono::milliseconds comm_timeout{std::chrono::seconds(120)};
  // A modelled link for the cpu ranks' collectives (--comm-gbps, --comm-latency-us;
  // Communicator::set_link_model): none by default.
  LinkModel comm_link{};
  // Stage 3: how parameter gathers are scheduled (--gather-schedule; ZeroOptions::gather_policy).
  GatherPolicy gather_policy = GatherPolicy::kPlan;
  // Testing a dying rank: rank `inject_exit_rank` exits with status 3, telling no one, when step
  // `inject_exit_step` begins (0: never).
  int inject_exit_step = 0;
  int inject_exit_rank = 0;
};

// One step's measurements.
struct StepStats {
  int step = 0;  // from 1
  float loss = 0;
  double ms = 0;       // wall time of the step; on sim, its simulated time
  double host_ms = 0;  // wall time the host took for the step (on sim, to simulate it)
  double tokens_per_s = 0;
  std::size_t peak_reserved_bytes = 0;  // allocator's reserved peak so far
  std::size_t rss_bytes = 0;            // the process's resident host memory after the step
  std::int64_t swapped_bytes = 0;       // device->host bytes swapped out by this step
  double recompute_ms = 0;              // estimated device time of this step's recomputes
  std::int64_t recomputed_ops = 0;
  float learning_rate = 0;  // the schedule's rate of this step
  float loss_scale = 1;     // fp16's scale during this step (1 otherwise)
  bool skipped = false;     // the gradients overflowed: no update (fp16)
  float grad_norm = -1;     // the global gradient norm, when computed (clipping, fp16)
  // ZeRO stage 3: this step's parameter gathers (bytes this rank sent for them) and the time
  // ops waited for them past when they asked (Pager's exposed gather time).
  std::int64_t gather_bytes = 0;
  std::int64_t gathers = 0;
  double exposed_gather_ms = 0;
};

struct TrainResult {
  std::vector<StepStats> steps;  // every step's, or the last step's when !keep_steps
  std::size_t budget_bytes = 0;  // the budget the run used (the device's size if none)
  std::size_t peak_reserved_bytes = 0;
  std::size_t peak_live_bytes = 0;  // the allocator's allocated-bytes peak
  double ms_per_step_median = 0;
  double tokens_per_s = 0;              // from the median step time
  std::vector<float> final_parameters;  // every parameter after the last step (none on sim)
  bool simulated = false;               // a sim device: times are simulated, losses NaN
  EngineStats engine;
  // After the warm-up: the steps that follow the plan (or dynamic eviction alone).
  std::size_t steady_peak_reserved_bytes = 0;  // allocator's reserved peak over those steps
  double steady_ms_median = 0;                 // their median wall time
  // With a planner: what the plan predicted (sim device) and what the executor did.
  std::optional<Plan> plan;
  ExecutorStats executor;
  HardwareModel hardware;  // the model the planner used
  // Model state on the device at the end (the allocator's bytes by tensor kind): parameters in
  // the working dtype, gradient buffers, optimizer state (master weights included), and the
  // parameter count they hold.
  std::int64_t parameter_state_bytes = 0;
  std::int64_t gradient_state_bytes = 0;
  std::int64_t optimizer_state_bytes = 0;
  std::int64_t parameters = 0;
  std::int64_t skipped_steps = 0;        // fp16 steps skipped for overflow, this run and before
  int resumed_from_step = 0;             // the checkpoint's step, 0 when not resumed
  std::vector<int> checkpoints_written;  // steps
  // Where each slice's state lived, and with auto the planner's choice and its inputs.
  std::vector<StatePlacement> state_placement;
  std::optional<StatePlacementPlan> state_plan;
  OffloadStats offload;  // what the off-device step did
  // ZeRO: this process's rank, the job's ranks, what the collectives sent, and the steady
  // state's peak device bytes per kind (the allocator's, after the warm-up).
  int rank = 0;
  int ranks = 1;
  ZeroStats zero;
  CommStats comm;
  CommStats gather_comm;  // stage 3: the gathers' communicator
  // Stage 3: the gather schedule's simulated step (when planned) and which schedule.
  std::optional<GatherTimeline> predicted_gathers;
  std::string gather_schedule;
  std::int64_t peak_parameter_bytes = 0;
  std::int64_t peak_gradient_bytes = 0;
  std::int64_t peak_optimizer_state_bytes = 0;
  std::int64_t peak_workspace_bytes = 0;
  std::int64_t peak_activation_bytes = 0;   // activations ops output and keep (kActivation)
  std::int64_t peak_op_gradient_bytes = 0;  // gradients ops output (Engine::op_gradient_memory)
};

// Validates the options up front (model shape, data file, budget against the largest op's
// working set) so that bad input fails before any training; then trains. `on_step` (optional)
// sees each step as it completes.
Result<TrainResult> train(const TrainOptions& options,
                          const std::function<void(const StepStats&)>& on_step = {});

// The bytes a step cannot do without at once: its largest op's inputs and outputs, plus, when
// the policy cannot swap, the whole model state (parameters, gradients, master weights and
// optimizer state have no producer to recompute them from). A budget below this cannot work
// whatever the engine evicts.
std::size_t minimum_budget_bytes(const TrainOptions& options, int ranks = 1);

// Device bytes of model state per parameter for these options, by the formula (with the
// master weights and optimizer state counted only when they are on the device: kDevice) (alignment
// and padding aside): parameters and gradients in their dtypes, fp32 master weights in 16-bit
// precisions, and the optimizer's state (AdamW's two moments; Adafactor's and SM3's factored
// statistics, about 0 per element of a matrix, plus a momentum or first moment when on).
double model_state_bytes_per_parameter(const TrainOptions& options, int ranks = 1);

// The model's fingerprint for checkpoints: everything a checkpoint's bytes depend on (shape,
// batch, precision, gradient dtype, optimizer and its state-shaping options, and
// whether it is sharded: ZeRO). Not the stage nor the number of ranks: a ZeRO checkpoint resumes
// under any stage and any number of ranks (tools/train/checkpoint_io.h re-partitions it), with
// --grad-accum such that ranks x micro-batches per step stays the checkpoint's.
std::string checkpoint_fingerprint(const TrainOptions& options);

// The communicator of this process for ZeRO on `device` (made once, kept for the process: MPI
// starts once per process). kUnavailable naming what is missing.
// `gather`: the second one, which ZeRO stage 3's parameter gathers run on (ZeroOptions::
// gather_comm); made on first request, by every rank at once (it is a collective).
// On sim: the sim backend, rank 0 of `sim_ranks` standing for every rank.
Result<Communicator*> process_communicator(DeviceKind device, std::chrono::milliseconds timeout,
                                           bool gather = false, int sim_ranks = 1);

// Bitwise equality, the comparison ebb's promise is about (unlike ==, it tells -0 from 0 and a
// NaN equals itself).
bool same_bits(float a, float b);
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);
// Whether two runs took as many steps with bitwise equal losses.
bool same_losses(const TrainResult& a, const TrainResult& b);

// FNV-1a of the bytes of `values`: a short fingerprint of a parameter set.
std::uint64_t fingerprint(const std::vector<float>& values);

}  // namespace ebb::train
