// Trainer: runs GptModel for a number of steps on one device under a budget and eviction policy,
// measuring what users judge ebb by: the loss curve, the memory peaks, the time per step, and
// what the engine did (bytes swapped, ops recomputed). `ebb train` and `ebb demo` are thin
// front ends over it; the tests drive it directly.
//
// Thread safety: not thread-safe; one call at a time per Trainer.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "engine/planner/planner.h"
#include "kernels/nn.h"
#include "tools/train/gpt_config.h"

namespace ebb::train {

struct TrainOptions {
  GptConfig model;
  int steps = 20;
  nn::AdamWConfig adamw{.learning_rate = 3e-3F, .weight_decay = 0.0F};
  std::uint64_t seed = 1337;
  std::string data_path;  // empty: synthetic tokens
  DeviceKind device = DeviceKind::kCpu;
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
  std::size_t host_tier_bytes = 0;  // pinned host tier for swapped tensors; 0: the engine's default
  // NVMe tier below the host tier (EngineOptions::nvme_directories); empty: none.
  std::vector<std::string> nvme_directories;
  std::size_t nvme_tier_bytes = kGiB;  // reserved on disk up front
};

// One step's measurements.
struct StepStats {
  int step = 0;  // from 1
  float loss = 0;
  double ms = 0;  // wall time of the step
  double tokens_per_s = 0;
  std::size_t peak_reserved_bytes = 0;  // allocator's reserved peak so far
  std::int64_t swapped_bytes = 0;       // device->host bytes swapped out by this step
  double recompute_ms = 0;              // estimated device time of this step's recomputes
  std::int64_t recomputed_ops = 0;
};

struct TrainResult {
  std::vector<StepStats> steps;
  std::size_t budget_bytes = 0;  // the budget the run used (the device's size if none)
  std::size_t peak_reserved_bytes = 0;
  std::size_t peak_live_bytes = 0;  // the allocator's allocated-bytes peak
  double ms_per_step_median = 0;
  double tokens_per_s = 0;              // from the median step time
  std::vector<float> final_parameters;  // every parameter after the last step, in order
  EngineStats engine;
  // After the warm-up: the steps that follow the plan (or dynamic eviction alone).
  std::size_t steady_peak_reserved_bytes = 0;  // allocator's reserved peak over those steps
  double steady_ms_median = 0;                 // their median wall time
  // With a planner: what the plan predicted (sim device) and what the executor did.
  std::optional<Plan> plan;
  ExecutorStats executor;
  HardwareModel hardware;  // the model the planner used
};

// Validates the options up front (model shape, data file, budget against the largest op's
// working set) so that bad input fails before any training; then trains. `on_step` (optional)
// sees each step as it completes.
Result<TrainResult> train(const TrainOptions& options,
                          const std::function<void(const StepStats&)>& on_step = {});

// The bytes a step cannot do without at once: its largest op's inputs and outputs, plus, when
// the policy cannot swap, every parameter and AdamW moment (they have no producer to recompute
// them from). A budget below this cannot work whatever the engine evicts.
std::size_t minimum_budget_bytes(const GptConfig& config, EvictionPolicy policy);

// Bitwise equality, the comparison ebb's promise is about (unlike ==, it tells -0 from 0 and a
// NaN equals itself).
bool same_bits(float a, float b);
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);
// Whether two runs took as many steps with bitwise equal losses.
bool same_losses(const TrainResult& a, const TrainResult& b);

// FNV-1a of the bytes of `values`: a short fingerprint of a parameter set.
std::uint64_t fingerprint(const std::vector<float>& values);

}  // namespace ebb::train
