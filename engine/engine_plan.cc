// The executor: the Engine's member functions that follow a Plan (see engine/executor.h for how
// an iteration is matched against the cached plans, and engine/plan.h for what each eviction
// means). Everything here is an optimisation of timing and memory, never of correctness: a
// tensor the plan moved is brought back by the same swap-in and recompute paths as under dynamic
// eviction, so the bits do not depend on whether the plan was followed, late or abandoned.
#include <algorithm>
#include <utility>

#include "engine/engine.h"

namespace ebb {

namespace {

constexpr std::uint64_t kFnvOffset = 1469598103934665603ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;

void mix(std::uint64_t& h, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xFF;
    h *= kFnvPrime;
  }
}

}  // namespace

std::uint64_t op_signature(std::string_view name, const std::vector<std::size_t>& input_bytes) {
  std::uint64_t h = kFnvOffset;
  for (char c : name) mix(h, static_cast<unsigned char>(c));
  mix(h, input_bytes.size());
  for (std::size_t b : input_bytes) mix(h, b);
  return h;
}

std::vector<std::uint64_t> profile_op_signatures(const Profile& profile) {
  std::vector<std::uint64_t> signatures;
  signatures.reserve(profile.ops.size());
  std::vector<std::size_t> in;
  for (const ProfiledOp& op : profile.ops) {
    in.clear();
    for (std::size_t t : op.inputs) in.push_back(profile.tensors[t].bytes);
    signatures.push_back(op_signature(op.name, in));
  }
  return signatures;
}

void index_plan_actions(ExecutorState& state, std::size_t index) {
  const CachedPlan& cached = state.plans[index];
  const std::size_t ops = cached.profile.ops.size();
  for (auto* lists : {&state.prefetch_before, &state.evict_after}) {
    lists->resize(ops);
    for (std::vector<std::size_t>& list : *lists) list.clear();
  }
  for (std::size_t e = 0; e < cached.plan.evictions.size(); ++e) {
    const Eviction& ev = cached.plan.evictions[e];
    state.evict_after[ev.evict_after].push_back(e);
    if (ev.method != EvictionMethod::kSwap || !ev.needed_at.has_value()) continue;
    const std::size_t earliest = ev.evict_after + 1;
    const std::size_t advance = cached.prefetch_advance[e];
    const std::size_t at =
        ev.prefetch_at >= earliest + advance ? ev.prefetch_at - advance : earliest;
    state.prefetch_before[at].push_back(e);
  }
  // Copies back share one stream, first issued first served: of those issued at one op, the one
  // needed first goes first, so that a prefetch moved earlier never queues ahead of a more urgent
  // one.
  const auto& evictions = cached.plan.evictions;
  for (std::vector<std::size_t>& list : state.prefetch_before) {
    std::sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
      return std::tie(*evictions[a].needed_at, a) < std::tie(*evictions[b].needed_at, b);
    });
  }
}

Status Engine::set_plan(const Plan& plan, const Profile& profile) {
  const auto refuse = [this](Status s) {
    ++executor_stats_.plans_refused;
    executor_stats_.last_refusal = s.message();
    return s;
  };
  if (Status s = validate_profile(profile, "set_plan: profile"); !s.ok()) return refuse(s);
  if (Status s = validate_plan(plan, profile, "set_plan: plan"); !s.ok()) return refuse(s);
  if (plan.budget_bytes > allocator_->budget_bytes()) {
    return refuse(invalid_argument(
        "set_plan: plan.budget_bytes: the plan was made for a budget of " +
        std::to_string(plan.budget_bytes) + " bytes, above the engine's budget of " +
        std::to_string(allocator_->budget_bytes()) + " bytes"));
  }
  for (const Eviction& ev : plan.evictions) {
    if (ev.method == EvictionMethod::kSwap && ev.tier != OffloadTier::kHost) {
      return refuse(invalid_argument(
          "set_plan: plan.evictions: tensor " + std::to_string(ev.tensor) + " is swapped to tier " +
          std::string(offload_tier_name(ev.tier)) + ", which this engine does not have"));
    }
  }
  CachedPlan cached{plan, profile, profile_op_signatures(profile),
                    std::vector<std::size_t>(plan.evictions.size(), 0)};
  auto same = std::find_if(executor_.plans.begin(), executor_.plans.end(),
                           [&](const CachedPlan& c) { return c.plan.profile == plan.profile; });
  int index = 0;
  if (same != executor_.plans.end()) {
    *same = std::move(cached);
    index = static_cast<int>(same - executor_.plans.begin());
  } else {
    executor_.plans.push_back(std::move(cached));
    index = static_cast<int>(executor_.plans.size()) - 1;
  }
  // The iteration in flight keeps what it follows; the next one starts from the newest plan.
  if (!in_iteration_) executor_.active = index;
  ++executor_stats_.plans_set;
  return ok_status();
}

