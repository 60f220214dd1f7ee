#include "engine/residency/eviction.h"

#include <algorithm>
#include <limits>
#include <optional>

namespace ebb {

std::string_view eviction_policy_name(EvictionPolicy policy) {
  switch (policy) {
    case EvictionPolicy::kNone:
      return "none";
    case EvictionPolicy::kSwap:
      return "swap";
    case EvictionPolicy::kRecompute:
      return "recompute";
    case EvictionPolicy::kBoth:
      return "both";
  }
  return "unknown";
}

namespace {

using Readers = std::vector<std::vector<std::uint32_t>>;

}  // namespace

// The projected costs of the resident tensors on one pair of tables: the reverse edges of the
// tape (which ops read each tensor, shared by the caller when it ranks several times over one
// tape) and scratch marks, built on the first walk.
class NeighbourhoodCost {
 public:
  NeighbourhoodCost(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                    const Readers* readers)
      : tensors_(tensors), tape_(tape), shared_readers_(readers) {}

  // The producers' cost (ns) of `slot` and of the dropped tensors connected to it through
  // dropped tensors: ancestors its replay reads, and wanted descendants whose replay reads it.
  // With `ancestors_only`, what bringing `slot` back by replay costs. The walk stops once the
  // cost passes `limit_ns`, and returns what it had counted (more than the limit, at most the
  // full cost). REQUIRES: a producer.
  std::int64_t cost_ns(std::uint32_t slot, bool ancestors_only,
                       std::int64_t limit_ns = std::numeric_limits<std::int64_t>::max()) {
    if (seen_op_.empty()) {
      if (shared_readers_ == nullptr) {
        own_readers_ = tape_readers(tensors_, tape_);
        shared_readers_ = &own_readers_;
      }
      wanted_ = replay_inputs(tensors_, tape_);
      seen_op_.assign(tape_.size(), 0);
    }
    ++epoch_;
    std::int64_t cost = 0;
    pending_.assign(1, slot);
    while (!pending_.empty()) {
      const std::uint32_t s = pending_.back();
      pending_.pop_back();
      const TensorRecord& r = tensors_.at(s);
      const auto producer = static_cast<std::size_t>(r.producer);
      if (seen_op_[producer] != epoch_) {
        seen_op_[producer] = epoch_;
        cost += tape_[producer].cost_ns;
        if (cost > limit_ns) return cost;
        for (std::uint32_t input : tape_[producer].inputs) {
          const TensorRecord& in = tensors_.at(input);
          if (in.residency == Residency::kDropped && in.has_producer()) pending_.push_back(input);
        }
      }
      if (ancestors_only) continue;
      for (std::uint32_t op : (*shared_readers_)[s]) {
        if (seen_op_[op] == epoch_) continue;
        for (std::uint32_t out : tape_[op].outputs) {
          if (wanted_dropped(out)) pending_.push_back(out);
        }
      }
    }
    return cost;
  }

 private:
  // A dropped tensor some replay will rebuild: live and not released, or read by such a replay.
  bool wanted_dropped(std::uint32_t slot) const {
    const TensorRecord& r = tensors_.at(slot);
    return r.live && r.residency == Residency::kDropped && r.has_producer() &&
           (!r.released || wanted_[slot]);
  }

  const TensorTable& tensors_;
  const std::vector<OpRecord>& tape_;
  const Readers* shared_readers_;
  Readers own_readers_;
  std::vector<bool> wanted_;
  std::vector<std::uint32_t> seen_op_;  // epoch_ of the traversal that counted the op
  std::uint32_t epoch_ = 0;
  std::vector<std::uint32_t> pending_;
};

bool droppable(const TensorRecord& record) {
  return record.has_producer() && record.kind != TensorKind::kParameter &&
         record.kind != TensorKind::kInput && record.kind != TensorKind::kOptimizerState;
}

EvictionRanking::EvictionRanking(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                                 const EvictionContext& context, const Readers* readers, bool lazy)
    : tensors_(tensors),
      tape_(tape),
      context_(context),
      may_drop_(context.policy == EvictionPolicy::kRecompute ||
                context.policy == EvictionPolicy::kBoth),
      may_swap_(context.policy == EvictionPolicy::kSwap ||
                context.policy == EvictionPolicy::kBoth) {
  if (context.policy == EvictionPolicy::kNone) return;
  if (may_drop_) costs_ = std::make_unique<NeighbourhoodCost>(tensors, tape, readers);
  for (std::uint32_t slot = 0; slot < tensors.slot_count(); ++slot) {
    const TensorRecord& r = tensors.at(slot);
    if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0) continue;
    const bool can_swap = swappable(r);
    if (!(may_drop_ && droppable(r)) && !can_swap) continue;
    if (!may_drop_ || !lazy) {
      // Under swap every score is exact and cheap.
      if (std::optional<EvictionCandidate> c = exact(slot, std::nullopt, nullptr)) {
        push(*c, /*is_exact=*/true);
      }
      continue;
    }
    // A lower bound of the exact score: a drop costs at least the tensor's own producer (its
    // neighbourhood only adds), and under both the exact cost is the swap or a drop.
    double cost_s = std::numeric_limits<double>::infinity();
    if (droppable(r)) {
      cost_s = static_cast<double>(tape_[static_cast<std::size_t>(r.producer)].cost_ns) * 1e-9;
    }
    if (can_swap) cost_s = std::min(cost_s, swap_seconds(r));
    push({slot, EvictionAction::kDrop, cost_s / (bytes_of(r) * staleness_of(r))},
         /*is_exact=*/false);
  }
}

EvictionRanking::~EvictionRanking() = default;

