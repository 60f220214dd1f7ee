// Lower bounds on what any recompute-only plan of a profile must cost under a budget: figures a
// planner's result can be held against, and proof that a goal is out of reach.
//
// At every op k, the tensors that must then hold device bytes are the op's inputs and outputs
// and every live tensor that cannot be recomputed (parameters, inputs, optimizer state). Every
// other live tensor that some op after k reads again may be dropped, but then its producer must
// run again before that read: one replay of the producer per drop, which brings back all its
// outputs. So to fit `budget` live bytes at op k, a plan drops producers' outputs of at least
// (live bytes needed after k) - budget bytes, and pays at least the producers' durations for
// them; the cheapest such choice, relaxed to fractions of a producer (a fractional knapsack,
// cheapest nanoseconds per byte first), is a lower bound at op k, and the largest over k is a
// lower bound for the iteration. Live bytes are tensor bytes; the allocator's reserved bytes
// are at least that, so a budget of reserved bytes is bound alike.
//
// Thread safety: a pure function.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/schema/profile.h"

namespace ebb {

struct RecomputeBound {
  // No recompute-only plan fits a budget below this: the largest, over ops, of the bytes that
  // cannot be dropped there.
  std::size_t min_budget_bytes = 0;
  std::size_t min_budget_op = 0;  // the op it comes from
  // At the budget asked for (when feasible): no recompute-only plan replays less than this.
  std::int64_t extra_compute_ns = 0;
  std::size_t extra_compute_op = 0;  // the op it comes from
  bool feasible = true;              // budget >= min_budget_bytes
};

// REQUIRES: validate_profile(profile) passed.
RecomputeBound recompute_lower_bound(const Profile& profile, std::size_t budget_bytes);

}  // namespace ebb