void Engine::clear_plans() {
  executor_.plans.clear();
  executor_.active = -1;
  executor_.diverged = false;
  executor_.reprofile = false;
}

const Plan* Engine::active_plan() const {
  if (executor_.active < 0 || executor_.diverged) return nullptr;
  return &executor_.plans[static_cast<std::size_t>(executor_.active)].plan;
}

std::uint32_t& Engine::planned_off(std::uint32_t slot) {
  if (executor_.planned_off.size() <= slot) executor_.planned_off.resize(slot + 1, 0);
  return executor_.planned_off[slot];
}

void Engine::plan_begin_iteration() {
  executor_.diverged = false;
  executor_.run_signatures.clear();
  executor_.slot_of.clear();
  executor_.planned_off.clear();
  rebuilt_.clear();
  if (executor_.plans.empty()) {
    executor_.active = -1;
    return;
  }
  if (executor_.active < 0) executor_.active = static_cast<int>(executor_.plans.size()) - 1;
  index_plan_actions(executor_, static_cast<std::size_t>(executor_.active));
  executor_.slot_of.assign(
      executor_.plans[static_cast<std::size_t>(executor_.active)].profile.tensors.size(), kNoSlot);
  // The profiler numbers the tensors live at the start first, in slot order.
  executor_.next_unproduced = 0;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && !r.released) plan_tensor_created(slot);
  }
  // After a divergence, profile iterations until one shows the shape no plan covers.
  if (executor_.reprofile && !profiler_->recording()) profiler_->record_more(1);
}

void Engine::plan_tensor_created(std::uint32_t slot) {
  if (executor_.active < 0 || executor_.diverged) return;
  const Profile& profile = executor_.plans[static_cast<std::size_t>(executor_.active)].profile;
  // Tensors without a producer come first in a profile, in the order they appeared: the next
  // one is this tensor when the sizes agree (else the work differs, and op matching will say).
  std::size_t& next = executor_.next_unproduced;
  if (next >= profile.tensors.size() || profile.tensors[next].producer.has_value() ||
      profile.tensors[next].bytes != tensors_.at(slot).bytes) {
    return;
  }
  executor_.slot_of[next++] = slot;
}

Status Engine::plan_before_op(std::size_t op_index, std::string_view name,
                              const std::vector<std::uint32_t>& input_slots) {
  if (executor_.active < 0 || executor_.diverged) return ok_status();
  std::vector<std::size_t>& input_bytes = executor_.input_bytes;
  input_bytes.clear();
  for (std::uint32_t slot : input_slots) input_bytes.push_back(tensors_.at(slot).bytes);
  const std::uint64_t signature = op_signature(name, input_bytes);
  executor_.run_signatures.push_back(signature);
  auto& plans = executor_.plans;
  // The active plan matched every earlier op: only this one needs checking. Another plan must
  // match the whole iteration so far.
  const CachedPlan& current = plans[static_cast<std::size_t>(executor_.active)];
  if (current.signatures.size() <= op_index || current.signatures[op_index] != signature) {
    const auto matches = [&](const CachedPlan& c) {
      return c.signatures.size() > op_index &&
             std::equal(executor_.run_signatures.begin(), executor_.run_signatures.end(),
                        c.signatures.begin());
    };
    auto other = std::find_if(plans.begin(), plans.end(), matches);
    if (other == plans.end()) {
      // The loop left every plan: dynamic eviction finishes the iteration. What the plan moved
      // comes back through swap-in and recompute as usual.
      executor_.diverged = true;
      executor_.reprofile = true;
      return ok_status();
    }
    executor_.active = static_cast<int>(other - plans.begin());
    ++executor_stats_.plan_switches;
    index_plan_actions(executor_, static_cast<std::size_t>(executor_.active));
    executor_.planned_off.clear();
    // Slots seen so far keep their meaning: the two profiles agree on every op run so far.
    executor_.slot_of.resize(other->profile.tensors.size(), kNoSlot);
  }
  const CachedPlan& cached = plans[static_cast<std::size_t>(executor_.active)];
  const ProfiledOp& op = cached.profile.ops[op_index];
  for (std::size_t i = 0; i < input_slots.size(); ++i) {
    executor_.slot_of[op.inputs[i]] = input_slots[i];
    planned_off(input_slots[i]) = 0;  // read now: its planned interval (if any) is over
  }
  for (std::size_t e : executor_.prefetch_before[op_index]) {
    const Eviction& ev = cached.plan.evictions[e];
    const std::uint32_t slot = executor_.slot_of[ev.tensor];
    if (slot == kNoSlot || !tensors_.at(slot).live) continue;
    EBB_RETURN_IF_ERROR(prefetch(slot, e));
  }
  return ok_status();
}

