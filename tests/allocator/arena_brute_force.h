// The optimum of a small arena problem by brute force, shared by the arena planner's tests.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "allocator/arena_plan.h"

namespace ebb {

// The optimum by brute force: every canonical packing is some order of the buffers, each put on
// top of the highest buffer placed before it that it overlaps in time.
inline std::size_t brute_force_height(const std::vector<PlanBuffer>& buffers) {
  std::vector<std::size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::size_t best = SIZE_MAX;
  std::vector<std::size_t> offset(buffers.size());
  do {
    std::size_t height = 0;
    for (std::size_t k = 0; k < order.size() && height < best; ++k) {
      const PlanBuffer& b = buffers[order[k]];
      std::size_t at = 0;
      for (std::size_t j = 0; j < k; ++j) {
        const PlanBuffer& o = buffers[order[j]];
        if (o.lower < b.upper && b.lower < o.upper) {
          at = std::max(at, offset[order[j]] + o.size_bytes);
        }
      }
      at = (at + b.alignment - 1) / b.alignment * b.alignment;
      offset[order[k]] = at;
      height = std::max(height, at + b.size_bytes);
    }
    best = std::min(best, height);
  } while (std::next_permutation(order.begin(), order.end()));
  return best;
}

}  // namespace ebb
