// PlanModel: the planners' own model of one profiled iteration under a set of evictions: each
// tensor's lifetime and uses, the resident-bytes curve with the evictions applied (in allocator
// block bytes), what a recompute at an op has to replay (the producer and the dropped or freed
// ancestors its replay needs: the chain), and the timeline of each host-link direction. The
// simulator (engine/planner/simulator.h) is the judge of a plan; this model is what makes planning
// fast: adding an eviction updates the curve over its interval only.
//
// Ownership: references the Profile, which must outlive it. Thread safety: not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <vector>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"

namespace ebb {

// Busy intervals of one copy engine direction, in ns from the start of the iteration.
class LinkTimeline {
 public:
  // The earliest start >= `earliest` of a free slot of `duration_ns`.
  std::int64_t earliest_slot(std::int64_t earliest, std::int64_t duration_ns) const;
  // The latest start of a free slot of `duration_ns` that ends by `deadline` and starts at or
  // after `not_before`; nullopt when there is none.
  std::optional<std::int64_t> latest_slot(std::int64_t deadline, std::int64_t not_before,
                                          std::int64_t duration_ns) const;
  // REQUIRES: [start, start + duration_ns) is free.
  void reserve(std::int64_t start, std::int64_t duration_ns);

 private:
  std::map<std::int64_t, std::int64_t> busy_;  // start -> end, disjoint
};

// The holds (Plan::holds) that the replays of `evictions` need, as PlanModel finds them adding
// the evictions in order. For plans written down from a run (dynamic eviction's, DTR's).
// REQUIRES: the evictions pass validate_plan against `profile`.
std::vector<Hold> plan_holds(const Profile& profile, const HardwareModel& hardware,
                             const std::vector<Eviction>& evictions);

class PlanModel {
 public:
  static constexpr std::int64_t kInfeasible = std::numeric_limits<std::int64_t>::max() / 4;

  // keep_rebuilt_ancestors: whether a dropped ancestor that a replay rebuilds is kept from then
  // on (the cost-aware planner) or dropped again after the replay (the baselines, which recompute
  // each tensor at its next use and nowhere else).
  // `holds`: whether a replay may read a released tensor without a producer by holding it past
  // its free (holdable()); without, such a chain is infeasible.
  PlanModel(const Profile& profile, const HardwareModel& hardware, bool keep_rebuilt_ancestors,
            bool holds = true);

  const Profile& profile() const { return profile_; }
  std::size_t ops() const { return profile_.ops.size(); }
  // The op with the most resident bytes of the profile as recorded (no evictions): where the
  // forward pass ends on a training iteration (see planner.h).
  std::size_t peak_op() const { return peak_op_; }
  // Resident block bytes right after op k, with the evictions applied.
  const std::vector<std::size_t>& live() const { return live_; }
  std::size_t block_bytes(std::size_t tensor) const { return block_bytes_[tensor]; }
  // The op after which the program frees the tensor (the last op when it never does).
  std::size_t death(std::size_t tensor) const { return death_[tensor]; }
  // The producer (0 for a tensor that exists before the iteration) and the accesses, sorted.
  const std::vector<std::size_t>& uses(std::size_t tensor) const { return uses_[tensor]; }
  // Start time of op k on the compute stream, ignoring waits; start(ops()) is the base time.
  std::int64_t start_ns(std::size_t op) const { return start_ns_[op]; }
  // Whether the tensor's bytes are on the device for op k (alive and not evicted there).
  bool resident_at(std::size_t tensor, std::size_t op) const;
  // Whether some eviction of the tensor covers op k (between its evict_after and needed_at).
  bool evicted_at(std::size_t tensor, std::size_t op) const;

  // The compute a recompute of `tensor` right before op `at` would replay (its producer and,
  // recursively, the producers of its inputs that are not resident then), or kInfeasible when
  // the chain reaches a tensor that cannot be recomputed or is swapped out. `replays` gets the
  // number of producers replayed.
  std::int64_t chain_cost_ns(std::size_t tensor, std::size_t at, std::int64_t* replays) const;
  // A recompute eviction of `tensor` after op `after`, next read by op `needed`: the op before
  // which it is rebuilt (the first planned replay inside the gap that reads it, else `needed`;
  // ops() when never needed again) and what it adds to the plan's replay compute: its chain
  // there, or for a tensor never read again, one chain per planned replay that reads it.
  struct RecomputeTiming {
    std::size_t rebuild_at = 0;
    std::int64_t cost_ns = 0;  // kInfeasible when the chain cannot be replayed
  };
  RecomputeTiming recompute_timing(std::size_t tensor, std::size_t after,
                                   std::optional<std::size_t> needed) const;
  // How many planned replays inside (after, needed) read the tensor.
  std::size_t replay_reads_inside(std::size_t tensor, std::size_t after,
                                  std::optional<std::size_t> needed) const;

