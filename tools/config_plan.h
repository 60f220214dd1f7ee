// config_plan: will a model train on N of a chip, with which ZeRO stage, policy and micro-batch,
// and how fast (issue 18). A configuration is answered by running the reference trainer's real
// engine, allocator, planner and ZeRO logic on a sim device of the chip (tools/train/trainer.h,
// --device sim): its kernels timed by the chip's roofline (engine/planner/cost_model.h), its
// collectives by the ring formulas over the chip's links, one simulated rank standing for all N
// (ZeRO's ranks are symmetric). Data parallelism only: tensor and pipeline parallelism are not
// modelled.
//
// A configuration that does not fit is an answer (fits = false, with the engine's reason), not
// an error; search_configurations then says what would fit.
//
// Thread safety: not thread-safe (the trainer keeps one communicator per rank count for the
// process).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/optim/precision.h"
#include "engine/schema/chip_spec.h"
#include "engine/schema/hardware_model.h"
#include "kernels/status.h"
#include "tools/train/trainer.h"

namespace ebb::cli {

// One configuration to answer.
struct ConfigQuery {
  train::GptConfig model;  // the shape; model.batch is the micro-batch per GPU
  int gpus = 1;
  std::optional<int> zero_stage;  // nullopt: no ZeRO (one GPU); with gpus > 1, stage 0 at least
  int grad_accum = 1;             // micro-batches per GPU per step
  Precision precision = Precision::kBF16;
  std::string policy = "plan";   // keep, plan, recompute-all, sqrt, swap-all
  std::size_t budget_bytes = 0;  // 0: the chip's memory
  int steps = 4;                 // simulated steps (2 warm-up, then the policy's)
  // Where master weights and optimizer state live (--optimizer-state): on the device, the host,
  // NVMe, or where plan_state_placement puts each slice for the budget (auto). Off the device,
  // the CPU step is timed on the chip's host (engine/planner/cost_model.h, host_step_time).
  StatePolicy optimizer_state = StatePolicy::kDevice;
  std::size_t host_memory_bytes = 0;  // per GPU, the host tier's capacity; 0: the chip's default
  double nvme_bytes_per_s = 0;        // per node; 0: the chip's default
};

// The trainer's options that simulate `q` on `chip` (what plan_configuration runs).
train::TrainOptions train_options_of(const ConfigQuery& q, const ChipSpec& chip,
                                     const HardwareModel& hardware);

// The global batch in sequences: gpus x micro-batch x grad_accum.
long long global_batch(const ConfigQuery& q);

// What the configuration costs on the chip, per GPU.
struct ConfigAnswer {
  ConfigQuery query;
  bool fits = false;
  std::string why_not;  // the engine's or planner's reason, when it does not fit
  // Peak device bytes per GPU by part (each part's own peak over the steady steps; the parts
  // need not peak together), the peak reserved and live, and reserved minus live.
  std::size_t budget_bytes = 0;
  std::int64_t parameter_bytes = 0;
  std::int64_t gradient_bytes = 0;         // gradient buffers and the gradients ops output
  std::int64_t optimizer_state_bytes = 0;  // master weights and moments
  std::int64_t activation_bytes = 0;
  std::int64_t communication_bytes = 0;  // ZeRO's collective and gather buffers
  // Off the device, per GPU: master weights and optimizer state on the host (with the gradient
  // and parameter staging) and on NVMe; and the slices each holds.
  std::size_t host_state_bytes = 0;
  std::size_t nvme_state_bytes = 0;
  int device_state_slices = 0;
  int host_state_slices = 0;
  int nvme_state_slices = 0;
  std::size_t peak_reserved_bytes = 0;
  std::size_t peak_live_bytes = 0;
  std::size_t fragmentation_bytes = 0;  // peak reserved - peak live
  // The plan: whether one was followed (else dynamic eviction ran the steps, and why no plan
  // was), the tensors it keeps off the device by swap or recompute, and ZeRO-3's gathers.
  bool planned = false;
  std::string plan_refused;
  std::size_t swapped_tensors = 0;
  std::size_t recomputed_tensors = 0;
  std::int64_t gathers_per_step = 0;
  // The step: its simulated time, and its parts.
  double step_ms = 0;
  // The ops' own time (split_step_parts; until then the step less its replays).
  double compute_ms = 0;
  double recompute_ms = 0;                  // replays
  double exposed_transfer_and_comm_ms = 0;  // the rest: copies and collectives not hidden
  double exposed_gather_ms = 0;             // of which ZeRO stage 3's gathers
  // The same split in two (split_step_parts): the collectives' links alone, and the rest
  // (copies over the host link, NVMe).
  double exposed_communication_ms = 0;
  double exposed_transfer_ms = 0;
  double host_step_ms = 0;           // the optimizer's CPU step for the state off the device
  double tokens_per_s = 0;           // all GPUs
  double model_flops_per_token = 0;  // 6Ψ + 12·L·h·s (tools/train/model_flops.h)
  double mfu = 0;                    // per GPU, against the chip's dense bf16/fp32 peak
};

// Runs one configuration on the sim device. Errors only for bad input (a zero stage without
// ZeRO's ranks, a shape the trainer refuses); a configuration that does not fit is fits=false.
Result<ConfigAnswer> plan_configuration(const ConfigQuery& query, const ChipSpec& chip,
                                        const HardwareModel& hardware);

// The configurations around `base` (ZeRO stages 0-3 with gpus > 1, policies keep and plan,
// micro-batches 1, 2, 4, ... dividing the global batch per GPU, grad_accum making up the same
// global batch, and the optimizer state on the device, the host or NVMe), each answered; the
// ones that fit first, fastest first, then the rest. State off the device only adds work (the
// gradients' copies, the CPU step, the parameters' copies back) and frees device memory, so it is
// tried only where it can win: not for a stage and micro-batch that fit with the state on the
// device and policy keep, nor where a floor under its step (the CPU step alone, over the traffic
// every optimizer has) is no faster than the fastest step found with the state on the device.
// NVMe, which leaves the device the same bytes as the host and adds its streaming, is tried only
// where no host placement fits (the host's memory is short). The configurations skipped are not
// in the list.
// REQUIRES: the global batch of `base` is a multiple of gpus.
Result<std::vector<ConfigAnswer>> search_configurations(const ConfigQuery& base,
                                                        const ChipSpec& chip,
                                                        const HardwareModel& hardware);

// Splits a fitting answer's step into compute, replays, the CPU step and the exposed rest, by
// running the same configuration again with every link, the host and NVMe unbounded (the compute
// is that run's step less its replays and CPU step); then the rest into communication and
// transfers, by a third run with only the collectives' links as they are. Two more simulations:
// called for the answers shown, not for every one searched.
Status split_step_parts(ConfigAnswer& answer, const ChipSpec& chip, const HardwareModel& hardware);

// When nothing fits on base.gpus: the fewest GPUs (doubling, up to max_gpus) on which `base`
// fits with ZeRO stage 3 and policy plan, the micro-batch and accumulations per GPU kept (so the
// global batch grows with the GPUs); none when even max_gpus do not.
Result<std::optional<ConfigAnswer>> fewest_gpus_that_fit(const ConfigQuery& base,
                                                         const ChipSpec& chip,
                                                         const HardwareModel& hardware,
                                                         int max_gpus);

}  // namespace ebb::cli
