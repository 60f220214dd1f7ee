// Tight static allocation problems whose optimum is known, for testing and benchmarking the
// arena planner (arena_plan.h) on problems it was never tuned on.
//
// A full strip, capacity bytes high and `time_steps` long, is cut into rectangles by random
// guillotine cuts (each cut splits one rectangle in time or in bytes). Each rectangle becomes a
// buffer live over its time span with its height as size; the buffers are shuffled and their
// offsets dropped. The rectangles tile the strip, so a packing of height exactly `capacity`
// exists and every instant has `capacity` bytes live: the lower bound is the capacity, and a
// planner asked for that capacity must find a perfect packing.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "allocator/arena_plan.h"
#include "kernels/status.h"

namespace ebb {

struct TightProblemOptions {
  std::size_t buffers = 200;              // how many rectangles to cut
  std::size_t capacity_bytes = 1u << 20;  // strip height (1 MiB, as MiniMalloc's problems)
  std::int64_t time_steps = 0;            // strip length; 0: 2 x buffers
  std::uint64_t seed = 1;
};

struct TightProblem {
  std::vector<PlanBuffer> buffers;   // shuffled; ids 0..n-1 in this order
  std::vector<std::size_t> offsets;  // per buffer, the packing the cuts define (height = C)
  std::size_t capacity_bytes = 0;
};

// Cuts the strip. kInvalidArgument naming the field when buffers is 0 or the strip is too small
// to cut into that many rectangles (buffers > capacity_bytes x time_steps).
Result<TightProblem> generate_tight_problem(const TightProblemOptions& options);

}  // namespace ebb
