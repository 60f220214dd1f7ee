// run_dtr_reference: DTR's simulator with h_DTR^eq over a Profile (see dtr_reference.h).
#include "engine/planner/dtr_reference.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ebb {
namespace {

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// Union-find over evicted tensors' compute (h_DTR^eq's equivalence classes). A node per eviction:
// a tensor evicted again gets a fresh node, and the one it left stays in its class as a path.
class ComputeClasses {
 public:
  std::size_t make(std::int64_t compute_ns) {
    parent_.push_back(parent_.size());
    size_.push_back(1);
    value_.push_back(compute_ns);
    return parent_.size() - 1;
  }
  std::size_t find(std::size_t node) {
    std::size_t root = node;
    while (parent_[root] != root) root = parent_[root];
    while (parent_[node] != root) {
      const std::size_t next = parent_[node];
      parent_[node] = root;
      node = next;
    }
    return root;
  }
  void merge(std::size_t a, std::size_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (size_[a] > size_[b]) std::swap(a, b);
    parent_[a] = b;
    size_[b] += size_[a];
    value_[b] += value_[a];
  }
  std::int64_t& value(std::size_t node) { return value_[find(node)]; }
  std::size_t nodes() const { return parent_.size(); }

 private:
  std::vector<std::size_t> parent_;
  std::vector<std::size_t> size_;
  std::vector<std::int64_t> value_;
};

struct TensorState {
  bool resident = false;
  bool wanted = true;        // the program has not freed it
  bool held = false;         // freed, unrebuildable, kept because an evicted tensor needs it
  bool rebuildable = false;  // not resident: its producer can run again (see can_rebuild)
  std::uint32_t locks = 0;
  std::int64_t last_access_ns = std::numeric_limits<std::int64_t>::min();
  std::size_t node = kNone;              // its class while evicted
  std::size_t open_event = kNone;        // its eviction waiting for the rematerialization
  std::size_t rebuild_read_for = kNone;  // the program op whose rematerializations last read it
  std::size_t pool_stamp = 0;            // the stamp of its valid pool entry; 0: not in the pool
};

// One run. Not thread-safe; lives for one call.
class DtrRun {
 public:
  DtrRun(const Profile& profile, const DtrReferenceOptions& options)
      : p_(profile),
        options_(options),
        state_(profile.tensors.size()),
        replayable_(profile.ops.size(), true),
        seen_(profile.tensors.size(), 0),
        event_limit_(8 * (profile.ops.size() + profile.tensors.size()) + 4096) {}

  DtrReferenceResult run() {
    mark_unreplayable_ops();
    for (const ProfiledOp& op : p_.ops) r_.base_compute_ns += op.duration_ns;
    for (const ProfiledTensor& t : p_.tensors) {
      if (t.producer.has_value()) continue;
      state_[t.id].resident = true;
      mem_ += t.bytes;
    }
    r_.peak_bytes = mem_;
    if (mem_ > options_.budget_bytes) {
      stop(DtrOutcome::kOutOfMemory,
           "the tensors that exist before the iteration take " + std::to_string(mem_) + " bytes");
      return r_;
    }
    for (const ProfiledOp& op : p_.ops) {
      if (!materialize(op.index, false, op.index)) return r_;
      ops_run_ = op.index + 1;
      for (std::size_t id : op.frees) release(id);
      recheck_held();
    }
    if (options_.rematerialize_outputs) {
      for (const ProfiledTensor& t : p_.tensors) {
        if (!state_[t.id].wanted || state_[t.id].resident || !t.producer.has_value()) continue;
        if (!materialize(*t.producer, true, p_.ops.size())) return r_;
        lock(t.id);  // pinned, as the authors' simulator pins its outputs
      }
    }
    return r_;
  }

 private:
  std::int64_t compute_of(std::size_t id) const {
    return p_.ops[*p_.tensors[id].producer].duration_ns;
  }

