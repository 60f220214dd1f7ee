// PlanModel: lifetimes, the resident-bytes curve, replay chains and link timelines.
#include "engine/planner/plan_model.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "allocator/caching_allocator.h"

namespace ebb {
namespace {

// A chain longer than this is treated as not worth replaying (and keeps the search bounded).
constexpr std::size_t kMaxChainTensors = 256;

}  // namespace

std::int64_t LinkTimeline::earliest_slot(std::int64_t earliest, std::int64_t duration_ns) const {
  std::int64_t t = earliest;
  auto it = busy_.upper_bound(t);
  if (it != busy_.begin()) {
    auto prev = std::prev(it);
    t = std::max(t, prev->second);
  }
  while (it != busy_.end() && it->first < t + duration_ns) {
    t = std::max(t, it->second);
    ++it;
  }
  return t;
}

std::optional<std::int64_t> LinkTimeline::latest_slot(std::int64_t deadline,
                                                      std::int64_t not_before,
                                                      std::int64_t duration_ns) const {
  std::int64_t t = deadline - duration_ns;
  auto it = busy_.lower_bound(t + duration_ns);
  while (it != busy_.begin()) {
    auto prev = std::prev(it);
    if (prev->second <= t) break;
    t = prev->first - duration_ns;
    it = prev;
  }
  if (t < not_before) return std::nullopt;
  return t;
}

void LinkTimeline::reserve(std::int64_t start, std::int64_t duration_ns) {
  if (duration_ns > 0) busy_[start] = start + duration_ns;
}

PlanModel::PlanModel(const Profile& profile, const HardwareModel& hardware,
                     bool keep_rebuilt_ancestors, bool holds)
    : profile_(profile),
      hardware_(hardware),
      keep_rebuilt_ancestors_(keep_rebuilt_ancestors),
      holds_allowed_(holds) {
  const std::size_t n = profile.ops.size();
  const std::size_t tensors = profile.tensors.size();
  block_bytes_.resize(tensors);
  death_.assign(tensors, n == 0 ? 0 : n - 1);
  uses_.resize(tensors);
  intervals_.resize(tensors);
  replay_reads_.resize(tensors);
  program_frees_.assign(tensors, false);
  held_to_.assign(tensors, 0);
  for (const ProfiledOp& op : profile.ops) {
    for (std::size_t id : op.frees) {
      death_[id] = op.index;
      program_frees_[id] = true;
    }
  }
  std::vector<std::int64_t> delta(n + 1, 0);
  for (const ProfiledTensor& t : profile.tensors) {
    block_bytes_[t.id] = round_block_bytes(std::max<std::size_t>(t.bytes, 1));
    if (t.producer) uses_[t.id].push_back(*t.producer);
    uses_[t.id].insert(uses_[t.id].end(), t.accesses.begin(), t.accesses.end());
    if (n == 0) continue;
    const std::size_t birth = t.producer.value_or(0);
    delta[birth] += static_cast<std::int64_t>(block_bytes_[t.id]);
    delta[death_[t.id] + 1] -= static_cast<std::int64_t>(block_bytes_[t.id]);
  }
  live_.resize(n);
  start_ns_.resize(n + 1, 0);
  std::int64_t running = 0;
  for (std::size_t k = 0; k < n; ++k) {
    running += delta[k];
    live_[k] = static_cast<std::size_t>(running);
    if (live_[k] > live_[peak_op_]) peak_op_ = k;
    start_ns_[k + 1] = start_ns_[k] + profile.ops[k].duration_ns;
  }
}

const PlanModel::Interval* PlanModel::interval_at(std::size_t tensor, std::size_t op) const {
  for (const Interval& i : intervals_[tensor]) {
    if (i.evict_after < op && op < i.needed) return &i;
  }
  return nullptr;
}

bool PlanModel::evicted_at(std::size_t tensor, std::size_t op) const {
  return interval_at(tensor, op) != nullptr;
}

bool PlanModel::holdable(std::size_t tensor, std::size_t at, std::size_t rebuilt) const {
  if (!holds_allowed_ || profile_.tensors[tensor].producer.has_value() || !program_frees_[tensor] ||
      death_[tensor] >= at || block_bytes_[tensor] > block_bytes_[rebuilt]) {
    return false;
  }
  return std::none_of(intervals_[tensor].begin(), intervals_[tensor].end(),
                      [&](const Interval& i) { return i.needed >= ops(); });
}

std::vector<Hold> PlanModel::holds() const {
  std::vector<Hold> held;
  for (std::size_t t = 0; t < held_to_.size(); ++t) {
    if (held_to_[t] > death_[t]) held.push_back(Hold{.tensor = t, .until = held_to_[t]});
  }
  return held;
}

bool PlanModel::resident_at(std::size_t tensor, std::size_t op) const {
  const ProfiledTensor& t = profile_.tensors[tensor];
  if (t.producer.value_or(0) > op || kept_until(tensor) < op) return false;
  for (const Interval& i : intervals_[tensor]) {
    if (i.off_from <= op && op < i.off_to) return false;
  }
  return true;
}

std::int64_t PlanModel::chain(std::size_t tensor, std::size_t at, std::vector<std::size_t>& seen,
                              std::int64_t* replays) const {
  const ProfiledTensor& t = profile_.tensors[tensor];
  if (!t.recomputable() || seen.size() >= kMaxChainTensors) return kInfeasible;
  seen.push_back(tensor);
  const ProfiledOp& producer = profile_.ops[*t.producer];
  std::int64_t cost = producer.duration_ns;
  ++*replays;
  for (std::size_t x : producer.inputs) {
    if (resident_at(x, at) || std::find(seen.begin(), seen.end(), x) != seen.end()) continue;
    if (holdable(x, at, seen.front())) continue;  // held past its free (rebuild_chain)
    const Interval* i = interval_at(x, at);
    if (i != nullptr && i->method == EvictionMethod::kSwap) return kInfeasible;
    std::int64_t c = chain(x, at, seen, replays);
    if (c >= kInfeasible) return kInfeasible;
    cost += c;
  }
  return cost;
}

std::int64_t PlanModel::chain_cost_ns(std::size_t tensor, std::size_t at,
                                      std::int64_t* replays) const {
  std::vector<std::size_t> seen;
  std::int64_t ignored = 0;
  return chain(tensor, at, seen, replays != nullptr ? replays : &ignored);
}

std::size_t PlanModel::replay_reads_inside(std::size_t tensor, std::size_t after,
                                           std::optional<std::size_t> needed) const {
  const std::vector<std::size_t>& reads = replay_reads_[tensor];
  const std::size_t end = std::min(needed.value_or(ops()), death_[tensor] + 1);
  auto lo = std::upper_bound(reads.begin(), reads.end(), after);
  auto hi = std::lower_bound(reads.begin(), reads.end(), end);
  return lo < hi ? static_cast<std::size_t>(hi - lo) : 0;
}

PlanModel::RecomputeTiming PlanModel::recompute_timing(std::size_t tensor, std::size_t after,
                                                       std::optional<std::size_t> needed) const {
  RecomputeTiming r;
  const std::vector<std::size_t>& reads = replay_reads_[tensor];
  auto first = std::upper_bound(reads.begin(), reads.end(), after);
  const std::size_t end = needed.value_or(death_[tensor] + 1);
  const bool read_inside = first != reads.end() && *first < end;
  if (needed.has_value()) {
    r.rebuild_at = read_inside ? *first : *needed;
    r.cost_ns = chain_cost_ns(tensor, r.rebuild_at, nullptr);
    return r;
  }
  r.rebuild_at = ops();
  if (!read_inside) return r;
  const std::size_t count = replay_reads_inside(tensor, after, needed);
  const std::int64_t each = chain_cost_ns(tensor, *first, nullptr);
  r.cost_ns = each >= kInfeasible ? kInfeasible : static_cast<std::int64_t>(count) * each;
  return r;
}

std::int64_t PlanModel::in_ns(std::size_t bytes) const {
  return hardware_.link_latency.count() +
         static_cast<std::int64_t>(
             std::ceil(static_cast<double>(bytes) * 1e9 / hardware_.host_to_device_bytes_per_s));
}

std::int64_t PlanModel::out_ns(std::size_t bytes) const {
  return hardware_.link_latency.count() +
         static_cast<std::int64_t>(
             std::ceil(static_cast<double>(bytes) * 1e9 / hardware_.device_to_host_bytes_per_s));
}

std::int64_t PlanModel::nvme_ns(std::size_t bytes, double bytes_per_s) const {
  return hardware_.link_latency.count() +
         static_cast<std::int64_t>(std::ceil(static_cast<double>(bytes) * 1e9 / bytes_per_s));
}

void PlanModel::add_nvme_swap(const Eviction& e, Interval& i) {
  // The executor waits for the write before it gives the block back (the I/O thread reads it):
  // the compute stream idles for it. The read is queued on the I/O thread by its deadline, which
  // carries one request at a time, and needs no copy engine.
  const std::size_t bytes = profile_.tensors[e.tensor].bytes;
  const std::int64_t write = nvme_ns(bytes, hardware_.nvme_write_bytes_per_s);
  const std::int64_t write_start = nvme_.earliest_slot(start_ns_[e.evict_after + 1], write);
  nvme_.reserve(write_start, write);
  late_ns_ += write_start + write - start_ns_[e.evict_after + 1];
  i.off_from = e.evict_after + 1;
  i.off_to = e.needed_at ? e.prefetch_at : death_[e.tensor] + 1;
  if (!e.needed_at.has_value()) return;
  const std::int64_t read = nvme_ns(bytes, hardware_.nvme_read_bytes_per_s);
  const std::int64_t read_start =
      nvme_.earliest_slot(std::max(start_ns_[e.prefetch_at], write_start + write), read);
  nvme_.reserve(read_start, read);
  late_ns_ += std::max<std::int64_t>(0, read_start + read - start_ns_[*e.needed_at]);
}

PlanModel::SwapTiming PlanModel::swap_timing(std::size_t tensor, std::size_t after,
                                             std::size_t needed, std::size_t by_op) const {
  const std::size_t bytes = profile_.tensors[tensor].bytes;
  const LinkTimeline& out_link = hardware_.duplex ? to_host_ : to_device_;
  SwapTiming s;
  const std::int64_t out = out_ns(bytes);
  s.out_start_ns = out_link.earliest_slot(start_ns_[after + 1], out);
  const std::int64_t out_end = s.out_start_ns + out;
  s.free_from = static_cast<std::size_t>(
      std::lower_bound(start_ns_.begin(), start_ns_.end(), out_end) - start_ns_.begin());
  if (s.free_from > by_op) {
    s.stall_ns = out_end - start_ns_[by_op];
    s.free_from = by_op;
  }
  const std::int64_t in = in_ns(bytes);
  s.copy_ns = out + in;
  std::optional<std::int64_t> in_start = to_device_.latest_slot(start_ns_[needed], out_end, in);
  std::size_t p = 0;
  if (in_start.has_value()) {
    p = static_cast<std::size_t>(std::upper_bound(start_ns_.begin(),
                                                  start_ns_.begin() + static_cast<long>(needed),
                                                  *in_start) -
                                 start_ns_.begin()) -
        1;
  }
  if (!in_start.has_value() || p <= by_op) {
    // Hidden only if started before the op it relieves: start right after it, and be late.
    p = by_op + 1;
    const std::int64_t not_before = std::max(start_ns_[p], out_end);
    s.in_start_ns = to_device_.earliest_slot(not_before, in);
    s.late_ns = std::max<std::int64_t>(0, s.in_start_ns + in - start_ns_[needed]);
  } else {
    s.in_start_ns = *in_start;
  }
  s.prefetch_at = p;
  return s;
}

void PlanModel::rebuild_chain(std::size_t tensor, std::size_t at, std::vector<std::size_t>& seen) {
  const ProfiledTensor& t = profile_.tensors[tensor];
  if (!t.producer.has_value() || seen.size() >= kMaxChainTensors) return;
  seen.push_back(tensor);
  for (std::size_t x : profile_.ops[*t.producer].inputs) {
    std::vector<std::size_t>& reads = replay_reads_[x];
    reads.insert(std::upper_bound(reads.begin(), reads.end(), at), at);
    if (resident_at(x, at) || std::find(seen.begin(), seen.end(), x) != seen.end()) continue;
    if (holdable(x, at, seen.front())) {
      // Nothing rebuilds it: its bytes stay from its free until this replay.
      for (std::size_t k = kept_until(x) + 1; k <= at; ++k) live_[k] += block_bytes_[x];
      held_to_[x] = at;
      continue;
    }
    for (Interval& i : intervals_[x]) {
      if (!keep_rebuilt_ancestors_ || i.method != EvictionMethod::kRecompute || i.needed >= ops() ||
          i.off_from > at || at >= i.off_to) {
        continue;
      }
      for (std::size_t k = at; k < i.off_to; ++k) live_[k] += block_bytes_[x];
      i.off_to = at;
      evictions_[i.eviction].prefetch_at = at;
    }
    rebuild_chain(x, at, seen);
  }
}

void PlanModel::add(const Eviction& e, std::size_t swap_off_by) {
  const std::size_t t = e.tensor;
  Interval i;
  i.evict_after = e.evict_after;
  i.needed = e.needed_at.value_or(ops());
  i.method = e.method;
  i.eviction = evictions_.size();
  if (e.method == EvictionMethod::kRecompute) {
    i.off_from = e.evict_after + 1;
    i.off_to = e.needed_at ? e.prefetch_at : death_[t] + 1;
  } else if (e.tier == OffloadTier::kNvme) {
    add_nvme_swap(e, i);
  } else {
    const std::int64_t out = out_ns(profile_.tensors[t].bytes);
    LinkTimeline& out_link = hardware_.duplex ? to_host_ : to_device_;
    const std::int64_t out_start = out_link.earliest_slot(start_ns_[e.evict_after + 1], out);
    out_link.reserve(out_start, out);
    const std::int64_t out_end = out_start + out;
    i.off_from = static_cast<std::size_t>(
        std::lower_bound(start_ns_.begin(), start_ns_.end(), out_end) - start_ns_.begin());
    if (i.off_from > swap_off_by) {
      late_ns_ += out_end - start_ns_[swap_off_by];
      i.off_from = swap_off_by;
    }
    i.off_to = e.needed_at ? e.prefetch_at : death_[t] + 1;
    if (e.needed_at.has_value()) {
      const std::int64_t in = in_ns(profile_.tensors[t].bytes);
      const std::int64_t in_start =
          to_device_.earliest_slot(std::max(start_ns_[e.prefetch_at], out_end), in);
      to_device_.reserve(in_start, in);
      late_ns_ += std::max<std::int64_t>(0, in_start + in - start_ns_[*e.needed_at]);
    }
  }
  for (std::size_t k = i.off_from; k < i.off_to && k < ops(); ++k) live_[k] -= block_bytes_[t];
  auto& list = intervals_[t];
  list.insert(std::upper_bound(list.begin(), list.end(), i,
                               [](const Interval& a, const Interval& b) {
                                 return a.evict_after < b.evict_after;
                               }),
              i);
  evictions_.push_back(e);
  if (e.method != EvictionMethod::kRecompute) return;
  if (e.needed_at.has_value()) {
    std::vector<std::size_t> seen;
    rebuild_chain(t, e.prefetch_at, seen);
    return;
  }
  // Never read again by the program, but planned replays inside the interval read it: each
  // rebuilds it for itself.
  const std::vector<std::size_t> reads = replay_reads_[t];
  for (std::size_t r : reads) {
    if (r > i.evict_after && r < i.off_to) {
      std::vector<std::size_t> seen;
      rebuild_chain(t, r, seen);
    }
  }
}

std::vector<Hold> plan_holds(const Profile& profile, const HardwareModel& hardware,
                             const std::vector<Eviction>& evictions) {
  PlanModel model(profile, hardware, /*keep_rebuilt_ancestors=*/true);
  for (const Eviction& e : evictions) model.add(e);
  return model.holds();
}

std::vector<Eviction> PlanModel::sorted_evictions() const {
  std::vector<Eviction> sorted = evictions_;
  sort_evictions(sorted);
  return sorted;
}

PlanPrediction PlanModel::predict() const {
  PlanPrediction p;
  p.peak_live_bytes = live_.empty() ? 0 : *std::max_element(live_.begin(), live_.end());
  // Expandable segments map whole pages: the reserved bytes are the live bytes rounded up.
  p.peak_reserved_bytes = (p.peak_live_bytes + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB);
  p.base_compute_ns = start_ns_.back();
  for (const Eviction& e : evictions_) {
    if (e.method == EvictionMethod::kSwap) {
      const std::size_t bytes = profile_.tensors[e.tensor].bytes;
      p.swapped_bytes += e.needed_at ? 2 * bytes : bytes;
    } else if (e.needed_at.has_value()) {
      // Rebuilt before prefetch_at; the ancestors rebuilt there too are counted by their own
      // evictions (resident at that op), the ones the program freed by this chain.
      std::int64_t replays = 0;
      const std::int64_t cost = chain_cost_ns(e.tensor, e.prefetch_at, &replays);
      if (cost < kInfeasible) {
        p.extra_compute_ns += cost;
        p.recomputed_ops += replays;
      }
    }
  }
  p.step_ns = p.base_compute_ns + p.extra_compute_ns + late_ns_;
  return p;
}

}  // namespace ebb
