// The two engines behind plan_arena (arena_plan.h): greedy placements and a complete
// branch-and-bound search. Internal to the allocator; callers use plan_arena.
//
// The search decides whether the buffers fit in a given capacity. It explores only canonical
// solutions, after MiniMalloc (Moffitt, ASPLOS 2023): every buffer rests at offset 0 or on top
// of a buffer live at the same time (any packing can be pushed down into this form), placed
// bottom-up in non-decreasing offset, so each buffer's offset is the highest top of the placed
// buffers it overlaps in time. Each node fills one hole: at the lowest offset where a buffer can
// still rest (the level), the section of time with the fewest buffers that can rest there
// (first fail). Its branches place one of those buffers, or leave the hole empty and bar them
// from the level; the branches are disjoint, so each packing is reached by one path only.
// Pruning:
//  - a section bound: in every stretch of time, the least offset its unplaced buffers can take
//    plus their sizes must stay within the capacity (a barred buffer rests on a buffer not yet
//    placed, so at least the smallest size above the level);
//  - dominance: once the level reaches the top a barred buffer would have at its bar, nothing
//    can take its place any more, and the packing with it moved down is on another branch;
//  - decomposition: time is cut where no unplaced buffer is live across the cut, and the parts
//    are solved independently.
// Runs restart under Luby's schedule of node limits, first with three preorders of the
// candidates (by the largest section total, by lifetime width, by size x lifetime area), then
// with random ones.
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
