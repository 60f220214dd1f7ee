// recompute_lower_bound: a sweep over the ops with the live tensors (see plan_bounds.h).
#include "engine/planner/plan_bounds.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace ebb {

RecomputeBound recompute_lower_bound(const Profile& profile, std::size_t budget_bytes) {
  const std::size_t tensors = profile.tensors.size();
  constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();
  const std::vector<std::size_t> freed_after = freed_after_ops(profile);
  std::vector<std::size_t> live;  // ids, in no order
  for (const ProfiledTensor& t : profile.tensors) {
    if (!t.producer.has_value()) live.push_back(t.id);
  }
  std::vector<std::size_t> next_read(tensors, 0);   // index into accesses: the first read > k
  std::vector<std::size_t> stamp(tensors, kNever);  // == k: an input or output of op k
  std::vector<std::int64_t> group_bytes(profile.ops.size(), 0);  // per producer, at op k
  std::vector<std::size_t> producers;                            // with group_bytes > 0

  struct Item {
    double ns_per_byte;
    std::int64_t bytes;
    std::int64_t ns;
  };
  std::vector<Item> items;
  RecomputeBound bound;
  for (const ProfiledOp& op : profile.ops) {
    const std::size_t k = op.index;
    for (std::size_t t : op.outputs) live.push_back(t);
    for (std::size_t t : op.inputs) stamp[t] = k;
    for (std::size_t t : op.outputs) stamp[t] = k;
    std::size_t pinned = 0;
    std::int64_t droppable = 0;
    producers.clear();
    for (std::size_t id : live) {
      const ProfiledTensor& t = profile.tensors[id];
      if (stamp[id] == k || !t.recomputable()) {
        pinned += t.bytes;
        continue;
      }
      std::size_t& next = next_read[id];
      while (next < t.accesses.size() && t.accesses[next] <= k) ++next;
      if (next == t.accesses.size()) continue;  // never read again: dropped for free
      const std::size_t p = *t.producer;
      if (group_bytes[p] == 0) producers.push_back(p);
      group_bytes[p] += static_cast<std::int64_t>(t.bytes);
      droppable += static_cast<std::int64_t>(t.bytes);
    }
    if (pinned > bound.min_budget_bytes) {
      bound.min_budget_bytes = pinned;
      bound.min_budget_op = k;
    }
    const auto over =
        static_cast<std::int64_t>(pinned) + droppable - static_cast<std::int64_t>(budget_bytes);
    if (pinned <= budget_bytes && over > 0) {
      items.clear();
      for (std::size_t p : producers) {
        const std::int64_t ns = profile.ops[p].duration_ns;
        items.push_back(
            {static_cast<double>(ns) / static_cast<double>(group_bytes[p]), group_bytes[p], ns});
      }
      std::sort(items.begin(), items.end(),
                [](const Item& a, const Item& b) { return a.ns_per_byte < b.ns_per_byte; });
      std::int64_t left = over;
      double ns = 0;
      for (const Item& item : items) {
        if (left <= 0) break;
        const std::int64_t take = std::min(left, item.bytes);
        ns += take == item.bytes ? static_cast<double>(item.ns)
                                 : item.ns_per_byte * static_cast<double>(take);
        left -= take;
      }
      // Rounded down: a bound must never pass what some plan achieves.
      const auto at_k = static_cast<std::int64_t>(ns);
      if (at_k > bound.extra_compute_ns) {
        bound.extra_compute_ns = at_k;
        bound.extra_compute_op = k;
      }
    }
    for (std::size_t p : producers) group_bytes[p] = 0;
    std::erase_if(live, [&](std::size_t id) { return freed_after[id] == k; });
  }
  bound.feasible = budget_bytes >= bound.min_budget_bytes;
  if (!bound.feasible) bound.extra_compute_ns = 0;
  return bound;
}

}  // namespace ebb
