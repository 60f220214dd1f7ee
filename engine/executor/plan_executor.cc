#include "engine/executor/plan_executor.h"

#include <algorithm>
#include <tuple>
#include <utility>

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

PlanExecutor::PlanExecutor(const EngineOptions& options, TensorTable& tensors, Tape& tape,
                           Pager& pager, Profiler& profiler)
    : options_(options), tensors_(tensors), tape_(tape), pager_(pager), profiler_(profiler) {}

void PlanExecutor::index_actions(std::size_t index) {
  const CachedPlan& cached = plans_[index];
  const std::size_t ops = cached.profile.ops.size();
  for (auto* lists : {&prefetch_before_, &evict_after_}) {
    lists->resize(ops);
    for (std::vector<std::size_t>& list : *lists) list.clear();
  }
  for (std::size_t e = 0; e < cached.plan.evictions.size(); ++e) {
    const Eviction& ev = cached.plan.evictions[e];
    evict_after_[ev.evict_after].push_back(e);
    if (ev.method != EvictionMethod::kSwap || !ev.needed_at.has_value()) continue;
    const std::size_t earliest = ev.evict_after + 1;
    const std::size_t advance = cached.prefetch_advance[e];
    const std::size_t at =
        ev.prefetch_at >= earliest + advance ? ev.prefetch_at - advance : earliest;
    prefetch_before_[at].push_back(e);
  }
  hold_until_.assign(cached.profile.tensors.size(), 0);
  hold_ends_.resize(ops);
  for (std::vector<std::size_t>& list : hold_ends_) list.clear();
  for (const Hold& h : cached.plan.holds) {
    hold_until_[h.tensor] = h.until;
    hold_ends_[h.until].push_back(h.tensor);
  }
  // Of the copies back asked for at one op, the one needed first is asked for first: when the
  // lane has room for only some, they are the most urgent (the lane's queue orders the rest).
  const auto& evictions = cached.plan.evictions;
  for (std::vector<std::size_t>& list : prefetch_before_) {
    std::sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
      return std::tie(*evictions[a].needed_at, a) < std::tie(*evictions[b].needed_at, b);
    });
  }
}

Status PlanExecutor::set_plan(const Plan& plan, const Profile& profile, std::size_t budget_bytes,
                              bool in_iteration) {
  const auto refuse = [this](Status s) {
    ++stats_.plans_refused;
    stats_.last_refusal = s.message();
    return s;
  };
  if (Status s = validate_profile(profile, "set_plan: profile"); !s.ok()) return refuse(s);
  if (Status s = validate_plan(plan, profile, "set_plan: plan"); !s.ok()) return refuse(s);
  if (plan.budget_bytes > budget_bytes) {
    return refuse(invalid_argument(
        "set_plan: plan.budget_bytes: the plan was made for a budget of " +
        std::to_string(plan.budget_bytes) + " bytes, above the engine's budget of " +
        std::to_string(budget_bytes) + " bytes"));
  }
  for (const Eviction& ev : plan.evictions) {
    if (ev.method == EvictionMethod::kSwap && ev.tier == OffloadTier::kNvme &&
        pager_.nvme_tier() == nullptr) {
      return refuse(invalid_argument(
          "set_plan: plan.evictions: tensor " + std::to_string(ev.tensor) +
          " is swapped to tier nvme, which this engine does not have (no nvme_directories)"));
    }
  }
  CachedPlan cached{plan, profile, profile_op_signatures(profile),
                    std::vector<std::size_t>(plan.evictions.size(), 0)};
  auto same = std::find_if(plans_.begin(), plans_.end(),
                           [&](const CachedPlan& c) { return c.plan.profile == plan.profile; });
  int index = 0;
  if (same != plans_.end()) {
    *same = std::move(cached);
    index = static_cast<int>(same - plans_.begin());
  } else {
    plans_.push_back(std::move(cached));
    index = static_cast<int>(plans_.size()) - 1;
  }
  // The iteration in flight keeps what it follows; the next one starts from the newest plan.
  if (!in_iteration) active_ = index;
  ++stats_.plans_set;
  pager_.follow_plans(true, this);
  return ok_status();
}

void PlanExecutor::clear_plans() {
  plans_.clear();
  active_ = -1;
  diverged_ = false;
  reprofile_ = false;
  pager_.end_holds();
  pager_.follow_plans(false, nullptr);
}

const Plan* PlanExecutor::active_plan() const { return following() ? &active().plan : nullptr; }

std::uint32_t& PlanExecutor::planned_off(std::uint32_t slot) {
  if (planned_off_.size() <= slot) planned_off_.resize(slot + 1, 0);
  return planned_off_[slot];
}