  // An op that reads a tensor a later op writes in place would not give the same bits again.
  void mark_unreplayable_ops() {
    for (const ProfiledOp& op : p_.ops) {
      for (std::size_t w : op.writes) {
        for (std::size_t reader : p_.tensors[w].accesses) {
          if (reader < op.index) replayable_[reader] = false;
        }
      }
    }
  }

  bool available(std::size_t id) const {
    const TensorState& s = state_[id];
    return s.resident || s.rebuildable;
  }

  bool can_rebuild(std::size_t id) const {
    const ProfiledTensor& t = p_.tensors[id];
    if (!t.producer.has_value() || !replayable_[*t.producer]) return false;
    const ProfiledOp& op = p_.ops[*t.producer];
    return std::all_of(op.inputs.begin(), op.inputs.end(),
                       [this](std::size_t in) { return available(in); });
  }

  // Calls f(neighbour) for the inputs of the tensor's producer and the outputs of the ops that
  // have read it so far (the paper's neighbourhood: parents and children).
  template <typename F>
  void for_each_neighbour(std::size_t id, F&& f) const {
    const ProfiledTensor& t = p_.tensors[id];
    if (t.producer.has_value()) {
      for (std::size_t in : p_.ops[*t.producer].inputs) {
        if (in != id) f(in);
      }
    }
    for (std::size_t reader : t.accesses) {
      if (reader >= ops_run_) break;
      for (std::size_t out : p_.ops[reader].outputs) f(out);
    }
  }

  // h_DTR^eq; +inf for a tensor of 0 bytes or accessed at this very clock.
  double cost(std::size_t id) {
    std::int64_t e = compute_of(id);
    ++stamp_;
    for_each_neighbour(id, [&](std::size_t n) {
      const std::size_t node = state_[n].node;
      if (node == kNone) return;
      const std::size_t root = classes_.find(node);
      if (root >= class_seen_.size()) class_seen_.resize(classes_.nodes(), 0);
      if (class_seen_[root] == stamp_) return;
      class_seen_[root] = stamp_;
      e += classes_.value(root);
    });
    const double staleness =
        static_cast<double>(clock_ns_) - static_cast<double>(state_[id].last_access_ns);
    const double denominator = static_cast<double>(p_.tensors[id].bytes) * staleness;
    if (denominator <= 0) return std::numeric_limits<double>::infinity();
    return static_cast<double>(e) / denominator;
  }

  void add_to_pool(std::size_t id) {
    TensorState& s = state_[id];
    if (s.pool_stamp != 0 || !s.resident || s.locks > 0 || s.held) return;
    if (!p_.tensors[id].producer.has_value()) return;
    pool_.push_back({id, ++pool_stamps_});
    s.pool_stamp = pool_stamps_;
  }
  void remove_from_pool(std::size_t id) {
    if (state_[id].pool_stamp == 0) return;
    state_[id].pool_stamp = 0;
    // Entries are invalidated in place, which keeps the pool in the order tensors became
    // evictable (the authors' pool is a list in that order); compact when half are stale.
    if (++stale_entries_ > pool_.size() / 2 + 64) {
      std::erase_if(pool_,
                    [this](const PoolEntry& e) { return state_[e.tensor].pool_stamp != e.stamp; });
      stale_entries_ = 0;
    }
  }

  void lock(std::size_t id) {
    if (state_[id].locks++ == 0) remove_from_pool(id);
  }
  void unlock(std::size_t id) {
    if (--state_[id].locks == 0) add_to_pool(id);
  }

  // The tensor's bytes go; a tensor with a producer joins its evicted neighbours' classes.
  void leave(std::size_t id, bool rebuildable) {
    TensorState& s = state_[id];
    remove_from_pool(id);
    s.resident = false;
    s.held = false;
    s.rebuildable = rebuildable;
    mem_ -= p_.tensors[id].bytes;
    if (!p_.tensors[id].producer.has_value()) return;
    s.node = classes_.make(compute_of(id));
    for_each_neighbour(id, [&](std::size_t n) {
      if (state_[n].node != kNone) classes_.merge(state_[n].node, s.node);
    });
  }