Status Engine::prefetch(std::uint32_t slot, std::size_t eviction) {
  if (tensors_.at(slot).residency != Residency::kHost) return ok_status();
  const std::size_t bytes = tensors_.at(slot).bytes;
  prefetching_ = true;
  Result<void*> ptr = allocator_->allocate(bytes, compute_, tensors_.at(slot).name);
  prefetching_ = false;
  if (!ptr.ok()) {
    // No room yet: the swap-in at the op that reads it tries again (and reports a failure).
    if (ptr.status().code() == StatusCode::kOutOfMemory) return ok_status();
    return ptr.status();
  }
  Result<Event*> arrival = events_->acquire();
  if (!arrival.ok()) {
    (void)allocator_->free(*ptr);
    return arrival.status();
  }
  TensorRecord& r = tensors_.at(slot);
  // The copy waits for the swap-out that filled host_ptr, and for the compute work queued so far:
  // the block was freed on the compute stream and may still be read by queued ops.
  Status s = prefetch_->wait(*r.host_event);
  if (s.ok()) s = compute_.record(*r.host_event);
  if (s.ok()) s = prefetch_->wait(*r.host_event);
  if (s.ok()) s = prefetch_->copy_async(*ptr, r.host_ptr, bytes, CopyKind::kHostToDevice);
  if (s.ok()) s = prefetch_->record(*r.host_event);
  if (s.ok()) s = prefetch_->record(**arrival);
  if (!s.ok()) {
    // The copy may be queued: the block goes back after it, in prefetch-stream order.
    (void)allocator_->free(*ptr, *prefetch_);
    (void)(*arrival)->synchronize();
    events_->release(*arrival);
    return s;
  }
  r.device_ptr = *ptr;
  r.residency = Residency::kDevice;
  r.arrival_pending = true;
  r.arrival_event = *arrival;
  if (executor_.prefetched_by.size() <= slot) executor_.prefetched_by.resize(slot + 1, 0);
  executor_.prefetched_by[slot] = static_cast<std::uint32_t>(eviction + 1);
  stats_.swapped_in_bytes += static_cast<std::int64_t>(bytes);
  ++executor_stats_.prefetches;
  log_residency(slot, Residency::kDevice);
  return ok_status();
}

Status Engine::settle_arrival(std::uint32_t slot, bool for_use) {
  TensorRecord& r = tensors_.at(slot);
  if (!r.arrival_pending) return ok_status();
  Event* arrival = r.arrival_event;
  r.arrival_pending = false;
  r.arrival_event = nullptr;
  const std::uint32_t by =
      slot < executor_.prefetched_by.size() ? std::exchange(executor_.prefetched_by[slot], 0) : 0;
  if (for_use && by != 0 && executor_.active >= 0) {
    Result<Event*> ready = events_->acquire();
    if (ready.ok()) {
      if (Status s = compute_.record(**ready); !s.ok()) {
        events_->release(*ready);
        events_->release(arrival);
        return s;
      }
      arrival_waits_.push_back({*ready, arrival, executor_.active, by - 1});
      arrival = nullptr;
    }
  }
  Status s = compute_.wait(*r.host_event);
  if (arrival != nullptr) {
    (void)arrival->synchronize();
    events_->release(arrival);
  }
  return s;
}

void Engine::plan_after_op(std::size_t op_index) {
  if (executor_.active < 0 || executor_.diverged) return;
  const CachedPlan& cached = executor_.plans[static_cast<std::size_t>(executor_.active)];
  const ProfiledOp& op = cached.profile.ops[op_index];
  const OpRecord& record = tape_[op_index];
  for (std::size_t i = 0; i < op.outputs.size() && i < record.outputs.size(); ++i) {
    executor_.slot_of[op.outputs[i]] = record.outputs[i];
  }
  const auto evict_one = [&](std::uint32_t slot, EvictionMethod method) {
    if (method == EvictionMethod::kRecompute) return drop_planned(slot);
    const TensorRecord& r = tensors_.at(slot);
    if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0) return false;
    if (Status s = settle_arrival(slot, false); !s.ok()) return false;
    return swap_out(slot);
  };
  for (std::size_t e : executor_.evict_after[op_index]) {
    const Eviction& ev = cached.plan.evictions[e];
    const std::uint32_t slot = executor_.slot_of[ev.tensor];
    // Released by the program and already given back: the plan's early free came true anyway.
    if (slot == kNoSlot || !tensors_.at(slot).live ||
        tensors_.at(slot).residency == Residency::kDropped) {
      continue;
    }
    if (!evict_one(slot, ev.method)) {
      ++executor_stats_.skipped_actions;
      continue;
    }
    if (ev.method == EvictionMethod::kSwap) {
      ++executor_stats_.planned_swap_outs;
    } else {
      ++executor_stats_.planned_drops;
    }
    if (ev.needed_at.has_value()) planned_off(slot) = static_cast<std::uint32_t>(e + 1);
  }
  // A replay for this op rebuilt tensors the plan keeps off the device until later: off again.
  for (std::uint32_t slot : rebuilt_) {
    if (slot >= executor_.planned_off.size() || executor_.planned_off[slot] == 0) continue;
    if (!kept_off(slot, op_index)) {
      executor_.planned_off[slot] = 0;
      continue;
    }
    if (drop_planned(slot)) ++executor_stats_.planned_drops;
  }
  rebuilt_.clear();
}