void PlanExecutor::begin_iteration() {
  diverged_ = false;
  run_signatures_.clear();
  slot_of_.clear();
  planned_off_.clear();
  prefetch_ids_.clear();
  pager_.clear_rebuilt();
  pager_.end_holds();
  if (plans_.empty()) {
    active_ = -1;
    return;
  }
  if (active_ < 0) active_ = static_cast<int>(plans_.size()) - 1;
  index_actions(static_cast<std::size_t>(active_));
  slot_of_.assign(active().profile.tensors.size(), kNoSlot);
  // The profiler numbers the tensors live at the start first, in slot order.
  next_unproduced_ = 0;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && !r.released && !r.is_view()) tensor_created(slot);
  }
  // After a divergence, profile iterations until one shows the shape no plan covers.
  if (reprofile_ && !profiler_.recording()) profiler_.record_more(1);
}

void PlanExecutor::tensor_created(std::uint32_t slot) {
  if (!following()) return;
  const Profile& profile = active().profile;
  // Tensors without a producer come first in a profile, in the order they appeared: the next
  // one is this tensor when the sizes agree (else the work differs, and op matching will say).
  if (next_unproduced_ >= profile.tensors.size() ||
      profile.tensors[next_unproduced_].producer.has_value() ||
      profile.tensors[next_unproduced_].bytes != tensors_.at(slot).bytes) {
    return;
  }
  slot_of_[next_unproduced_++] = slot;
}

Status PlanExecutor::before_op(std::size_t op_index, std::string_view name,
                               const std::vector<std::uint32_t>& input_slots) {
  if (!following()) return ok_status();
  input_bytes_.clear();
  for (std::uint32_t slot : input_slots) input_bytes_.push_back(tensors_.at(slot).bytes);
  const std::uint64_t signature = op_signature(name, input_bytes_);
  run_signatures_.push_back(signature);
  // The active plan matched every earlier op: only this one needs checking. Another plan must
  // match the whole iteration so far.
  const CachedPlan& current = active();
  if (current.signatures.size() <= op_index || current.signatures[op_index] != signature) {
    const auto matches = [&](const CachedPlan& c) {
      return c.signatures.size() > op_index &&
             std::equal(run_signatures_.begin(), run_signatures_.end(), c.signatures.begin());
    };
    auto other = std::find_if(plans_.begin(), plans_.end(), matches);
    if (other == plans_.end()) {
      // The loop left every plan: dynamic eviction finishes the iteration. What the plan moved
      // comes back through copy back and replay as usual.
      diverged_ = true;
      reprofile_ = true;
      pager_.end_holds();
      return ok_status();
    }
    active_ = static_cast<int>(other - plans_.begin());
    ++stats_.plan_switches;
    index_actions(static_cast<std::size_t>(active_));
    planned_off_.clear();
    // Slots seen so far keep their meaning: the two profiles agree on every op run so far.
    slot_of_.resize(other->profile.tensors.size(), kNoSlot);
    // The holds are the new plan's from here.
    pager_.end_holds();
    for (const Hold& h : other->plan.holds) {
      if (h.until >= op_index && slot_of_[h.tensor] != kNoSlot) pager_.hold(slot_of_[h.tensor]);
    }
  }
  const CachedPlan& cached = active();
  const ProfiledOp& op = cached.profile.ops[op_index];
  for (std::size_t i = 0; i < input_slots.size(); ++i) {
    slot_of_[op.inputs[i]] = input_slots[i];
    planned_off(input_slots[i]) = 0;  // read now: its planned interval (if any) is over
    // Kept past the program's release for replays up to its hold's end (after_op ends it).
    if (hold_until_[op.inputs[i]] > op_index) pager_.hold(input_slots[i]);
  }
  for (std::size_t e : prefetch_before_[op_index]) {
    const Eviction& ev = cached.plan.evictions[e];
    const std::uint32_t slot = slot_of_[ev.tensor];
    if (slot == kNoSlot || !tensors_.at(slot).live) continue;
    const Residency where = tensors_.at(slot).residency;
    if (where != Residency::kHost && where != Residency::kNvme) continue;
    prefetch_ids_.emplace_back(active_, e);
    const auto id = static_cast<std::uint32_t>(prefetch_ids_.size());
    const TransferDeadline deadline{.op_index = static_cast<std::int64_t>(*ev.needed_at)};
    EBB_ASSIGN_OR_RETURN(bool started, pager_.prefetch(slot, deadline, id));
    if (started) ++stats_.prefetches;
  }
  return ok_status();
}

