// Greedy placements: buffers taken one at a time in a fixed order, each put in a gap among the
// already placed buffers that overlap it in time (or on top of them). Taking buffers by
// decreasing size with the best-fitting gap is TFLite's greedy-by-size and XLA's global
// decreasing-size best-fit heap; the other orderings and the first-fit rule win on some inputs,
// so all are run and the lowest packing kept.
#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "allocator/arena_search.h"

namespace ebb::arena_internal {
namespace {

std::size_t align_up(std::size_t value, std::size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

enum class Fit { kBest, kFirst };

struct Ordering {
  const char* name;
  // true when buffer a goes before buffer b
  bool (*before)(const PlanBuffer& a, const PlanBuffer& b);
};

std::int64_t length(const PlanBuffer& b) { return b.upper - b.lower; }
double area(const PlanBuffer& b) {
  return static_cast<double>(b.size_bytes) * static_cast<double>(length(b));
}

const Ordering kOrderings[] = {
    {"size",
     [](const PlanBuffer& a, const PlanBuffer& b) {
       if (a.size_bytes != b.size_bytes) return a.size_bytes > b.size_bytes;
       return length(a) > length(b);
     }},
    {"area",
     [](const PlanBuffer& a, const PlanBuffer& b) {
       if (area(a) != area(b)) return area(a) > area(b);
       return a.size_bytes > b.size_bytes;
     }},
    {"length",
     [](const PlanBuffer& a, const PlanBuffer& b) {
       if (length(a) != length(b)) return length(a) > length(b);
       return a.size_bytes > b.size_bytes;
     }},
    {"start",
     [](const PlanBuffer& a, const PlanBuffer& b) {
       if (a.lower != b.lower) return a.lower < b.lower;
       return a.size_bytes > b.size_bytes;
     }},
};

GreedyPacking pack(const std::vector<PlanBuffer>& buffers, const Ordering& ordering, Fit fit) {
  std::vector<std::size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return ordering.before(buffers[a], buffers[b]);
  });

  GreedyPacking packing;
  packing.offsets.assign(buffers.size(), 0);
  packing.name = std::string(ordering.name) + (fit == Fit::kBest ? "/best-fit" : "/first-fit");
  // Placed buffers by offset: a walk over them in this order meets the gaps bottom-up, with no
  // sort per buffer (a trace has thousands).
  std::vector<std::size_t> placed;
  placed.reserve(buffers.size());
  for (std::size_t index : order) {
    const PlanBuffer& b = buffers[index];
    std::size_t cursor = 0;  // everything below is taken (at the times b is live)
    std::size_t chosen = 0;
    std::size_t chosen_gap = SIZE_MAX;
    for (std::size_t p : placed) {
      const PlanBuffer& other = buffers[p];
      if (other.upper <= b.lower || b.upper <= other.lower) continue;
      const std::size_t offset = packing.offsets[p];
      const std::size_t candidate = align_up(cursor, b.alignment);
      if (offset >= candidate + b.size_bytes && offset - cursor < chosen_gap) {
        chosen = candidate;
        chosen_gap = offset - cursor;
        if (fit == Fit::kFirst) break;
      }
      cursor = std::max(cursor, offset + other.size_bytes);
    }
    if (chosen_gap == SIZE_MAX) chosen = align_up(cursor, b.alignment);
    packing.offsets[index] = chosen;
    packing.height_bytes = std::max(packing.height_bytes, chosen + b.size_bytes);
    auto at = std::upper_bound(
        placed.begin(), placed.end(), chosen,
        [&](std::size_t offset, std::size_t p) { return offset < packing.offsets[p]; });
    placed.insert(at, index);
  }
  return packing;
}

}  // namespace

GreedyPacking best_greedy_packing(const std::vector<PlanBuffer>& buffers) {
  GreedyPacking best;
  best.height_bytes = SIZE_MAX;
  for (const Ordering& ordering : kOrderings) {
    for (Fit fit : {Fit::kBest, Fit::kFirst}) {
      GreedyPacking packing = pack(buffers, ordering, fit);
      if (packing.height_bytes < best.height_bytes) best = std::move(packing);
    }
  }
  return best;
}

}  // namespace ebb::arena_internal
