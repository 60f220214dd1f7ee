#include "allocator/arena_plan.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>
#include <utility>

#include "allocator/arena_search.h"

namespace ebb {
namespace {

using arena_internal::Clock;
using arena_internal::SearchOutcome;
using arena_internal::SearchResult;

constexpr std::size_t kMaxTotalBytes = std::size_t{1} << 62;  // search arithmetic stays signed

std::string describe(const std::vector<PlanBuffer>& buffers, std::size_t i) {
  return "buffer " + std::to_string(i) + " (id " + std::to_string(buffers[i].id) + ")";
}

std::size_t height_of(const std::vector<PlanBuffer>& buffers,
                      const std::vector<std::size_t>& offsets) {
  std::size_t height = 0;
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    height = std::max(height, offsets[i] + buffers[i].size_bytes);
  }
  return height;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Adopts a search's packing.
void take(const std::vector<PlanBuffer>& buffers, SearchResult& found, ArenaPlan& plan) {
  plan.offsets = std::move(found.offsets);
  plan.height_bytes = height_of(buffers, plan.offsets);
  plan.method = "search";
}

}  // namespace

Status check_plan_buffers(const std::vector<PlanBuffer>& buffers) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    const PlanBuffer& b = buffers[i];
    if (b.upper <= b.lower) {
      return invalid_argument(describe(buffers, i) + ": upper " + std::to_string(b.upper) +
                              " is not after lower " + std::to_string(b.lower));
    }
    if (b.size_bytes == 0) return invalid_argument(describe(buffers, i) + ": size is 0");
    if (b.alignment == 0 || (b.alignment & (b.alignment - 1)) != 0) {
      return invalid_argument(describe(buffers, i) + ": alignment " + std::to_string(b.alignment) +
                              " is not a power of two");
    }
    if (b.size_bytes >= kMaxTotalBytes || b.alignment >= kMaxTotalBytes ||
        kMaxTotalBytes - total < b.size_bytes + b.alignment) {
      return invalid_argument(describe(buffers, i) + ": the sizes add up past 2^62 bytes");
    }
    total += b.size_bytes + b.alignment;
  }
  return ok_status();
}

std::size_t plan_lower_bound_bytes(const std::vector<PlanBuffer>& buffers) {
  // (time, +size or -size); at equal times frees come first: lifetimes are half-open.
  std::vector<std::pair<std::int64_t, std::int64_t>> events;
  events.reserve(2 * buffers.size());
  for (const PlanBuffer& b : buffers) {
    events.emplace_back(b.lower, static_cast<std::int64_t>(b.size_bytes));
    events.emplace_back(b.upper, -static_cast<std::int64_t>(b.size_bytes));
  }
  std::sort(events.begin(), events.end());
  std::int64_t live = 0;
  std::int64_t peak = 0;
  for (const auto& [time, delta] : events) {
    live += delta;
    peak = std::max(peak, live);
  }
  return static_cast<std::size_t>(peak);
}

Result<ArenaPlan> plan_arena(const std::vector<PlanBuffer>& buffers, const PlanOptions& options) {
  const Clock::time_point start = Clock::now();
  EBB_RETURN_IF_ERROR(check_plan_buffers(buffers));
  ArenaPlan plan;
  plan.capacity_bytes = options.capacity_bytes;
  plan.lower_bound_bytes = plan_lower_bound_bytes(buffers);
  if (buffers.empty()) {
    plan.optimal = true;
    plan.method = "empty";
    plan.seconds = seconds_since(start);
    return plan;
  }
  arena_internal::GreedyPacking greedy = arena_internal::best_greedy_packing(buffers);
  plan.offsets = std::move(greedy.offsets);
  plan.height_bytes = greedy.height_bytes;
  plan.greedy_height_bytes = greedy.height_bytes;
  plan.method = "greedy " + greedy.name;

  Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(std::max(0.0, options.time_limit_seconds)));
  if (buffers.size() > options.large_problem_buffers) {
    deadline = std::min(
        deadline, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.large_search_seconds)));
  }
  const std::size_t capacity = options.capacity_bytes;
  if (capacity != 0) {
    if (plan.lower_bound_bytes > capacity) {
      plan.infeasible = true;
    } else if (plan.height_bytes > capacity && options.search) {
      SearchResult found = arena_internal::search_packing(buffers, capacity, deadline);
      plan.search_nodes = found.nodes;
      if (found.outcome == SearchOutcome::kFound) take(buffers, found, plan);
      plan.infeasible = found.outcome == SearchOutcome::kInfeasible;
    }
    plan.fits = plan.height_bytes <= capacity;
  } else if (options.search &&
             static_cast<double>(plan.height_bytes) >
                 static_cast<double>(plan.lower_bound_bytes) * (1 + options.min_search_gain)) {
    // Binary search on the capacity; every probe is a feasibility search.
    std::size_t lo = plan.lower_bound_bytes;
    std::size_t hi = plan.height_bytes - 1;
    bool proved = true;
    while (lo <= hi && Clock::now() < deadline) {
      const std::size_t mid = lo + (hi - lo) / 2;
      const Clock::time_point probe_deadline = Clock::now() + (deadline - Clock::now()) / 2;
      SearchResult found = arena_internal::search_packing(buffers, mid, probe_deadline);
      plan.search_nodes += found.nodes;
      if (found.outcome == SearchOutcome::kFound) {
        take(buffers, found, plan);
        hi = plan.height_bytes - 1;
      } else {
        proved = proved && found.outcome == SearchOutcome::kInfeasible;
        lo = mid + 1;
      }
    }
    plan.optimal = proved && lo > hi;
  }
  if (plan.height_bytes == plan.lower_bound_bytes) plan.optimal = true;
  plan.seconds = seconds_since(start);
  return plan;
}

