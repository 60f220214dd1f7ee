// The baseline planners: recompute-all, sqrt (Chen et al. 2016) and swap-all (vDNN).
#include <algorithm>
#include <cmath>
#include <optional>

#include "engine/planner/planner_policies.h"

namespace ebb {
namespace {

// The last use of `tensor` in the forward pass (at or before the peak op) and its next access
// after that, for a forward activation that outlives its last forward use; nullopt otherwise.
struct ForwardGap {
  std::size_t last_forward_use = 0;
  std::optional<std::size_t> next_use;
};
std::optional<ForwardGap> forward_gap(const PlanModel& model, const ProfiledTensor& t) {
  if (t.kind != TensorKind::kActivation || !t.producer.has_value() ||
      *t.producer > model.peak_op()) {
    return std::nullopt;
  }
  const std::vector<std::size_t>& uses = model.uses(t.id);
  auto after = std::upper_bound(uses.begin(), uses.end(), model.peak_op());
  ForwardGap gap;
  gap.last_forward_use = *std::prev(after);
  if (gap.last_forward_use >= model.death(t.id)) return std::nullopt;
  if (after != uses.end()) gap.next_use = *after;
  // Read again by the very next op: there is no op to evict it over.
  if (gap.next_use == gap.last_forward_use + 1) return std::nullopt;
  return gap;
}

}  // namespace

void add_recompute_all(PlanModel& model, bool sqrt_checkpoints) {
  const std::size_t forward_ops = model.peak_op() + 1;
  const auto segment =
      static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(forward_ops))));
  for (const ProfiledTensor& t : model.profile().tensors) {
    if (!t.recomputable()) continue;
    std::optional<ForwardGap> gap = forward_gap(model, t);
    if (!gap.has_value()) continue;
    // A checkpoint: an output of the last op of a segment of the forward pass.
    if (sqrt_checkpoints && gap->next_use.has_value() && (*t.producer + 1) % segment == 0) {
      continue;
    }
    Eviction e;
    e.tensor = t.id;
    e.method = EvictionMethod::kRecompute;
    e.evict_after = gap->last_forward_use;
    e.needed_at = gap->next_use;
    e.prefetch_at = gap->next_use.value_or(gap->last_forward_use);
    model.add(e);
  }
}

void add_swap_all(PlanModel& model) {
  for (const ProfiledTensor& t : model.profile().tensors) {
    std::optional<ForwardGap> gap = forward_gap(model, t);
    if (!gap.has_value()) continue;
    Eviction e;
    e.tensor = t.id;
    e.evict_after = gap->last_forward_use;
    e.needed_at = gap->next_use;
    if (gap->next_use.has_value()) {
      e.method = EvictionMethod::kSwap;
      e.tier = OffloadTier::kHost;
      e.prefetch_at = std::max(gap->last_forward_use + 1, *gap->next_use - 1);
    } else if (t.recomputable()) {
      // Never read again: given up at no cost, nothing to copy.
      e.method = EvictionMethod::kRecompute;
      e.prefetch_at = gap->last_forward_use;
    } else {
      continue;
    }
    model.add(e);
  }
}

}  // namespace ebb