  // Walks forward from `id` through evicted tensors that can be rebuilt (the ones a
  // rematerialization could rebuild through it); `visit` returns true to stop the walk.
  template <typename F>
  bool walk_rebuild_readers(std::size_t id, F&& visit) {
    ++stamp_walk_;
    walk_.clear();
    walk_.push_back(id);
    while (!walk_.empty()) {
      const std::size_t at = walk_.back();
      walk_.pop_back();
      for (std::size_t reader : p_.tensors[at].accesses) {
        if (reader >= ops_run_) break;
        for (std::size_t out : p_.ops[reader].outputs) {
          TensorState& s = state_[out];
          if (s.resident || !s.rebuildable || seen_[out] == stamp_walk_) continue;
          seen_[out] = stamp_walk_;
          if (visit(out)) return true;
          walk_.push_back(out);
        }
      }
    }
    return false;
  }

  // Whether an evicted tensor the program still wants is rebuilt through `id`.
  bool needed(std::size_t id) {
    return walk_rebuild_readers(id, [this](std::size_t out) { return state_[out].wanted; });
  }

  // The program freed the tensor: eager eviction when it can be rebuilt; otherwise kept while an
  // evicted tensor still wanted needs it, gone (and what was rebuilt only through it with it)
  // when none does.
  void release(std::size_t id) {
    TensorState& s = state_[id];
    s.wanted = false;
    if (!s.resident) return;
    if (can_rebuild(id)) {
      leave(id, true);
    } else if (options_.keep_freed_constants && !p_.tensors[id].producer.has_value()) {
      remove_from_pool(id);
      s.held = true;  // for good: never in held_, so never rechecked
    } else if (needed(id)) {
      remove_from_pool(id);
      s.held = true;
      held_.push_back(id);
    } else {
      gone(id);
    }
  }

  void gone(std::size_t id) {
    leave(id, false);
    walk_rebuild_readers(id, [this](std::size_t out) {
      state_[out].rebuildable = false;
      return false;
    });
  }

  void recheck_held() {
    std::erase_if(held_, [this](std::size_t id) {
      if (needed(id)) return false;
      gone(id);
      return true;
    });
  }

  void evict(std::size_t id) {
    leave(id, true);
    ++r_.evictions;
    state_[id].open_event = r_.events.size();
    DtrEvent e;
    e.tensor = id;
    if (ops_run_ > 0) e.evicted_after = ops_run_ - 1;
    e.read_before_eviction = state_[id].rebuild_read_for == ops_run_;
    r_.events.push_back(e);
  }

  // Program op `op`, or the end of the iteration (op == ops.size(): the outputs' rebuilds).
  std::string where(std::size_t op) const {
    if (op >= p_.ops.size()) return "the outputs at the end of the iteration";
    return "op " + std::to_string(op) + " \"" + p_.ops[op].name + "\"";
  }

  void stop(DtrOutcome outcome, std::string message) {
    r_.outcome = outcome;
    r_.message = std::move(message);
  }

  // Evicts by h until `bytes` more fit; false (the outcome set) when nothing can be evicted.
  bool make_room(std::size_t bytes, std::size_t op) {
    while (mem_ + bytes > options_.budget_bytes) {
      std::size_t best = kNone;
      double best_cost = std::numeric_limits<double>::infinity();
      for (const PoolEntry& e : pool_) {
        if (state_[e.tensor].pool_stamp != e.stamp || !can_rebuild(e.tensor)) continue;
        const double c = cost(e.tensor);
        // Ties go to the later entry, as in the authors' pool scan.
        if (c <= best_cost) {
          best_cost = c;
          best = e.tensor;
        }
        if (c == 0) break;
      }
      if (best == kNone) {
        stop(DtrOutcome::kOutOfMemory, where(op) + " needs " + std::to_string(bytes) +
                                           " bytes with " + std::to_string(mem_) +
                                           " resident and nothing evictable under the budget of " +
                                           std::to_string(options_.budget_bytes));
        return false;
      }
      evict(best);
      if (r_.events.size() > event_limit_) {
        stop(DtrOutcome::kThrashed,
             "more than " + std::to_string(event_limit_) + " evictions by " + where(op));
        return false;
      }
    }
    return true;
  }