void PlanExecutor::after_op(std::size_t op_index) {
  if (!following()) {
    pager_.clear_rebuilt();
    return;
  }
  const CachedPlan& cached = active();
  const ProfiledOp& op = cached.profile.ops[op_index];
  const OpRecord& record = tape_[op_index];
  for (std::size_t i = 0; i < op.outputs.size() && i < record.outputs.size(); ++i) {
    slot_of_[op.outputs[i]] = record.outputs[i];
  }
  for (std::size_t e : evict_after_[op_index]) {
    const Eviction& ev = cached.plan.evictions[e];
    const std::uint32_t slot = slot_of_[ev.tensor];
    // Released by the program and already given back: the plan's early free came true anyway.
    if (slot == kNoSlot || !tensors_.at(slot).live ||
        tensors_.at(slot).residency == Residency::kDropped) {
      continue;
    }
    bool moved = false;
    if (ev.method == EvictionMethod::kRecompute) {
      moved = pager_.drop_recoverable(slot);
    } else {
      moved = ev.tier == OffloadTier::kNvme ? pager_.swap_out_to_nvme(slot) : pager_.swap_out(slot);
    }
    if (!moved) {
      ++stats_.skipped_actions;
      continue;
    }
    ++(ev.method == EvictionMethod::kSwap ? stats_.planned_swap_outs : stats_.planned_drops);
    if (ev.needed_at.has_value()) planned_off(slot) = static_cast<std::uint32_t>(e + 1);
  }
  for (std::size_t t : hold_ends_[op_index]) {
    if (slot_of_[t] != kNoSlot) pager_.end_hold(slot_of_[t]);
  }
  // A replay for this op rebuilt tensors the plan keeps off the device until later: off again.
  for (std::uint32_t slot : pager_.rebuilt()) {
    if (slot >= planned_off_.size() || planned_off_[slot] == 0) continue;
    if (!kept_off(slot, op_index)) {
      planned_off_[slot] = 0;
      continue;
    }
    if (pager_.drop_recoverable(slot)) ++stats_.planned_drops;
  }
  pager_.clear_rebuilt();
}

bool PlanExecutor::kept_off(std::uint32_t slot, std::size_t op_index) const {
  if (slot >= planned_off_.size() || planned_off_[slot] == 0) return false;
  const Eviction& ev = active().plan.evictions[planned_off_[slot] - 1];
  // Rebuilt at or after the op its eviction's prefetch_at names: the plan keeps it from there
  // (a chain replayed once, for the replays of this op and the later reads).
  return ev.method != EvictionMethod::kRecompute || op_index < ev.prefetch_at;
}

std::size_t PlanExecutor::make_room(std::size_t bytes_needed) {
  if (!following() || pager_.rebuilt().empty()) return 0;
  const std::size_t op_index = tape_.size();  // the op being prepared
  std::size_t freed = 0;
  // Copied: a drop does not touch rebuilt(), but the list is the pager's.
  const std::vector<std::uint32_t> rebuilt = pager_.rebuilt();
  for (std::uint32_t slot : rebuilt) {
    if (freed >= bytes_needed) break;
    const TensorRecord& r = tensors_.at(slot);
    if (!kept_off(slot, op_index) || r.residency != Residency::kDevice) continue;
    Result<std::size_t> block = pager_.allocator().block_bytes(r.device_ptr);
    if (!block.ok() || !pager_.drop_recoverable(slot)) continue;
    ++stats_.planned_drops;
    freed += *block;
  }
  return freed;
}

void PlanExecutor::evicted_dynamically(std::int64_t tensors) {
  if (following()) stats_.fallback_evictions += tensors;
}

Status PlanExecutor::end_iteration(bool ok, bool profile_completed) {
  // Late-prefetch feedback: a copy back that arrived after the compute stream asked for it
  // starts one op earlier next time.
  for (std::uint32_t id : pager_.take_late_prefetches()) {
    if (id == 0 || id > prefetch_ids_.size()) continue;
    const auto [plan, eviction] = prefetch_ids_[id - 1];
    if (plan < 0 || static_cast<std::size_t>(plan) >= plans_.size()) continue;
    CachedPlan& cached = plans_[static_cast<std::size_t>(plan)];
    if (eviction >= cached.prefetch_advance.size()) continue;
    const Eviction& ev = cached.plan.evictions[eviction];
    const std::size_t room = ev.prefetch_at - (ev.evict_after + 1);
    if (cached.prefetch_advance[eviction] < room) ++cached.prefetch_advance[eviction];
    ++stats_.late_prefetches;
  }
  prefetch_ids_.clear();
  if (active_ >= 0 && ok) {
    if (!diverged_ && run_signatures_.size() != active().signatures.size()) {
      diverged_ = true;  // stopped short of the plan's last op
      reprofile_ = true;
    }
    ++(diverged_ ? stats_.diverged_iterations : stats_.planned_iterations);
  }
  if (!profile_completed || !options_.planner) return ok_status();
  Result<Profile> profile = profiler_.profile();
  if (!profile.ok()) {
    ++stats_.plans_refused;
    stats_.last_refusal = profile.status().message();
    return ok_status();
  }
  const ProfileKey key = profile_key(*profile);
  const bool known = std::any_of(plans_.begin(), plans_.end(),
                                 [&](const CachedPlan& c) { return c.plan.profile == key; });
  if (known) return ok_status();  // a re-profiled iteration of a shape already planned
  reprofile_ = false;
  Result<Plan> plan = options_.planner(*profile);
  if (!plan.ok()) {
    ++stats_.plans_refused;
    stats_.last_refusal = plan.status().message();
    return ok_status();
  }
  // A refused plan is counted by set_plan; the loop goes on under dynamic eviction.
  (void)set_plan(*plan, *profile, pager_.allocator().budget_bytes(), /*in_iteration=*/false);
  return ok_status();
}

}  // namespace ebb
