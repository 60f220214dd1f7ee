#include "tools/config_plan.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include "engine/planner/cost_model.h"
#include "engine/planner/planner.h"
#include "kernels/statistics.h"
#include "tools/train/model_flops.h"
#include "tools/train/op_work.h"

namespace ebb::cli {
namespace {

// The chip with the query's host memory and NVMe bandwidth, where it gives them.
ChipSpec chip_of(const ConfigQuery& q, const ChipSpec& chip) {
  ChipSpec c = chip;
  if (q.host_memory_bytes > 0) c.host_memory_bytes_per_gpu = q.host_memory_bytes;
  if (q.nvme_bytes_per_s > 0) c.nvme_bytes_per_s_per_node = q.nvme_bytes_per_s;
  return c;
}

// A floor under any step with the optimizer state off the device: its CPU step alone
// (host_step_time), counting only the traffic every optimizer has (gradients in, parameters out,
// master weights read and written) over the parameters this GPU updates: all of them, or their
// 1/N shard from ZeRO stage 1 on.
double off_device_step_floor_ms(const ConfigQuery& q, const ChipSpec& chip) {
  const auto params = static_cast<std::size_t>(train::parameter_count(q.model));
  const bool sharded = q.zero_stage.value_or(0) >= 1;
  const std::size_t updated = sharded ? params / static_cast<std::size_t>(q.gpus) : params;
  const std::size_t pbytes = dtype_bytes(precision_dtype(q.precision));
  const HostStepWork work{.host_slice_bytes =
                              host_step_traffic_bytes(updated, updated, pbytes, pbytes)};
  return std::chrono::duration<double, std::milli>(host_step_time(chip_of(q, chip), work)).count();
}

}  // namespace

train::TrainOptions train_options_of(const ConfigQuery& q, const ChipSpec& chip,
                                     const HardwareModel& hardware) {
  train::TrainOptions o;
  o.model = q.model;
  o.steps = q.steps;
  o.precision = q.precision;
  o.device = DeviceKind::kSim;
  o.sim_hardware = hardware;
  o.sim_chip = chip_of(q, chip);
  o.sim_ranks = q.gpus;
  o.zero_stage = q.zero_stage;
  if (q.gpus > 1 && !o.zero_stage.has_value()) o.zero_stage = 0;
  o.grad_accum = q.grad_accum;
  o.budget_bytes = q.budget_bytes;
  o.optimizer_state = q.optimizer_state;
  // auto places the state for a budget: the device's, when none is given.
  if (q.optimizer_state == StatePolicy::kAuto && o.budget_bytes == 0) {
    o.budget_bytes = chip.memory_bytes;
  }
  // keep: nothing leaves the device (its plan, which evicts nothing, gives the step's compute).
  // A planner's plan is followed with dynamic eviction under it, as `ebb train --policy P` does.
  o.plan_policy = plan_policy_from_name(q.policy);
  o.policy = q.policy == "keep" ? EvictionPolicy::kNone : EvictionPolicy::kBoth;
  return o;
}

long long global_batch(const ConfigQuery& q) {
  return static_cast<long long>(q.gpus) * q.model.batch * q.grad_accum;
}

Result<ConfigAnswer> plan_configuration(const ConfigQuery& query, const ChipSpec& chip,
                                        const HardwareModel& hardware) {
  if (query.gpus < 1) {
    return invalid_argument("--gpus " + std::to_string(query.gpus) + ": at least 1");
  }
  if (query.zero_stage.has_value() && (*query.zero_stage < 0 || *query.zero_stage > 3)) {
    return invalid_argument("--zero " + std::to_string(*query.zero_stage) + ": a stage 0-3");
  }
  if (!(query.nvme_bytes_per_s >= 0)) {
    return invalid_argument("--nvme-bandwidth " + std::to_string(query.nvme_bytes_per_s / 1e9) +
                            " GB/s: at least 0 (0: the chip's)");
  }
  if (!plan_policy_from_name(query.policy).has_value()) {
    return invalid_argument("--policy " + query.policy +
                            ": keep, plan, recompute-all, sqrt or swap-all");
  }
  EBB_RETURN_IF_ERROR(train::validate_config(query.model));
  ConfigAnswer a;
  a.query = query;
  a.model_flops_per_token = train::model_flops_per_token(query.model);
  const train::TrainOptions o = train_options_of(query, chip, hardware);
  a.budget_bytes = query.budget_bytes > 0 ? query.budget_bytes : chip.memory_bytes;
  // What one step needs at once under the policy (its largest op, and the model state when
  // nothing may swap): below it, no schedule fits.
  const std::size_t floor = train::minimum_budget_bytes(o, query.gpus);
  if (a.budget_bytes < floor) {
    a.why_not = "one step needs " + std::to_string(floor) + " B at once under policy " +
                query.policy + " (its largest op, and the model state when nothing may swap), " +
                "above the " + std::to_string(a.budget_bytes) + " B of device memory";
    return a;
  }
  Result<train::TrainResult> run = train::train(o);
  if (!run.ok()) {
    // Out of memory under the budget: an answer. Anything else is the input's fault.
    if (run.status().code() != StatusCode::kOutOfMemory) return run.status();
    // The engine's report names every resident tensor; its first clause says what did not fit.
    const std::string& m = run.status().message();
    a.why_not = m.substr(0, std::min(m.find("; resident"), m.size()));
    return a;
  }
  const train::TrainResult& r = *run;
  for (StatePlacement p : r.state_placement) {
    ++(p == StatePlacement::kDevice ? a.device_state_slices
       : p == StatePlacement::kHost ? a.host_state_slices
                                    : a.nvme_state_slices);
  }
  a.host_state_bytes = r.offload.host_bytes;
  a.nvme_state_bytes = r.offload.nvme_bytes;
  if (r.offload.cpu_steps > 0) {
    a.host_step_ms = r.offload.cpu_step_s * 1e3 / static_cast<double>(r.offload.cpu_steps);
  }
  a.fits = true;
  a.budget_bytes = r.budget_bytes;
  a.parameter_bytes = r.peak_parameter_bytes;
  a.gradient_bytes = r.peak_gradient_bytes + r.peak_op_gradient_bytes;
  a.optimizer_state_bytes = r.peak_optimizer_state_bytes;
  a.activation_bytes = r.peak_activation_bytes;
  a.communication_bytes = r.peak_workspace_bytes;
  a.peak_reserved_bytes = r.steady_peak_reserved_bytes;
  a.peak_live_bytes = r.peak_live_bytes;
  a.fragmentation_bytes =
      a.peak_reserved_bytes > a.peak_live_bytes ? a.peak_reserved_bytes - a.peak_live_bytes : 0;
  a.planned = r.plan.has_value();
  if (!a.planned && query.policy != "keep") a.plan_refused = r.executor.last_refusal;
  if (r.plan.has_value()) {
    std::set<std::size_t> swapped, recomputed;
    for (const Eviction& e : r.plan->evictions) {
      (e.method == EvictionMethod::kSwap ? swapped : recomputed).insert(e.tensor);
    }
    a.swapped_tensors = swapped.size();
    a.recomputed_tensors = recomputed.size();
  }
  // The steady steps: after the warm-up, what the policy does.
  std::vector<double> recompute, gathers, exposed_gather;
  const std::size_t warm = static_cast<std::size_t>(o.warmup_iterations);
  for (std::size_t i = std::min(warm, r.steps.size()); i < r.steps.size(); ++i) {
    recompute.push_back(r.steps[i].recompute_ms);
    gathers.push_back(static_cast<double>(r.steps[i].gathers));
    exposed_gather.push_back(r.steps[i].exposed_gather_ms);
  }
  a.step_ms = r.steady_ms_median;
  a.recompute_ms = median(recompute);
  a.gathers_per_step = static_cast<std::int64_t>(median(gathers));
  a.exposed_gather_ms = median(exposed_gather);
  // Until split_step_parts runs: all of the step but its replays and the CPU step is compute.
  a.compute_ms = std::max(0.0, a.step_ms - a.recompute_ms - a.host_step_ms);
  const double tokens = static_cast<double>(global_batch(query)) * query.model.seq;
  a.tokens_per_s = a.step_ms > 0 ? tokens / (a.step_ms / 1e3) : 0;
  const double peak = peak_flops_per_s(chip, KernelClass::kGemm,
                                       train::matmul_precision(precision_dtype(query.precision)));
  a.mfu = train::model_flops_utilisation(query.model, a.tokens_per_s / query.gpus, peak);
  return a;
}

Status split_step_parts(ConfigAnswer& answer, const ChipSpec& chip, const HardwareModel& hardware) {
  if (!answer.fits) return ok_status();
  // The same configuration with every link as fast as it can be: the ops' own time, replays
  // aside (the planner may pick other evictions there, so its replays are subtracted from its
  // own step, not from this one's).
  constexpr double kUnbounded = 1e18;  // bytes/s: transfers take their latency only
  ChipSpec fast_chip = chip;
  fast_chip.chip_link_bytes_per_s = kUnbounded;
  fast_chip.inter_node_bytes_per_s = kUnbounded;
  fast_chip.host_memory_bytes_per_s = kUnbounded;  // the CPU step is a part of its own
  fast_chip.nvme_bytes_per_s_per_node = kUnbounded;
  HardwareModel fast_links = hardware;
  fast_links.host_to_device_bytes_per_s = kUnbounded;
  fast_links.device_to_host_bytes_per_s = kUnbounded;
  if (fast_links.nvme_read_bytes_per_s > 0) fast_links.nvme_read_bytes_per_s = kUnbounded;
  if (fast_links.nvme_write_bytes_per_s > 0) fast_links.nvme_write_bytes_per_s = kUnbounded;
  EBB_ASSIGN_OR_RETURN(ConfigAnswer fast, plan_configuration(answer.query, fast_chip, fast_links));
  if (!fast.fits) return ok_status();
  const double not_compute = answer.recompute_ms + answer.host_step_ms;
  answer.compute_ms = std::clamp(fast.step_ms - fast.recompute_ms - fast.host_step_ms, 0.0,
                                 std::max(0.0, answer.step_ms - not_compute));
  answer.exposed_transfer_and_comm_ms =
      std::max(0.0, answer.step_ms - answer.compute_ms - not_compute);
  // Communication's share: what the step loses with only the collectives' links as they are
  // (the host link, the host and NVMe as fast as they can be); the rest is the transfers'.
  ChipSpec links_only = chip;
  links_only.host_memory_bytes_per_s = kUnbounded;
  links_only.nvme_bytes_per_s_per_node = kUnbounded;
  EBB_ASSIGN_OR_RETURN(ConfigAnswer comm_only,
                       plan_configuration(answer.query, links_only, fast_links));
  const double comm_exposed = comm_only.fits ? comm_only.step_ms - comm_only.recompute_ms -
                                                   comm_only.host_step_ms - answer.compute_ms
                                             : answer.exposed_transfer_and_comm_ms;
  answer.exposed_communication_ms =
      std::clamp(comm_exposed, 0.0, answer.exposed_transfer_and_comm_ms);
  answer.exposed_transfer_ms =
      answer.exposed_transfer_and_comm_ms - answer.exposed_communication_ms;
  return ok_status();
}

Result<std::optional<ConfigAnswer>> fewest_gpus_that_fit(const ConfigQuery& base,
                                                         const ChipSpec& chip,
                                                         const HardwareModel& hardware,
                                                         int max_gpus) {
  for (int gpus = std::max(base.gpus, 1) * 2; gpus <= max_gpus; gpus *= 2) {
    ConfigQuery q = base;
    q.gpus = gpus;
    q.zero_stage = 3;
    q.policy = "plan";
    EBB_ASSIGN_OR_RETURN(ConfigAnswer a, plan_configuration(q, chip, hardware));
    if (a.fits) return std::optional<ConfigAnswer>(std::move(a));
  }
  return std::optional<ConfigAnswer>();
}

Result<std::vector<ConfigAnswer>> search_configurations(const ConfigQuery& base,
                                                        const ChipSpec& chip,
                                                        const HardwareModel& hardware) {
  const long long per_gpu = global_batch(base) / base.gpus;
  std::vector<std::optional<int>> stages;
  if (base.gpus == 1) {
    stages.push_back(std::nullopt);
  } else {
    for (int s = 0; s <= 3; ++s) stages.push_back(s);
  }
  std::vector<long long> micros;
  for (long long micro = 1; micro <= per_gpu; micro *= 2) {
    if (per_gpu % micro == 0) micros.push_back(micro);
  }
  const auto variant = [&](const std::optional<int>& stage, long long micro, StatePolicy state,
                           const char* policy) {
    ConfigQuery q = base;
    q.zero_stage = stage;
    q.policy = policy;
    q.optimizer_state = state;
    q.model.batch = static_cast<int>(micro);
    q.grad_accum = static_cast<int>(per_gpu / micro);
    return q;
  };
  std::vector<ConfigAnswer> answers;
  // The state on the device first: every stage and micro-batch, and the fastest step that fits.
  std::set<std::pair<std::size_t, long long>> device_keep_fits;
  double best_step_ms = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < stages.size(); ++i) {
    for (long long micro : micros) {
      for (const char* policy : {"keep", "plan"}) {
        EBB_ASSIGN_OR_RETURN(
            ConfigAnswer a,
            plan_configuration(variant(stages[i], micro, StatePolicy::kDevice, policy), chip,
                               hardware));
        if (a.fits && std::string_view(policy) == "keep") device_keep_fits.insert({i, micro});
        if (a.fits) best_step_ms = std::min(best_step_ms, a.step_ms);
        answers.push_back(std::move(a));
      }
    }
  }
  // Then off the device, where it can win: not where the device's keep fits, nor where the CPU
  // step alone takes longer than the fastest step found. NVMe, which leaves the device the same
  // bytes as the host and adds its streaming, only where no host placement fits.
  for (std::size_t i = 0; i < stages.size(); ++i) {
    for (long long micro : micros) {
      if (device_keep_fits.contains({i, micro})) continue;
      const ConfigQuery probe = variant(stages[i], micro, StatePolicy::kHost, "keep");
      if (off_device_step_floor_ms(probe, chip) >= best_step_ms) continue;
      bool host_fits = false;
      for (StatePolicy state : {StatePolicy::kHost, StatePolicy::kNvme}) {
        if (state == StatePolicy::kNvme && host_fits) break;
        for (const char* policy : {"keep", "plan"}) {
          EBB_ASSIGN_OR_RETURN(
              ConfigAnswer a,
              plan_configuration(variant(stages[i], micro, state, policy), chip, hardware));
          if (state == StatePolicy::kHost) host_fits = host_fits || a.fits;
          if (a.fits) best_step_ms = std::min(best_step_ms, a.step_ms);
          answers.push_back(std::move(a));
        }
      }
    }
  }
  std::stable_sort(answers.begin(), answers.end(),
                   [](const ConfigAnswer& x, const ConfigAnswer& y) {
                     if (x.fits != y.fits) return x.fits;
                     return x.tokens_per_s > y.tokens_per_s;
                   });
  return answers;
}

}  // namespace ebb::cli
