// ArenaPlan: offline placement of buffers with known sizes and lifetimes in one arena (the
// dynamic storage allocation problem), so that a profiled iteration can run out of a single
// reservation whose height approaches the lower bound, the most bytes live at one instant.
//
// plan_arena() first runs several greedy placements (TFLite's greedy-by-size and XLA's global
// decreasing-size best-fit heap, under a few orderings) and keeps the best; when that does not
// reach the goal (the capacity, or else the lower bound) it runs a complete branch-and-bound
// search over canonical solutions (see arena_search.h) within the time limit, and says whether
// the answer is proved: optimal height, or a capacity proved infeasible.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "allocator/alloc_trace.h"
#include "kernels/status.h"

namespace ebb {

// One buffer to place: live over the half-open interval [lower, upper) of some clock.
struct PlanBuffer {
  std::uint64_t id = 0;        // caller's name for the buffer (a plan id)
  std::int64_t lower = 0;      // first instant the buffer is live
  std::int64_t upper = 0;      // first instant it is dead again; REQUIRES: upper > lower
  std::size_t size_bytes = 0;  // REQUIRES: > 0
  std::size_t alignment = 1;   // offset must be a multiple; REQUIRES: a power of two
};

struct PlanOptions {
  // 0: minimise the height. Otherwise the goal is any packing of height <= capacity_bytes (as
  // minimalloc does); the planner stops at the first one it finds.
  std::size_t capacity_bytes = 0;
  // Wall-clock limit of the whole plan, greedy included (the greedy always completes).
  double time_limit_seconds = 10;
  // Problems with more buffers than this are searched for at most large_search_seconds: on real
  // training traces (thousands of buffers) the greedy is within a few percent and the plan must
  // come back in well under a second.
  std::size_t large_problem_buffers = 1000;
  double large_search_seconds = 0.25;
  // Without a capacity, a greedy height within this fraction of the lower bound is kept without
  // a search: the search could win at most that much, and proving it costs seconds.
  double min_search_gain = 0.001;
  // false: the greedy only (for comparison).
  bool search = true;
};

// A packing and what is known about it.
struct ArenaPlan {
  std::vector<std::size_t> offsets;     // per input buffer, in input order
  std::size_t height_bytes = 0;         // max over buffers of offset + size
  std::size_t lower_bound_bytes = 0;    // max over time of the bytes live at once
  std::size_t capacity_bytes = 0;       // the capacity asked for (0: none)
  bool fits = true;                     // height_bytes <= capacity_bytes (true without one)
  bool optimal = false;                 // height_bytes is proved minimal
  bool infeasible = false;              // the capacity is proved too small for any packing
  std::string method;                   // "greedy <order>/<fit>" or "search"
  std::size_t greedy_height_bytes = 0;  // the best greedy packing's height
  std::int64_t search_nodes = 0;        // branch-and-bound nodes visited
  double seconds = 0;                   // wall time of plan_arena
};

// kInvalidArgument naming the buffer (index and id) for upper <= lower, a 0 size, an alignment
// that is not a power of two, or sizes whose sum (with alignment padding) passes 2^62 bytes.
Status check_plan_buffers(const std::vector<PlanBuffer>& buffers);

// The most bytes live at one instant. REQUIRES: check_plan_buffers(buffers).ok().
std::size_t plan_lower_bound_bytes(const std::vector<PlanBuffer>& buffers);

// Plans the buffers. Fails only for buffers that check_plan_buffers rejects. A capacity below
// the lower bound is not an error: the plan says infeasible, with the best height found.
Result<ArenaPlan> plan_arena(const std::vector<PlanBuffer>& buffers, const PlanOptions& options);

// Checks a packing: an offset per buffer, each aligned, each buffer inside height_bytes, and no
// two buffers that are live at the same instant overlapping in memory. kInvalidArgument naming
// the buffers at fault.
Status validate_plan(const std::vector<PlanBuffer>& buffers, const ArenaPlan& plan);

// The storages of an alloc trace as buffers: the clock is the event index, an alloc opens the
// buffer's lifetime and its free closes it (never freed: live to the end); id is the event id.
// `alignment` applies to every buffer. kInvalidArgument for a free of an id that is not live or
// an alloc of an id already live.
Result<std::vector<PlanBuffer>> plan_buffers_from_events(const std::vector<AllocEvent>& events,
                                                         std::size_t alignment);

}  // namespace ebb
