// The two engines behind plan_arena (arena_plan.h): greedy placements and a complete
// branch-and-bound search. Internal to the allocator; callers use plan_arena.
//
// The search decides whether the buffers fit in a given capacity. It explores only canonical
// solutions, after MiniMalloc (Moffitt, ASPLOS 2023): every buffer rests at offset 0 or on top
// of a buffer live at the same time (any packing can be pushed down into this form), and
// buffers are placed bottom-up in non-decreasing (offset, preorder rank), so each buffer's
// offset is the highest top of the already placed buffers it overlaps in time, and each
// packing is reached by one path only. Pruning:
//  - dominance: a buffer is not placed at or above the top that another unplaced buffer could
//    reach (that one fits under it, so the packing with it placed first is explored instead);
//  - a section bound: in every stretch of time, the floor (top of the placed buffers there, at
//    least the offset just placed and the least offset its unplaced buffers can take) plus the
//    sizes of its unplaced buffers must stay within the capacity;
//  - decomposition: time is cut where no buffer is live across the cut, and the parts are
//    solved independently;
//  - hatless buffers: a placed buffer that overlaps no unplaced buffer in time has its final
//    offset, so when its subtree fails, its frame fails.
// A candidate is refused before it is placed when its offset plus the largest unplaced total of
// a section outside its lifetime passes the capacity (prefix and suffix maxima per frame).
// Preorder ranks come from three orderings (by the largest section total, by lifetime width,
// by size x lifetime area), tried round-robin under a node limit that triples each round.
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "allocator/arena_plan.h"

namespace ebb::arena_internal {

using Clock = std::chrono::steady_clock;

struct GreedyPacking {
  std::vector<std::size_t> offsets;  // per buffer
  std::size_t height_bytes = 0;
  std::string name;  // "<order>/<fit>", e.g. "size/best-fit"
};

// Runs every greedy ordering and fit rule and returns the lowest packing.
// REQUIRES: check_plan_buffers(buffers).ok() and !buffers.empty().
GreedyPacking best_greedy_packing(const std::vector<PlanBuffer>& buffers);

enum class SearchOutcome {
  kFound,       // offsets hold a packing within the capacity
  kInfeasible,  // proved: no packing fits the capacity
  kTimedOut,    // the deadline passed first (or the problem is too large to search at all)
};

struct SearchResult {
  SearchOutcome outcome = SearchOutcome::kTimedOut;
  std::vector<std::size_t> offsets;  // per buffer, when found
  std::int64_t nodes = 0;            // search nodes visited
};

// Looks for a packing of height <= capacity_bytes before `deadline`.
// REQUIRES: check_plan_buffers(buffers).ok() and capacity_bytes < 2^62 (plan_arena only
// searches below a greedy height, which is below the 2^62 that check_plan_buffers allows).
SearchResult search_packing(const std::vector<PlanBuffer>& buffers, std::size_t capacity_bytes,
                            Clock::time_point deadline);

}  // namespace ebb::arena_internal