  // Runs op `op` (again when `remat`), for program op `for_op`: its inputs made resident first,
  // evicted ones rebuilt, on an explicit stack (replay chains can be as long as the profile).
  bool materialize(std::size_t op, bool remat, std::size_t for_op) {
    struct Frame {
      std::size_t op;
      bool remat;
      std::size_t next = 0;  // the input to look at next
      std::size_t flags;     // its inputs' entries in locked_early
    };
    std::vector<Frame> stack;
    std::vector<bool> locked_early;  // per input of each frame: locked before any rebuild
    const auto push = [&](std::size_t o, bool again) {
      const ProfiledOp& pop = p_.ops[o];
      stack.push_back({o, again, 0, locked_early.size()});
      for (std::size_t in : pop.inputs) {
        state_[in].last_access_ns = clock_ns_;
        if (again) state_[in].rebuild_read_for = for_op;
      }
      for (std::size_t in : pop.inputs) {
        const bool now = state_[in].resident;
        if (now) lock(in);
        locked_early.push_back(now);
      }
    };
    push(op, remat);
    while (!stack.empty()) {
      Frame& f = stack.back();
      const ProfiledOp& o = p_.ops[f.op];
      bool descended = false;
      while (f.next < o.inputs.size()) {
        const std::size_t in = o.inputs[f.next];
        if (locked_early[f.flags + f.next]) {
          ++f.next;
          continue;
        }
        if (!state_[in].resident) {
          const ProfiledTensor& t = p_.tensors[in];
          if (!state_[in].rebuildable || !t.producer.has_value()) {
            stop(DtrOutcome::kOutOfMemory, where(for_op) + " needs tensor " + std::to_string(in) +
                                               ", which cannot be rebuilt");
            return false;
          }
          push(*t.producer, true);
          descended = true;
          break;
        }
        lock(in);
        ++f.next;
      }
      if (descended) continue;
      if (!compute(f.op, f.remat, for_op)) return false;
      for (std::size_t in : o.inputs) unlock(in);
      locked_early.resize(f.flags);
      stack.pop_back();
      if (options_.max_remat_overhead > 0 &&
          static_cast<double>(r_.remat_compute_ns) >
              options_.max_remat_overhead * static_cast<double>(r_.base_compute_ns)) {
        stop(DtrOutcome::kThrashed,
             "rematerializations took " + std::to_string(r_.remat_compute_ns) +
                 " ns, past the limit of " + std::to_string(options_.max_remat_overhead) +
                 "x the base compute, by " + where(for_op));
        return false;
      }
    }
    return true;
  }

  bool compute(std::size_t op, bool remat, std::size_t for_op) {
    const ProfiledOp& o = p_.ops[op];
    std::size_t bytes = 0;
    for (std::size_t out : o.outputs) bytes += p_.tensors[out].bytes;
    if (!make_room(bytes, for_op)) return false;
    clock_ns_ += o.duration_ns;
    if (remat) {
      r_.remat_compute_ns += o.duration_ns;
      ++r_.rematerializations;
    }
    mem_ += bytes;
    r_.peak_bytes = std::max(r_.peak_bytes, mem_);
    for (std::size_t out : o.outputs) {
      TensorState& s = state_[out];
      if (s.resident) {
        mem_ -= p_.tensors[out].bytes;  // computed twice: the copy goes at once
        continue;
      }
      s.resident = true;
      s.rebuildable = false;
      if (!s.wanted) ++r_.rebuilt_after_free;
      if (s.node != kNone) {
        classes_.value(s.node) -= compute_of(out);
        s.node = kNone;
      }
      if (s.open_event != kNone) {
        r_.events[s.open_event].rematerialized_before = for_op;
        s.open_event = kNone;
      }
      if (!remat) s.last_access_ns = clock_ns_;
      add_to_pool(out);
    }
    return true;
  }

