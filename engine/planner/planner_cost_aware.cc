// The cost-aware planner (policy `plan`): evict only what pushes the peak over the target, at
// the least cost per byte-op of over-target memory relieved.
//
// Each step takes the op with the most resident bytes. Its candidates are the tensors resident
// there that it does not touch: each can give up its bytes over the gap between its use before
// that op and its next use after it (to its free when nothing reads it again: free, since no
// replay is needed). A candidate is scored bytes x (over-target ops the gap covers) / cost:
//  - recompute: the replay of its producer and of the producers of every ancestor that is not
//    resident at the next use (a chain), plus one more such replay for every replay already
//    planned inside the gap that reads it (dropping it makes those chains longer);
//  - swap (with a host link): the copy out is placed on the device-to-host link's timeline
//    after the use before, the copy back on the host-to-device timeline as late as still ends
//    before the next use (one timeline for both when the link is not duplex); the cost is the
//    part of the copy back that cannot be hidden (the next use waits), plus a tenth of the copy
//    times, so that link time is not spent where a free drop would do. The bytes count as gone
//    only from the first op that starts after the copy out ends.
// The best candidate is applied, which updates the resident-bytes curve over its gap only. With
// SwapUse::kHiddenFirst a candidate that costs no time (a swap nothing waits for, a release of a
// tensor not read again) is applied before any other, whatever the scores.
#include <algorithm>
#include <vector>

#include "engine/planner/planner_policies.h"

namespace ebb {

bool add_cost_aware(PlanModel& model, std::size_t target_bytes, SwapUse swaps) {
  const bool allow_swap = swaps != SwapUse::kNone;
  const bool hidden_first = swaps == SwapUse::kHiddenFirst;
  const Profile& profile = model.profile();
  const std::size_t ops = model.ops();
  std::vector<std::uint32_t> over(ops + 1, 0);  // over[k]: over-target ops before op k
  while (ops > 0) {
    const std::vector<std::size_t>& live = model.live();
    const auto worst =
        static_cast<std::size_t>(std::max_element(live.begin(), live.end()) - live.begin());
    if (live[worst] <= target_bytes) return true;
    for (std::size_t k = 0; k < ops; ++k) over[k + 1] = over[k] + (live[k] > target_bytes ? 1 : 0);
    auto covered = [&](std::size_t from, std::size_t to) -> double {
      to = std::min(to, ops);
      return from < to ? static_cast<double>(over[to] - over[from]) : 0.0;
    };

    double best_score = 0;
    std::optional<Eviction> best;
    std::size_t best_swap_off_by = 0;
    // kHiddenFirst: the best of the candidates that cost no time.
    double free_score = 0;
    std::optional<Eviction> best_free;
    std::size_t free_swap_off_by = 0;
    for (const ProfiledTensor& t : profile.tensors) {
      if (!allow_swap && !t.recomputable()) continue;
      if (t.producer.value_or(0) > worst || model.death(t.id) < worst) continue;
      if (!model.resident_at(t.id, worst) || model.evicted_at(t.id, worst)) continue;
      const std::vector<std::size_t>& uses = model.uses(t.id);
      auto next = std::lower_bound(uses.begin(), uses.end(), worst);
      if (next != uses.end() && *next == worst) continue;  // the op reads or writes it
      if (next == uses.begin() && worst == 0) continue;
      const std::size_t after = next == uses.begin() ? 0 : *std::prev(next);
      const std::optional<std::size_t> needed =
          next == uses.end() ? std::nullopt : std::optional<std::size_t>(*next);
      const auto bytes = static_cast<double>(model.block_bytes(t.id));

      // The producer alone bounds a replay's cost from below (for a gap with a next use): a
      // candidate that cannot beat the best with it is not walked.
      const bool may_beat = t.recomputable() &&
                            (!needed.has_value() ||
                             bytes * covered(after + 1, *needed) /
                                     static_cast<double>(profile.ops[*t.producer].duration_ns + 1) >
                                 best_score);
      if (may_beat) {
        const PlanModel::RecomputeTiming r = model.recompute_timing(t.id, after, needed);
        const std::size_t off_to = needed ? r.rebuild_at : model.death(t.id) + 1;
        const double score =
            bytes * covered(after + 1, off_to) / static_cast<double>(r.cost_ns + 1);
        const Eviction e{t.id,  EvictionMethod::kRecompute,    OffloadTier::kHost,
                         after, needed ? r.rebuild_at : after, needed};
        if (r.cost_ns < PlanModel::kInfeasible && score > best_score) {
          best_score = score;
          best = e;
        }
        if (hidden_first && r.cost_ns == 0 && score > free_score) {
          free_score = score;
          best_free = e;
        }
      }
      if (allow_swap && needed.has_value() && model.replay_reads_inside(t.id, after, needed) == 0) {
        const double upper = bytes * covered(after + 1, *needed);
        if (upper <= (hidden_first ? free_score : best_score)) continue;
        const PlanModel::SwapTiming s = model.swap_timing(t.id, after, *needed, worst);
        const std::int64_t cost = s.late_ns + s.stall_ns + s.copy_ns / 10;
        const double score =
            bytes * covered(s.free_from, s.prefetch_at) / static_cast<double>(cost + 1);
        const Eviction e{t.id,  EvictionMethod::kSwap, OffloadTier::kHost,
                         after, s.prefetch_at,         needed};
        if (score > best_score) {
          best_score = score;
          best = e;
          best_swap_off_by = s.free_from;
        }
        if (hidden_first && s.late_ns + s.stall_ns == 0 && s.free_from < s.prefetch_at &&
            score > free_score) {
          free_score = score;
          best_free = e;
          free_swap_off_by = s.free_from;
        }
      }
    }
    if (best_free.has_value()) {
      model.add(*best_free, free_swap_off_by);
      continue;
    }
    if (!best.has_value()) return false;
    model.add(*best, best_swap_off_by);
  }
  return true;
}

}  // namespace ebb
