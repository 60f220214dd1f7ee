#include "engine/residency/eviction.h"

#include <algorithm>
#include <optional>

namespace ebb {

std::string_view eviction_policy_name(EvictionPolicy policy) {
  switch (policy) {
    case EvictionPolicy::kNone:
      return "none";
    case EvictionPolicy::kSwap:
      return "swap";
    case EvictionPolicy::kRecompute:
      return "recompute";
    case EvictionPolicy::kBoth:
      return "both";
  }
  return "unknown";
}

namespace {

// The projected costs of the resident tensors on one pair of tables: the reverse edges of the
// tape (which ops read each tensor) and scratch marks, built once per ranking.
class NeighbourhoodCost {
 public:
  NeighbourhoodCost(const TensorTable& tensors, const std::vector<OpRecord>& tape)
      : tensors_(tensors),
        tape_(tape),
        readers_(tape_readers(tensors, tape)),
        wanted_(replay_inputs(tensors, tape)),
        seen_op_(tape.size(), 0) {}

  // The producers' cost (ns) of `slot` and of the dropped tensors connected to it through
  // dropped tensors: ancestors its replay reads, and wanted descendants whose replay reads it.
  // With `ancestors_only`, what bringing `slot` back by replay costs. REQUIRES: a producer.
  std::int64_t cost_ns(std::uint32_t slot, bool ancestors_only) {
    ++epoch_;
    std::int64_t cost = 0;
    pending_.assign(1, slot);
    while (!pending_.empty()) {
      const std::uint32_t s = pending_.back();
      pending_.pop_back();
      const TensorRecord& r = tensors_.at(s);
      const auto producer = static_cast<std::size_t>(r.producer);
      if (seen_op_[producer] != epoch_) {
        seen_op_[producer] = epoch_;
        cost += tape_[producer].cost_ns;
        for (std::uint32_t input : tape_[producer].inputs) {
          const TensorRecord& in = tensors_.at(input);
          if (in.residency == Residency::kDropped && in.has_producer()) pending_.push_back(input);
        }
      }
      if (ancestors_only) continue;
      for (std::uint32_t op : readers_[s]) {
        if (seen_op_[op] == epoch_) continue;
        for (std::uint32_t out : tape_[op].outputs) {
          if (wanted_dropped(out)) pending_.push_back(out);
        }
      }
    }
    return cost;
  }

 private:
  // A dropped tensor some replay will rebuild: live and not released, or read by such a replay.
  bool wanted_dropped(std::uint32_t slot) const {
    const TensorRecord& r = tensors_.at(slot);
    return r.live && r.residency == Residency::kDropped && r.has_producer() &&
           (!r.released || wanted_[slot]);
  }

  const TensorTable& tensors_;
  const std::vector<OpRecord>& tape_;
  std::vector<std::vector<std::uint32_t>> readers_;
  std::vector<bool> wanted_;
  std::vector<std::uint32_t> seen_op_;  // epoch_ of the traversal that counted the op
  std::uint32_t epoch_ = 0;
  std::vector<std::uint32_t> pending_;
};

}  // namespace

bool droppable(const TensorRecord& record) {
  return record.has_producer() && record.kind != TensorKind::kParameter &&
         record.kind != TensorKind::kInput && record.kind != TensorKind::kOptimizerState;
}

std::vector<EvictionCandidate> rank_eviction_candidates(const TensorTable& tensors,
                                                        const std::vector<OpRecord>& tape,
                                                        const EvictionContext& context) {
  std::vector<EvictionCandidate> candidates;
  if (context.policy == EvictionPolicy::kNone) return candidates;
  const bool may_drop =
      context.policy == EvictionPolicy::kRecompute || context.policy == EvictionPolicy::kBoth;
  const bool may_swap =
      context.policy == EvictionPolicy::kSwap || context.policy == EvictionPolicy::kBoth;
  std::optional<NeighbourhoodCost> costs;
  if (may_drop) costs.emplace(tensors, tape);
  std::vector<std::uint8_t> recoverable_memo;
  for (std::uint32_t slot = 0; slot < tensors.slot_count(); ++slot) {
    const TensorRecord& r = tensors.at(slot);
    if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0) continue;
    const bool clean = r.host_ptr != nullptr;
    const bool can_drop =
        may_drop && droppable(r) && recoverable(tensors, tape, slot, recoverable_memo);
    const bool can_swap = may_swap && (clean || r.bytes <= context.host_tier_free_bytes);
    if (!can_drop && !can_swap) continue;
    const double bytes = static_cast<double>(std::max<std::size_t>(r.bytes, 1));
    const double staleness = static_cast<double>(context.tick - r.last_access + 1);
    EvictionCandidate c{slot, can_drop ? EvictionAction::kDrop : EvictionAction::kSwap, 0};
    if (context.policy == EvictionPolicy::kSwap) {
      // Largest first; a clean copy before everything; older first among equals.
      c.score = (clean ? -1e30 : 0) - bytes - staleness / (staleness + 1);
      candidates.push_back(c);
      continue;
    }
    double cost_s = 0;
    if (can_drop) cost_s = static_cast<double>(costs->cost_ns(slot, false)) * 1e-9;
    if (can_swap) {
      const double copy_s = bytes / context.host_link_bytes_per_s;
      const double swap_s = (clean ? 0 : copy_s) + copy_s;
      const double replay_s = can_drop ? static_cast<double>(costs->cost_ns(slot, true)) * 1e-9 : 0;
      if (!can_drop || swap_s < replay_s) {
        c.action = EvictionAction::kSwap;
        cost_s = swap_s;
      }
    }
    c.score = cost_s / (bytes * staleness);
    candidates.push_back(c);
  }
  // Under recompute or both, a tensor used during the current tick (by the op being prepared
  // or a replay for it) goes last: the op's other inputs are often rebuilt from it next, and
  // evicting it would replay the same producers again and again within one op.
  auto used_now = [&](const EvictionCandidate& c) {
    return may_drop && tensors.at(c.slot).last_access >= context.tick;
  };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const EvictionCandidate& a, const EvictionCandidate& b) {
                     const bool a_now = used_now(a);
                     const bool b_now = used_now(b);
                     if (a_now != b_now) return b_now;
                     return a.score < b.score;
                   });
  return candidates;
}

}  // namespace ebb