  struct PoolEntry {
    std::size_t tensor;
    std::size_t stamp;
  };

  const Profile& p_;
  const DtrReferenceOptions& options_;
  std::vector<TensorState> state_;
  std::vector<bool> replayable_;
  ComputeClasses classes_;
  std::vector<PoolEntry> pool_;
  std::size_t pool_stamps_ = 0;
  std::size_t stale_entries_ = 0;
  std::vector<std::size_t> held_;
  std::vector<std::size_t> class_seen_;
  std::size_t stamp_ = 0;
  std::vector<std::size_t> seen_;
  std::size_t stamp_walk_ = 0;
  std::vector<std::size_t> walk_;
  std::size_t ops_run_ = 0;
  std::size_t mem_ = 0;
  std::int64_t clock_ns_ = 0;
  const std::size_t event_limit_;
  DtrReferenceResult r_;
};

}  // namespace

std::string_view dtr_outcome_name(DtrOutcome outcome) {
  switch (outcome) {
    case DtrOutcome::kFits:
      return "fits";
    case DtrOutcome::kOutOfMemory:
      return "out of memory";
    case DtrOutcome::kThrashed:
      return "thrashed";
  }
  return "fits";
}

double DtrReferenceResult::extra_compute() const {
  return base_compute_ns > 0
             ? static_cast<double>(remat_compute_ns) / static_cast<double>(base_compute_ns)
             : 0.0;
}

Result<DtrReferenceResult> run_dtr_reference(const Profile& profile,
                                             const DtrReferenceOptions& options) {
  if (options.budget_bytes == 0) return invalid_argument("dtr reference: a budget of 0 bytes");
  if (options.max_remat_overhead < 0) {
    return invalid_argument("dtr reference: a negative remat limit " +
                            std::to_string(options.max_remat_overhead));
  }
  DtrRun run(profile, options);
  return run.run();
}

std::vector<Eviction> dtr_plan_evictions(const Profile& profile, const DtrReferenceResult& run,
                                         bool after_reads) {
  const std::vector<std::size_t> freed_after = freed_after_ops(profile);
  // Per tensor, its last interval in `out`: 1 + index, 0 for none.
  std::vector<std::size_t> last(profile.tensors.size(), 0);
  std::vector<Eviction> out;
  for (const DtrEvent& e : run.events) {
    const ProfiledTensor& t = profile.tensors[e.tensor];
    // A tensor with a producer leaves after some op ran.
    const std::size_t during = e.evicted_after.value_or(0) + 1;
    if (freed_after[e.tensor] != kNeverFreed && during > freed_after[e.tensor]) continue;
    const bool back_at_once =
        e.rematerialized_before.has_value() && *e.rematerialized_before <= during;
    const std::size_t after =
        after_reads && e.read_before_eviction && !back_at_once && during < profile.ops.size()
            ? during
            : during - 1;
    Eviction* ev = nullptr;
    if (last[e.tensor] > 0) {
      Eviction& prev = out[last[e.tensor] - 1];
      // Given up for good already, or back for a rematerialization only and away again before
      // an op read it: the same interval, which now ends where this one does.
      if (!prev.needed_at.has_value() || *prev.needed_at > after) ev = &prev;
    }
    if (ev == nullptr) {
      out.emplace_back();
      ev = &out.back();
      ev->tensor = e.tensor;
      ev->method = EvictionMethod::kRecompute;
      ev->evict_after = std::max(after, *t.producer);
      last[e.tensor] = out.size();
    }
    ev->needed_at.reset();
    ev->prefetch_at = 0;
    if (e.rematerialized_before.has_value() && *e.rematerialized_before < profile.ops.size()) {
      const std::size_t back = *e.rematerialized_before;
      auto next = std::lower_bound(t.accesses.begin(), t.accesses.end(), back);
      if (next != t.accesses.end()) {
        ev->needed_at = *next;
        ev->prefetch_at = std::max(back, ev->evict_after + 1);
      }
    }
  }
  sort_evictions(out);
  return out;
}

}  // namespace ebb
