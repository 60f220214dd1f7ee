// simulate_profile: a Profile through an Engine on a sim device.
#include "engine/planner/simulator.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/arith.h"
#include "kernels/sim/sim_device.h"

namespace ebb {
namespace {

TensorSpec spec_of(const ProfiledTensor& t) {
  return {
      t.name, {static_cast<std::int64_t>(std::max<std::size_t>(t.bytes, 1))}, DType::kU8, t.kind};
}

// Writes down the moves an engine logged during one iteration (Engine::set_residency_log) as plan
// evictions: each interval a tensor spent off the device, from the moment it left (after op
// t - 1 when t ops had been launched) to the op before which it came back (prefetch_at) and the
// next op that reads it (needed_at). A tensor brought back for a replay only (no op read it
// before it left again) is off for one interval throughout: the plan's chains rebuild it.
std::vector<Eviction> evictions_from_log(
    const Profile& profile, const std::vector<ResidencyEvent>& log,
    const std::unordered_map<std::uint64_t, std::size_t>& ids) {
  struct Open {
    bool off = false;
    std::size_t left = 0;  // ops launched when it left
    EvictionMethod method = EvictionMethod::kRecompute;
    OffloadTier tier = OffloadTier::kHost;
    std::size_t written = 0;  // 1 + index in `out` of its last interval that came back; 0: none
    std::size_t written_left = 0;
  };
  std::vector<Open> open(profile.tensors.size());
  // The program frees a tensor after op freed_after; the engine may keep its bytes longer (a
  // replay reads them) and move them then, which is no concern of the plan's.
  const std::vector<std::size_t> freed_after = freed_after_ops(profile);
  std::vector<Eviction> out;
  std::vector<bool> merged;
  const auto close = [&](std::size_t id, std::optional<std::size_t> back) {
    Open& o = open[id];
    if (!o.off) return;
    o.off = false;
    const ProfiledTensor& t = profile.tensors[id];
    Eviction ev;
    ev.tensor = id;
    ev.method = o.method;
    ev.tier = o.tier;
    ev.evict_after = o.left > 0 ? o.left - 1 : 0;
    if (t.producer.has_value()) ev.evict_after = std::max(ev.evict_after, *t.producer);
    o.written = 0;
    if (back.has_value()) {
      auto next = std::lower_bound(t.accesses.begin(), t.accesses.end(), *back);
      if (next != t.accesses.end()) {
        ev.needed_at = *next;
        ev.prefetch_at = std::max(*back, ev.evict_after + 1);
        o.written = out.size() + 1;
        o.written_left = o.left;
      }
    }
    out.push_back(ev);
    merged.push_back(false);
  };
  for (const ResidencyEvent& e : log) {
    auto found = ids.find(e.tensor);
    if (found == ids.end()) continue;
    const std::size_t id = found->second;
    Open& o = open[id];
    if (e.to == Residency::kDevice) {
      close(id, e.ops_launched);
      continue;
    }
    if (o.off || (e.ops_launched > 0 && e.ops_launched - 1 > freed_after[id])) continue;
    o.off = true;
    o.left = e.ops_launched;
    o.method = e.to == Residency::kDropped ? EvictionMethod::kRecompute : EvictionMethod::kSwap;
    o.tier = e.to == Residency::kNvme ? OffloadTier::kNvme : OffloadTier::kHost;
    // Back for a replay only, and away again before an op read it: one interval.
    if (o.written > 0 && *out[o.written - 1].needed_at + 1 > e.ops_launched) {
      merged[o.written - 1] = true;
      o.left = o.written_left;
      o.method = out[o.written - 1].method;
      o.tier = out[o.written - 1].tier;
    }
    o.written = 0;
  }
  for (std::size_t id = 0; id < open.size(); ++id) close(id, std::nullopt);
  std::vector<Eviction> kept;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!merged[i]) kept.push_back(out[i]);
  }
  sort_evictions(kept);
  return kept;
}