  // A swap of `tensor` after op `after`, back for op `needed`: when the copy out ends, from which
  // op its bytes are off the device, when the copy back must start (prefetch_at) and how late it
  // ends (0 when hidden). Reads the link timelines without reserving.
  struct SwapTiming {
    std::size_t free_from = 0;    // first op without its bytes
    std::int64_t stall_ns = 0;    // how long op free_from waits for the copy out to end
    std::size_t prefetch_at = 0;  // op before which the copy back starts
    std::int64_t late_ns = 0;     // how long op `needed` would wait
    std::int64_t out_start_ns = 0;
    std::int64_t in_start_ns = 0;
    std::int64_t copy_ns = 0;  // the two copies' link time
  };
  // `by_op` is the op the swap is meant to relieve: when the copy out ends after it starts, the
  // allocator waits for it there (stall_ns) and the bytes are off from by_op.
  SwapTiming swap_timing(std::size_t tensor, std::size_t after, std::size_t needed,
                         std::size_t by_op) const;

  // Adds an eviction and updates the curve, the replay bookkeeping and the link timelines. A swap
  // is off the device from the first op after its copy out ends, or from `swap_off_by` at the
  // latest (that op waits for the copy: counted as lateness).
  // REQUIRES: it satisfies validate_plan's rules against the evictions already added.
  void add(const Eviction& eviction,
           std::size_t swap_off_by = std::numeric_limits<std::size_t>::max());
  const std::vector<Eviction>& evictions() const { return evictions_; }
  // Evictions sorted by (evict_after, tensor), as Plan::evictions.
  std::vector<Eviction> sorted_evictions() const;

  // The released tensors the planned replays read, each held on the device until the last such
  // replay (Plan::holds), sorted by tensor.
  std::vector<Hold> holds() const;

  // The plan's figures as this model predicts them: peak resident bytes, replays and their
  // compute, swapped bytes, and a step time of base + replays + prefetch lateness.
  PlanPrediction predict() const;

 private:
  // Interval of one eviction, in op indices: the bytes are off the device for ops in
  // [off_from, off_to).
  struct Interval {
    std::size_t off_from = 0;
    std::size_t off_to = 0;
    std::size_t evict_after = 0;
    std::size_t needed = 0;  // ops() when never needed again
    EvictionMethod method = EvictionMethod::kRecompute;
    std::size_t eviction = 0;  // index in evictions_
  };
  const Interval* interval_at(std::size_t tensor, std::size_t op) const;
  // Whether a replay before op `at` that rebuilds `rebuilt` can read `tensor` by holding it past
  // the program's free: holds are allowed, it has no producer (nothing rebuilds it), the program
  // freed it before `at`, no eviction took it off the device over its free, and it is no larger
  // than `rebuilt` (a hold larger than what the drop saves is not worth it).
  bool holdable(std::size_t tensor, std::size_t at, std::size_t rebuilt) const;
  // The last op for which the tensor's bytes are kept: its death, or a hold's end.
  std::size_t kept_until(std::size_t tensor) const {
    return std::max(death_[tensor], held_to_[tensor]);
  }
  // Records that the replay of `tensor`'s producer before op `at` reads its inputs, and rebuilds
  // the inputs that are not resident then: a dropped one that is needed again later is rebuilt
  // there and kept (its eviction now ends at `at`, prefetch_at), so that the chain is replayed
  // once; one the program has freed is rebuilt for the replay only.
  void rebuild_chain(std::size_t tensor, std::size_t at, std::vector<std::size_t>& seen);
  std::int64_t chain(std::size_t tensor, std::size_t at, std::vector<std::size_t>& seen,
                     std::int64_t* replays) const;
  std::int64_t in_ns(std::size_t bytes) const;
  std::int64_t out_ns(std::size_t bytes) const;
  // One NVMe request of `bytes` at `bytes_per_s` (the link latency included: the bytes cross it).
  std::int64_t nvme_ns(std::size_t bytes, double bytes_per_s) const;
  // add() for a swap to the NVMe tier: the write is waited for, the read queued by its deadline.
  void add_nvme_swap(const Eviction& e, Interval& i);

  const Profile& profile_;
  HardwareModel hardware_;
  bool keep_rebuilt_ancestors_ = false;
  bool holds_allowed_ = true;
  std::size_t peak_op_ = 0;
  std::vector<std::size_t> block_bytes_;
  std::vector<std::size_t> death_;
  std::vector<bool> program_frees_;   // per tensor: some op frees it
  std::vector<std::size_t> held_to_;  // per tensor: a hold's last op, 0 when not held
  std::vector<std::vector<std::size_t>> uses_;
  std::vector<std::int64_t> start_ns_;
  std::vector<std::size_t> live_;
  std::vector<std::vector<Interval>> intervals_;  // per tensor, sorted
  // Per tensor, the ops before which a planned replay reads it (sorted, may repeat).
  std::vector<std::vector<std::size_t>> replay_reads_;
  std::vector<Eviction> evictions_;
  LinkTimeline to_device_;
  LinkTimeline to_host_;  // unused when the link is not duplex: both directions use to_device_
  LinkTimeline nvme_;     // the transfer engine's I/O thread: NVMe writes and reads, in turn
  std::int64_t late_ns_ = 0;
};

}  // namespace ebb
