// Victim selection for dynamic eviction (no profile, no plan): when the allocator cannot find
// room, the engine ranks the resident tensors it may evict and evicts the best one, ranking
// again after each drop (a drop changes what the others cost).
//
//  - recompute: tensors with a producer on the tape that are not parameters, inputs or optimizer
//    state and whose replay chain is recoverable (see recoverable() in tape.h), by DTR's
//    heuristic h = cost / (bytes x staleness), lowest first, where staleness = ticks since last
//    use + 1 and cost is the projected cost over the evicted neighbourhood (DTR's e*): the
//    tensor's producer, the producers of the dropped ancestors its replay would have to rebuild,
//    and the producers of the dropped descendants (still wanted) whose replay would now have to
//    rebuild it too, transitively through dropped tensors. Counting the descendants is what stops
//    a chain from being dropped link by link and replayed over and over;
//  - swap: any tensor whose host copy fits the host tier, most bytes per second of transfer
//    first (the largest first, since every copy crosses the same link), a tensor that already
//    has a clean host copy before all others (evicting it costs no copy), older first on ties;
//  - both: for each tensor the cheaper of a drop (the replay of it and its dropped ancestors)
//    and a swap (the copy out, unless a clean copy exists, plus the copy back, at the host link
//    bandwidth: neither is hidden behind compute, since the allocator waits for the copy out and
//    a swap-in runs on the compute stream), scored as DTR scores a drop with that cost; a drop
//    is scored with its evicted-neighbourhood cost as under recompute. A long replay chain thus
//    turns a drop into a swap.
//
// Thread safety: pure functions of the tables passed in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/runtime/engine_options.h"
#include "engine/runtime/tape.h"

namespace ebb {

// "none", "swap", "recompute", "both".
std::string_view eviction_policy_name(EvictionPolicy policy);

enum class EvictionAction : std::uint8_t { kDrop, kSwap };

struct EvictionCandidate {
  std::uint32_t slot = 0;
  EvictionAction action = EvictionAction::kDrop;
  double score = 0;  // lower is evicted first
};

struct EvictionContext {
  EvictionPolicy policy = EvictionPolicy::kNone;
  std::uint64_t tick = 0;                // the engine's current tick
  double host_link_bytes_per_s = 10e9;   // device<->host bandwidth for swap-in estimates
  std::size_t host_tier_free_bytes = 0;  // room left in the host tier for new host copies
};

// True when the tensor's kind is one the engine recomputes (not a parameter, input or optimizer
// state) and it has a producer to replay. Whether the replay can run is recoverable() (tape.h).
bool droppable(const TensorRecord& record);

class NeighbourhoodCost;

// The resident, unlocked, live tensors the policy may evict, best victim first, one at a time.
// Under recompute and both, a tensor's evicted-neighbourhood cost is walked only when a lower
// bound of its score comes first (its own producer's cost, or its swap when that is cheaper: the
// neighbourhood only adds), and the walk stops as soon as the tensor's score passes the best
// exact score known (what it counted is queued as a tighter bound), so that finding the first
// victim among thousands of resident tensors in long dropped chains walks little more than the
// victim's own neighbourhood; the order is exactly that of scoring every tensor and sorting
// (ties: the lower slot first). `readers`: tape_readers(tensors, tape)
// from a caller that ranks several times over one tape, or null to build it on the first walk.
// `lazy` false scores every tensor up front (the reference the lazy order is tested against).
// REQUIRES: the tables and `readers` outlive the ranking, and between next() calls only swaps
// change them (a drop changes its neighbours' costs: rank again).
class EvictionRanking {
 public:
  EvictionRanking(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                  const EvictionContext& context,
                  const std::vector<std::vector<std::uint32_t>>* readers = nullptr,
                  bool lazy = true);
  EvictionRanking(const EvictionRanking&) = delete;
  EvictionRanking& operator=(const EvictionRanking&) = delete;
  ~EvictionRanking();

  // The next victim; nullopt when none is left.
  std::optional<EvictionCandidate> next();

 private:
  struct Entry {
    EvictionCandidate candidate;
    bool used_now = false;
    // The heaps' order: a used_now entry after every other, then the higher score, then the
    // higher slot.
    static bool later(const Entry& a, const Entry& b);
  };

  // The tensor's exact score, or nullopt when the policy may not evict it. With a `cut`, a score
  // found to be above it may come back as a bound instead (*is_exact false), the walk stopped.
  std::optional<EvictionCandidate> exact(std::uint32_t slot, std::optional<double> cut,
                                         bool* is_exact);
  bool swappable(const TensorRecord& r) const;
  double swap_seconds(const TensorRecord& r) const;
  static double bytes_of(const TensorRecord& r);
  double staleness_of(const TensorRecord& r) const;
  void push(const EvictionCandidate& c, bool is_exact);

  const TensorTable& tensors_;
  const std::vector<OpRecord>& tape_;
  EvictionContext context_;
  bool may_drop_;
  bool may_swap_;
  std::unique_ptr<NeighbourhoodCost> costs_;
  std::vector<std::uint8_t> recoverable_memo_;
  std::vector<Entry> bounds_;  // lower bounds of scores not walked yet (or walked in part)
  std::vector<Entry> exact_;   // exact scores
};

// Every candidate of an EvictionRanking, best victim first.
std::vector<EvictionCandidate> rank_eviction_candidates(const TensorTable& tensors,
                                                        const std::vector<OpRecord>& tape,
                                                        const EvictionContext& context,
                                                        bool lazy = true);

}  // namespace ebb