Status validate_plan(const std::vector<PlanBuffer>& buffers, const ArenaPlan& plan) {
  if (plan.offsets.size() != buffers.size()) {
    return invalid_argument("the plan has " + std::to_string(plan.offsets.size()) +
                            " offsets for " + std::to_string(buffers.size()) + " buffers");
  }
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    const std::size_t offset = plan.offsets[i];
    if (buffers[i].alignment == 0 || offset % buffers[i].alignment != 0) {
      return invalid_argument(describe(buffers, i) + ": offset " + std::to_string(offset) +
                              " is not a multiple of its alignment " +
                              std::to_string(buffers[i].alignment));
    }
    if (offset > plan.height_bytes || plan.height_bytes - offset < buffers[i].size_bytes) {
      return invalid_argument(describe(buffers, i) + ": [" + std::to_string(offset) + ", " +
                              std::to_string(offset) + "+" + std::to_string(buffers[i].size_bytes) +
                              ") passes the height " + std::to_string(plan.height_bytes));
    }
  }
  // Sweep by start time; `live` holds the buffers whose lifetime has begun and not ended.
  std::vector<std::size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return buffers[a].lower < buffers[b].lower; });
  std::vector<std::size_t> live;
  for (std::size_t i : order) {
    const PlanBuffer& b = buffers[i];
    std::erase_if(live, [&](std::size_t j) { return buffers[j].upper <= b.lower; });
    for (std::size_t j : live) {
      const std::size_t lo = std::max(plan.offsets[i], plan.offsets[j]);
      const std::size_t hi =
          std::min(plan.offsets[i] + b.size_bytes, plan.offsets[j] + buffers[j].size_bytes);
      if (lo < hi) {
        return invalid_argument(describe(buffers, i) + " at offset " +
                                std::to_string(plan.offsets[i]) + " and " + describe(buffers, j) +
                                " at offset " + std::to_string(plan.offsets[j]) +
                                " are live at the same time and overlap in memory");
      }
    }
    live.push_back(i);
  }
  return ok_status();
}

Result<std::vector<PlanBuffer>> plan_buffers_from_events(const std::vector<AllocEvent>& events,
                                                         std::size_t alignment) {
  std::vector<PlanBuffer> buffers;
  std::unordered_map<std::uint64_t, std::size_t> live;  // id -> index in buffers
  for (std::size_t t = 0; t < events.size(); ++t) {
    const AllocEvent& e = events[t];
    if (e.op == AllocEvent::Op::kAlloc) {
      if (!live.emplace(e.id, buffers.size()).second) {
        return invalid_argument("event " + std::to_string(t) + ": alloc of id " +
                                std::to_string(e.id) + ", which is already live");
      }
      buffers.push_back(PlanBuffer{.id = e.id,
                                   .lower = static_cast<std::int64_t>(t),
                                   .upper = static_cast<std::int64_t>(events.size()),
                                   .size_bytes = e.bytes,
                                   .alignment = alignment});
    } else {
      auto it = live.find(e.id);
      if (it == live.end()) {
        return invalid_argument("event " + std::to_string(t) + ": free of id " +
                                std::to_string(e.id) + ", which is not live");
      }
      buffers[it->second].upper = static_cast<std::int64_t>(t);
      live.erase(it);
    }
  }
  return buffers;
}

}  // namespace ebb
