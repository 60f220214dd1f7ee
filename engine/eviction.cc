#include "engine/eviction.h"

#include <algorithm>

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
  std::vector<std::int64_t> memo;
  for (std::uint32_t slot = 0; slot < tensors.slot_count(); ++slot) {
    const TensorRecord& r = tensors.at(slot);
    if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0) continue;
    const bool clean = r.host_ptr != nullptr;
    const bool can_drop = may_drop && droppable(r);
    const bool can_swap = may_swap && (clean || r.bytes <= context.host_tier_free_bytes);
    if (!can_drop && !can_swap) continue;
    const double bytes = static_cast<double>(std::max<std::size_t>(r.bytes, 1));
    const double staleness = static_cast<double>(context.tick - r.last_access + 1);
    EvictionCandidate c{slot, can_drop ? EvictionAction::kDrop : EvictionAction::kSwap, 0};
    if (context.policy == EvictionPolicy::kSwap) {
      // Largest first; a clean copy before everything; older first among equals.
      c.score = (clean ? -1e30 : 0) - bytes - staleness / (staleness + 1);
    } else {
      const double recompute_s =
          can_drop ? static_cast<double>(recompute_cost_ns(tensors, tape, slot, memo)) * 1e-9 : 0;
      const double swap_in_s = bytes / context.host_link_bytes_per_s;
      double cost_s = recompute_s;
      if (can_swap && (!can_drop || swap_in_s < recompute_s)) {
        c.action = EvictionAction::kSwap;
        cost_s = swap_in_s;
      }
      c.score = cost_s / (bytes * staleness);
    }
    candidates.push_back(c);
  }
  std::stable_sort(
      candidates.begin(), candidates.end(),
      [](const EvictionCandidate& a, const EvictionCandidate& b) { return a.score < b.score; });
  return candidates;
}

}  // namespace ebb
