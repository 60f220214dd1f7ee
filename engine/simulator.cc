// simulate_profile: a Profile through an Engine on a sim device.
#include "engine/simulator.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/sim/sim_device.h"

namespace ebb {
namespace {

std::size_t round_up(std::size_t bytes, std::size_t to) { return (bytes + to - 1) / to * to; }

TensorSpec spec_of(const ProfiledTensor& t) {
  return {
      t.name, {static_cast<std::int64_t>(std::max<std::size_t>(t.bytes, 1))}, DType::kU8, t.kind};
}

// `named_as_profiled`: ops run under their profiled names, which the executor matches against the
// plan's profile; otherwise "op <index> <name>", which error messages then name.
Status run_iteration(const Profile& profile, Engine& engine, bool named_as_profiled) {
  std::vector<std::optional<Tensor>> tensors(profile.tensors.size());
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.producer.has_value()) continue;
    Result<Tensor> made = t.kind == TensorKind::kInput ? engine.input(spec_of(t), nullptr)
                                                       : engine.parameter(spec_of(t), nullptr);
    if (!made.ok()) return made.status();
    tensors[t.id] = *made;
  }
  EBB_RETURN_IF_ERROR(engine.begin_iteration());
  std::vector<Tensor> inputs;
  for (const ProfiledOp& op : profile.ops) {
    inputs.clear();
    for (std::size_t id : op.inputs) {
      if (!tensors[id].has_value()) {
        return internal_error("op " + std::to_string(op.index) + " \"" + op.name +
                              "\" reads tensor " + std::to_string(id) + " that is not live");
      }
      inputs.push_back(*tensors[id]);
    }
    std::vector<TensorSpec> outputs;
    outputs.reserve(op.outputs.size());
    for (std::size_t id : op.outputs) outputs.push_back(spec_of(profile.tensors[id]));
    EBB_ASSIGN_OR_RETURN(
        std::vector<Tensor> made,
        engine.run(
            named_as_profiled ? op.name : "op " + std::to_string(op.index) + " " + op.name, inputs,
            std::move(outputs), [](const OpArgs&) {}, std::chrono::nanoseconds(op.duration_ns)));
    for (std::size_t i = 0; i < op.outputs.size(); ++i) tensors[op.outputs[i]] = made[i];
    for (std::size_t id : op.frees) {
      if (!tensors[id].has_value()) continue;
      EBB_RETURN_IF_ERROR(engine.release(*tensors[id]));
      tensors[id].reset();
    }
  }
  return engine.synchronize();
}

}  // namespace

Profile as_engine_runs(const Profile& profile) {
  const bool engine_shaped =
      std::all_of(profile.ops.begin(), profile.ops.end(),
                  [](const ProfiledOp& op) { return !op.outputs.empty(); }) &&
      std::all_of(profile.tensors.begin(), profile.tensors.end(),
                  [](const ProfiledTensor& t) { return t.bytes > 0; });
  if (engine_shaped) return profile;
  Profile p = profile;
  for (ProfiledTensor& t : p.tensors) t.bytes = std::max<std::size_t>(t.bytes, 1);
  for (ProfiledOp& op : p.ops) {
    if (!op.outputs.empty()) continue;
    ProfiledTensor t;
    t.id = p.tensors.size();
    t.name = op.name + ".placeholder";
    t.bytes = 1;
    t.dtype = DType::kU8;
    t.producer = op.index;
    op.outputs.push_back(t.id);
    op.frees.push_back(t.id);
    p.tensors.push_back(std::move(t));
  }
  const std::vector<std::size_t> live = recompute_live_bytes(p);
  for (std::size_t k = 0; k < p.ops.size(); ++k) p.memory[k].live_bytes = live[k];
  return p;
}

HardwareModel link_hardware_model(double gbps) {
  HardwareModel model;
  char name[48];
  std::snprintf(name, sizeof name, "link-%ggbps", gbps);
  model.name = gbps > 0 ? name : "no-host-link";
  model.host_to_device_bytes_per_s = gbps * 1e9;
  model.device_to_host_bytes_per_s = gbps * 1e9;
  model.link_latency = std::chrono::microseconds(5);
  return model;
}

Result<SimulationResult> simulate_profile(const Profile& recorded,
                                          const SimulationOptions& options) {
  const Profile profile = as_engine_runs(recorded);
  if (options.budget_bytes == 0) return invalid_argument("simulate: a budget of 0 bytes");
  const HardwareModel& hw = options.hardware;
  const bool swaps =
      options.policy == EvictionPolicy::kSwap || options.policy == EvictionPolicy::kBoth;
  if (options.plan == nullptr && swaps && !hw.has_host_link()) {
    return invalid_argument("simulate: policy " +
                            std::string(eviction_policy_name(options.policy)) +
                            " swaps, but hardware \"" + hw.name + "\" has no host link");
  }
  if (options.plan != nullptr) {
    EBB_RETURN_IF_ERROR(validate_plan(*options.plan, profile, "plan"));
    for (const Eviction& e : options.plan->evictions) {
      if (e.method == EvictionMethod::kSwap && !hw.has_host_link()) {
        return invalid_argument("simulate: the plan swaps, but hardware \"" + hw.name +
                                "\" has no host link");
      }
    }
  }
  // The figures of the profile as recorded: the placeholders are the simulator's own.
  const ProfileFigures figures = profile_figures(recorded);
  DeviceOptions device_options;
  device_options.kind = DeviceKind::kSim;
  device_options.capacity_bytes = round_up(
      std::max({options.budget_bytes, 2 * figures.peak_live_bytes, std::size_t{1}}), 2 * kMiB);
  // Without a host link the device still needs one to fill parameters before the iteration;
  // nothing is swapped over it.
  const double h2d = hw.has_host_link() ? hw.host_to_device_bytes_per_s : 16e9;
  const double d2h = hw.has_host_link() ? hw.device_to_host_bytes_per_s : 16e9;
  if (hw.page_bytes > 0) device_options.page_bytes = hw.page_bytes;
  device_options.host_to_device = LinkModel{h2d, hw.link_latency};
  device_options.device_to_host = LinkModel{d2h, hw.link_latency};
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<Device> device, create_sim_device(device_options));

  EngineOptions engine_options{.device = *device};
  engine_options.budget_bytes = options.budget_bytes;
  engine_options.expandable_segments = options.expandable_segments;
  // Address space only on sim: generous, so that swapping is never limited by the host tier.
  engine_options.host_tier_bytes = round_up(std::max(4 * figures.peak_live_bytes, kGiB), 2 * kMiB);
  engine_options.policy = options.plan != nullptr ? EvictionPolicy::kNone : options.policy;
  engine_options.host_link_bytes_per_s = h2d;
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(engine_options));
  if (options.plan != nullptr) EBB_RETURN_IF_ERROR(engine->set_plan(*options.plan, profile));
  EBB_RETURN_IF_ERROR(run_iteration(profile, *engine, options.plan != nullptr));

  SimulationResult result;
  const AllocatorStats stats = engine->allocator().stats();
  result.budget_bytes = stats.budget_bytes;
  result.peak_reserved_bytes = static_cast<std::size_t>(stats.all.reserved_bytes.peak);
  result.peak_live_bytes = figures.peak_live_bytes;
  result.base_compute_ns = figures.total_op_time_ns;
  result.stats = engine->stats();
  EBB_ASSIGN_OR_RETURN(result.simulated, simulated_time(*device));
  EBB_RETURN_IF_ERROR(engine->end_iteration());
  return result;
}

}  // namespace ebb