bool Engine::kept_off(std::uint32_t slot, std::size_t op_index) const {
  if (slot >= executor_.planned_off.size() || executor_.planned_off[slot] == 0) return false;
  const CachedPlan& cached = executor_.plans[static_cast<std::size_t>(executor_.active)];
  const Eviction& ev = cached.plan.evictions[executor_.planned_off[slot] - 1];
  // Rebuilt at or after the op its eviction's prefetch_at names: the plan keeps it from there
  // (a chain replayed once, for the replays of this op and the later reads).
  return ev.method != EvictionMethod::kRecompute || op_index < ev.prefetch_at;
}

bool Engine::drop_planned(std::uint32_t slot) {
  const TensorRecord& r = tensors_.at(slot);
  if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0 || !droppable(r)) {
    return false;
  }
  std::vector<std::uint8_t> memo;
  if (!recoverable(tensors_, tape_, slot, memo)) return false;
  if (Status s = settle_arrival(slot, false); !s.ok()) return false;
  drop(slot);
  return true;
}

std::size_t Engine::drop_rebuilt_planned_off(std::size_t bytes_needed) {
  if (executor_.active < 0 || executor_.diverged || rebuilt_.empty()) return 0;
  const std::size_t op_index = tape_.size();  // the op being prepared
  std::size_t freed = 0;
  for (std::uint32_t slot : rebuilt_) {
    if (freed >= bytes_needed) break;
    if (!kept_off(slot, op_index) || tensors_.at(slot).residency != Residency::kDevice) continue;
    Result<std::size_t> block = allocator_->block_bytes(tensors_.at(slot).device_ptr);
    if (!block.ok() || !drop_planned(slot)) continue;
    ++executor_stats_.planned_drops;
    freed += *block;
  }
  return freed;
}

Status Engine::plan_end_iteration(bool ok, bool profile_completed) {
  // Late-prefetch feedback: a copy back that arrived after the compute stream asked for it
  // starts one op earlier next time.
  for (const ArrivalWait& w : arrival_waits_) {
    Result<double> late_ms = w.arrival->elapsed_ms_since(*w.ready);
    if (late_ms.ok() && *late_ms > 0 && static_cast<std::size_t>(w.plan) < executor_.plans.size()) {
      CachedPlan& cached = executor_.plans[static_cast<std::size_t>(w.plan)];
      if (w.eviction < cached.prefetch_advance.size()) {
        const Eviction& ev = cached.plan.evictions[w.eviction];
        const std::size_t room = ev.prefetch_at - (ev.evict_after + 1);
        if (cached.prefetch_advance[w.eviction] < room) ++cached.prefetch_advance[w.eviction];
        ++executor_stats_.late_prefetches;
      }
    }
    events_->release(w.ready);
    events_->release(w.arrival);
  }
  arrival_waits_.clear();
  if (executor_.active >= 0 && ok) {
    const CachedPlan& cached = executor_.plans[static_cast<std::size_t>(executor_.active)];
    if (!executor_.diverged && executor_.run_signatures.size() != cached.signatures.size()) {
      executor_.diverged = true;  // stopped short of the plan's last op
      executor_.reprofile = true;
    }
    if (executor_.diverged) {
      ++executor_stats_.diverged_iterations;
    } else {
      ++executor_stats_.planned_iterations;
    }
  }
  if (!profile_completed || !options_.planner) return ok_status();
  Result<Profile> profile = profiler_->profile();
  if (!profile.ok()) {
    ++executor_stats_.plans_refused;
    executor_stats_.last_refusal = profile.status().message();
    return ok_status();
  }
  const ProfileKey key = profile_key(*profile);
  const bool known = std::any_of(executor_.plans.begin(), executor_.plans.end(),
                                 [&](const CachedPlan& c) { return c.plan.profile == key; });
  if (known) return ok_status();  // a re-profiled iteration of a shape already planned
  executor_.reprofile = false;
  Result<Plan> plan = options_.planner(*profile);
  if (!plan.ok()) {
    ++executor_stats_.plans_refused;
    executor_stats_.last_refusal = plan.status().message();
    return ok_status();
  }
  // A refused plan is counted by set_plan; the loop goes on under dynamic eviction.
  (void)set_plan(*plan, *profile);
  return ok_status();
}

}  // namespace ebb