// `named_as_profiled`: ops run under their profiled names, which the executor matches against the
// plan's profile; otherwise "op <index> <name>", which error messages then name.
// `ids` (when not null) receives each engine tensor's profile id.
Status run_iteration(const Profile& profile, Engine& engine, bool named_as_profiled,
                     std::unordered_map<std::uint64_t, std::size_t>* ids) {
  std::vector<std::optional<Tensor>> tensors(profile.tensors.size());
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.producer.has_value()) continue;
    Result<Tensor> made = t.kind == TensorKind::kInput ? engine.input(spec_of(t), nullptr)
                                                       : engine.parameter(spec_of(t), nullptr);
    if (!made.ok()) return made.status();
    tensors[t.id] = *made;
    if (ids != nullptr) ids->emplace(made->id(), t.id);
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
    const std::string name =
        named_as_profiled ? op.name : "op " + std::to_string(op.index) + " " + op.name;
    const std::chrono::nanoseconds cost(op.duration_ns);
    if (!op.writes.empty()) {
      // An in-place op: the inputs it writes are its targets, the others what it reads.
      std::vector<Tensor> reads;
      std::vector<Tensor> targets;
      for (std::size_t i = 0; i < op.inputs.size(); ++i) {
        const bool written =
            std::find(op.writes.begin(), op.writes.end(), op.inputs[i]) != op.writes.end();
        (written ? targets : reads).push_back(inputs[i]);
      }
      EBB_RETURN_IF_ERROR(engine.update(
          name, reads, targets, [](const OpArgs&) {}, cost));
    } else {
      std::vector<TensorSpec> outputs;
      outputs.reserve(op.outputs.size());
      for (std::size_t id : op.outputs) outputs.push_back(spec_of(profile.tensors[id]));
      EBB_ASSIGN_OR_RETURN(std::vector<Tensor> made,
                           engine.run(
                               name, inputs, std::move(outputs), [](const OpArgs&) {}, cost));
      for (std::size_t i = 0; i < op.outputs.size(); ++i) {
        tensors[op.outputs[i]] = made[i];
        if (ids != nullptr) ids->emplace(made[i].id(), op.outputs[i]);
      }
    }
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
                  [](const ProfiledOp& op) { return !op.outputs.empty() || !op.writes.empty(); }) &&
      std::all_of(profile.tensors.begin(), profile.tensors.end(),
                  [](const ProfiledTensor& t) { return t.bytes > 0; });
  if (engine_shaped) return profile;
  Profile p = profile;
  for (ProfiledTensor& t : p.tensors) t.bytes = std::max<std::size_t>(t.bytes, 1);
  for (ProfiledOp& op : p.ops) {
    if (!op.outputs.empty() || !op.writes.empty()) continue;
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
  engine_options.policy =
      options.plan != nullptr && !options.plan_fallback ? EvictionPolicy::kNone : options.policy;
  engine_options.host_link_bytes_per_s = h2d;
  engine_options.max_recompute_overhead = options.max_recompute_overhead;
  engine_options.iteration_compute_ns = figures.total_op_time_ns;
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(engine_options));
  if (options.plan != nullptr) EBB_RETURN_IF_ERROR(engine->set_plan(*options.plan, profile));
  std::vector<ResidencyEvent> log;
  std::unordered_map<std::uint64_t, std::size_t> ids;
  const bool record = options.evictions_taken != nullptr;
  if (record) engine->set_residency_log(&log);
  EBB_RETURN_IF_ERROR(
      run_iteration(profile, *engine, options.plan != nullptr, record ? &ids : nullptr));
  if (record && engine->residency_log_truncated()) {
    return out_of_memory("simulate: the iteration moved tensors more than " +
                         std::to_string(log.size()) +
                         " times (the residency log's bound); its moves are not a plan");
  }
  if (record) *options.evictions_taken = evictions_from_log(profile, log, ids);

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