std::optional<EvictionCandidate> EvictionRanking::next() {
  while (!bounds_.empty()) {
    // The best exact score comes first when no bound can still beat it.
    if (!exact_.empty() && Entry::later(bounds_.front(), exact_.front())) break;
    std::pop_heap(bounds_.begin(), bounds_.end(), Entry::later);
    const Entry top = bounds_.back();
    bounds_.pop_back();
    // Its bound came first: the exact score (never below the bound). The walk is cut once the
    // tensor can no longer come before the best exact score known, and what it counted by then
    // is a tighter bound, queued again.
    std::optional<double> cut;
    if (!exact_.empty() && exact_.front().used_now == top.used_now) {
      cut = exact_.front().candidate.score;
    }
    bool is_exact = true;
    if (std::optional<EvictionCandidate> c = exact(top.candidate.slot, cut, &is_exact)) {
      push(*c, is_exact);
    }
  }
  if (exact_.empty()) return std::nullopt;
  std::pop_heap(exact_.begin(), exact_.end(), Entry::later);
  const EvictionCandidate best = exact_.back().candidate;
  exact_.pop_back();
  return best;
}

std::optional<EvictionCandidate> EvictionRanking::exact(std::uint32_t slot,
                                                        std::optional<double> cut, bool* is_exact) {
  const TensorRecord& r = tensors_.at(slot);
  const bool clean = r.host_ptr != nullptr;
  const bool can_drop =
      may_drop_ && droppable(r) && recoverable(tensors_, tape_, slot, recoverable_memo_);
  const bool can_swap = swappable(r);
  if (!can_drop && !can_swap) return std::nullopt;
  const double bytes = bytes_of(r);
  const double staleness = staleness_of(r);
  EvictionCandidate c{slot, can_drop ? EvictionAction::kDrop : EvictionAction::kSwap, 0};
  if (context_.policy == EvictionPolicy::kSwap) {
    // Largest first; a clean copy before everything; older first among equals.
    c.score = (clean ? -1e30 : 0) - bytes - staleness / (staleness + 1);
    return c;
  }
  double cost_s = 0;
  if (can_drop) {
    // Under a cut, the walk may stop once the drop's cost (or the swap's, when cheaper: the
    // exact cost is one of the two) puts the score past it.
    std::int64_t limit_ns = std::numeric_limits<std::int64_t>::max();
    const double swap_score =
        can_swap ? swap_seconds(r) / (bytes * staleness) : std::numeric_limits<double>::infinity();
    if (cut.has_value() && swap_score > *cut) {
      const double limit = *cut * bytes * staleness * 1e9;
      if (limit < 9e18) limit_ns = static_cast<std::int64_t>(limit);
    }
    const std::int64_t cost_ns = costs_->cost_ns(slot, false, limit_ns);
    if (cost_ns > limit_ns) {
      const double partial =
          std::min(static_cast<double>(cost_ns) * 1e-9 / (bytes * staleness), swap_score);
      if (partial > *cut) {  // past the cut in the scores' own arithmetic too
        *is_exact = false;
        c.score = partial;
        return c;
      }
      cost_s = static_cast<double>(costs_->cost_ns(slot, false)) * 1e-9;
    } else {
      cost_s = static_cast<double>(cost_ns) * 1e-9;
    }
  }
  if (can_swap) {
    const double swap_s = swap_seconds(r);
    const double replay_s = can_drop ? static_cast<double>(costs_->cost_ns(slot, true)) * 1e-9 : 0;
    if (!can_drop || swap_s < replay_s) {
      c.action = EvictionAction::kSwap;
      cost_s = swap_s;
    }
  }
  c.score = cost_s / (bytes * staleness);
  return c;
}

bool EvictionRanking::swappable(const TensorRecord& r) const {
  return may_swap_ && (r.host_ptr != nullptr || r.bytes <= context_.host_tier_free_bytes);
}

double EvictionRanking::swap_seconds(const TensorRecord& r) const {
  const double copy_s = bytes_of(r) / context_.host_link_bytes_per_s;
  return (r.host_ptr != nullptr ? 0 : copy_s) + copy_s;
}

double EvictionRanking::bytes_of(const TensorRecord& r) {
  return static_cast<double>(std::max<std::size_t>(r.bytes, 1));
}

double EvictionRanking::staleness_of(const TensorRecord& r) const {
  return static_cast<double>(context_.tick - r.last_access + 1);
}

void EvictionRanking::push(const EvictionCandidate& c, bool is_exact) {
  // Under recompute or both, a tensor used during the current tick (by the op being prepared
  // or a replay for it) goes last: the op's other inputs are often rebuilt from it next, and
  // evicting it would replay the same producers again and again within one op.
  const bool used_now = may_drop_ && tensors_.at(c.slot).last_access >= context_.tick;
  std::vector<Entry>& heap = is_exact ? exact_ : bounds_;
  heap.push_back({c, used_now});
  std::push_heap(heap.begin(), heap.end(), Entry::later);
}

bool EvictionRanking::Entry::later(const Entry& a, const Entry& b) {
  if (a.used_now != b.used_now) return a.used_now;
  if (a.candidate.score != b.candidate.score) return a.candidate.score > b.candidate.score;
  return a.candidate.slot > b.candidate.slot;
}

std::vector<EvictionCandidate> rank_eviction_candidates(const TensorTable& tensors,
                                                        const std::vector<OpRecord>& tape,
                                                        const EvictionContext& context, bool lazy) {
  std::vector<EvictionCandidate> ranked;
  EvictionRanking ranking(tensors, tape, context, nullptr, lazy);
  while (std::optional<EvictionCandidate> c = ranking.next()) ranked.push_back(*c);
  return ranked;
}

}  // namespace ebb
