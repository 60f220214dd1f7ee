// The branch-and-bound search of arena_search.h. The depth-first search keeps its own stack of
// frames (not the call stack: a trace has thousands of buffers) and an undo log, so that
// backtracking restores the exact state before a placement.
#include "allocator/arena_search.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

namespace ebb::arena_internal {
namespace {

using Offset = std::int64_t;  // bytes; every figure stays below 2^62 (check_plan_buffers)

// The Luby sequence 1 1 2 1 1 2 4 1 1 2 1 1 2 4 8 ... at i >= 1: at i = 2^k - 1 it is 2^(k-1);
// between, it repeats itself from the start.
std::int64_t luby(std::int64_t i) {
  while (true) {  // i shrinks every round
    int k = 1;
    while ((std::int64_t{1} << k) - 1 < i) ++k;
    if ((std::int64_t{1} << k) - 1 == i) return std::int64_t{1} << (k - 1);
    i -= (std::int64_t{1} << (k - 1)) - 1;
  }
}

constexpr std::size_t kMaxSectionEntries = 4'000'000;  // (buffer, section) pairs, 16 MiB

Offset align_up(Offset value, Offset alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// A stretch of time (a run of sections) that no buffer crosses into from outside.
struct Part {
  int first_section = 0;
  int end_section = 0;       // one past the last
  std::vector<int> buffers;  // indices into the input
  Offset min_size = 1;       // the smallest size among them
};

enum class PartOutcome { kFound, kInfeasible, kTimedOut, kNodeLimit };

// What a search node turns out to be once its placements are propagated.
enum class NodeKind {
  kSolved,   // every buffer of the part is placed
  kDeadEnd,  // a section bound fails, or no buffer can be placed at all
  kSplit,    // the unplaced buffers fall into stretches of time that share no buffer
  kBranch,   // a hole to fill: see Frame
};

// One branching: the lowest offset `level` at which a buffer can still be placed, a section at
// that level (the one with the fewest buffers that can take it), and those buffers in preorder.
// Branch i places candidates[i] at `level`; the last branch leaves the hole empty, barring every
// candidate from `level`. The branches are disjoint (the candidates overlap in time), and
// together they cover every canonical packing, so each packing is reached by one path only.
struct Frame {
  Offset level = 0;
  std::vector<int> candidates;
  std::size_t next = 0;  // the branch to try next; candidates.size() is the empty hole
  bool applied = false;  // a branch of this frame is in the state now
  int placed = -1;       // the buffer that branch placed, or -1 for the empty hole
  std::size_t offset_mark = 0;
  std::size_t bar_mark = 0;
};

class PackingSearch {
 public:
  PackingSearch(const std::vector<PlanBuffer>& buffers, std::size_t capacity_bytes,
                Clock::time_point deadline)
      : buffers_(buffers), capacity_(static_cast<Offset>(capacity_bytes)), deadline_(deadline) {}

  SearchResult run() {
    SearchResult result;
    // The search's tables grow with buffers x sections; past this it could not finish anyway.
    if (!build_sections()) return finish(SearchOutcome::kTimedOut, result);
    result.offsets.assign(buffers_.size(), 0);
    for (Offset total : total_) {
      if (total > capacity_) return finish(SearchOutcome::kInfeasible, result);
    }
    for (const Part& part : build_parts()) {
      PartOutcome outcome = solve_part(part);
      if (outcome == PartOutcome::kInfeasible) return finish(SearchOutcome::kInfeasible, result);
      if (outcome == PartOutcome::kTimedOut) return finish(SearchOutcome::kTimedOut, result);
      for (int b : part.buffers) result.offsets[b] = static_cast<std::size_t>(solution_[b]);
    }
    return finish(SearchOutcome::kFound, result);
  }

 private:
  SearchResult& finish(SearchOutcome outcome, SearchResult& result) const {
    result.outcome = outcome;
    result.nodes = nodes_;
    if (outcome != SearchOutcome::kFound) result.offsets.clear();
    return result;
  }

  // Sections: the stretches between consecutive distinct lifetime ends. False when the tables
  // would pass kMaxSectionEntries.
  bool build_sections() {
    std::vector<std::int64_t> times;
    times.reserve(2 * buffers_.size());
    for (const PlanBuffer& b : buffers_) {
      times.push_back(b.lower);
      times.push_back(b.upper);
    }
    std::sort(times.begin(), times.end());
    times.erase(std::unique(times.begin(), times.end()), times.end());
    const int sections = times.empty() ? 0 : static_cast<int>(times.size()) - 1;
    section_buffers_.assign(sections, {});
    total_.assign(sections, 0);
    crossing_.assign(sections + 1, 0);
    const int n = static_cast<int>(buffers_.size());
    lo_.resize(n);
    hi_.resize(n);
    std::size_t entries = 0;
    for (int i = 0; i < n; ++i) {
      const PlanBuffer& b = buffers_[i];
      lo_[i] =
          static_cast<int>(std::lower_bound(times.begin(), times.end(), b.lower) - times.begin());
      hi_[i] =
          static_cast<int>(std::lower_bound(times.begin(), times.end(), b.upper) - times.begin());
      entries += static_cast<std::size_t>(hi_[i] - lo_[i]);
    }
    if (entries > kMaxSectionEntries) return false;
    for (int i = 0; i < n; ++i) {
      for (int s = lo_[i]; s < hi_[i]; ++s) {
        section_buffers_[s].push_back(i);
        total_[s] += static_cast<Offset>(buffers_[i].size_bytes);
      }
      for (int k = lo_[i] + 1; k < hi_[i]; ++k) ++crossing_[k];
    }
    // Buffers overlap in time exactly when their section ranges intersect.
    std::vector<int> by_lo(n);
    std::iota(by_lo.begin(), by_lo.end(), 0);
    std::sort(by_lo.begin(), by_lo.end(), [&](int a, int b) { return lo_[a] < lo_[b]; });
    overlaps_.assign(n, {});
    for (int x = 0; x < n; ++x) {
      const int i = by_lo[x];
      for (int y = x + 1; y < n && lo_[by_lo[y]] < hi_[i]; ++y) {
        overlaps_[i].push_back(by_lo[y]);
        overlaps_[by_lo[y]].push_back(i);
      }
    }
    offset_.assign(n, -1);
    min_offset_.assign(n, 0);
    barred_.assign(n, -1);
    solution_.assign(n, 0);
    section_min_.assign(sections, std::numeric_limits<Offset>::max());
    section_at_min_.assign(sections, 0);
    section_barred_.assign(sections, 0);
    stale_.assign(sections, 0);
    for (int i = 0; i < n; ++i) enter(i);
    return true;
  }

  // Cuts time wherever no buffer is live across the boundary.
  std::vector<Part> build_parts() const {
    const int sections = static_cast<int>(section_buffers_.size());
    std::vector<Part> parts;
    for (int s = 0; s < sections; ++s) {
      if (s == 0 || crossing_[s] == 0) parts.push_back(Part{s, s + 1, {}});
      parts.back().end_section = s + 1;
    }
    for (std::size_t i = 0; i < buffers_.size(); ++i) {
      // parts are sorted by first section; the buffer's part is the last one starting at or
      // before its first section
      auto it = std::upper_bound(parts.begin(), parts.end(), lo_[i],
                                 [](int s, const Part& p) { return s < p.first_section; });
      std::prev(it)->buffers.push_back(static_cast<int>(i));
    }
    parts.erase(
        std::remove_if(parts.begin(), parts.end(), [](const Part& p) { return p.buffers.empty(); }),
        parts.end());
    for (Part& part : parts) set_min_size(part);
    return parts;
  }

  void set_min_size(Part& part) const {
    part.min_size = std::numeric_limits<Offset>::max();
    for (int b : part.buffers) {
      part.min_size = std::min(part.min_size, static_cast<Offset>(buffers_[b].size_bytes));
    }
  }

  // The three preorders, as a rank per buffer of the part (indexed by buffer).
  std::vector<std::vector<int>> preorders(const Part& part) const {
    struct Key {
      Offset total;
      int width;
      double area;
      int buffer;
    };
    std::vector<Key> keys;
    for (int b : part.buffers) {
      Offset total = 0;
      for (int s = lo_[b]; s < hi_[b]; ++s) total = std::max(total, total_[s]);
      keys.push_back(Key{total, hi_[b] - lo_[b],
                         static_cast<double>(buffers_[b].size_bytes) *
                             static_cast<double>(buffers_[b].upper - buffers_[b].lower),
                         b});
    }
    using Less = bool (*)(const Key&, const Key&);
    const Less orders[] = {
        [](const Key& a, const Key& b) {  // total, width, area
          return std::tie(b.total, b.width, b.area, a.buffer) <
                 std::tie(a.total, a.width, a.area, b.buffer);
        },
        [](const Key& a, const Key& b) {  // width, area, total
          return std::tie(b.width, b.area, b.total, a.buffer) <
                 std::tie(a.width, a.area, a.total, b.buffer);
        },
        [](const Key& a, const Key& b) {  // total, area, width
          return std::tie(b.total, b.area, b.width, a.buffer) <
                 std::tie(a.total, a.area, a.width, b.buffer);
        },
    };
    std::vector<std::vector<int>> ranks;
    for (Less less : orders) {
      std::sort(keys.begin(), keys.end(), less);
      std::vector<int> rank(buffers_.size(), 0);
      for (std::size_t r = 0; r < keys.size(); ++r) rank[keys[r].buffer] = static_cast<int>(r);
      ranks.push_back(std::move(rank));
    }
    return ranks;
  }

  // Restarts under a node limit (Luby, Sinclair and Zuckerman, 1993): run i may visit
  // luby(i) x (the part's buffers) nodes, the size of one descent without a backtrack. Search
  // times are heavy-tailed: one order of the candidates finds a packing in a descent where
  // another needs millions of nodes, and restarts cut the tail. The first runs use the three
  // preorders; later ones random preorders, so that no run repeats another. Luby's schedule is
  // within a log factor of the best fixed schedule for any distribution of run lengths, so it
  // needs no tuning to a set of problems.
  PartOutcome solve_part(const Part& part) {
    std::vector<std::vector<int>> ranks = preorders(part);
    std::vector<int> shuffled = part.buffers;
    const auto unit = static_cast<std::int64_t>(part.buffers.size());
    for (std::int64_t run = 1;; ++run) {
      std::vector<int>& rank = ranks[static_cast<std::size_t>(run - 1) % ranks.size()];
      if (run > static_cast<std::int64_t>(ranks.size())) {
        std::mt19937_64 rng(static_cast<std::uint64_t>(run));
        std::shuffle(shuffled.begin(), shuffled.end(), rng);
        for (std::size_t r = 0; r < shuffled.size(); ++r) rank[shuffled[r]] = static_cast<int>(r);
      }
      run_nodes_ = 0;
      const std::int64_t limit = luby(run) > std::numeric_limits<std::int64_t>::max() / 4 / unit
                                     ? std::numeric_limits<std::int64_t>::max() / 4
                                     : luby(run) * unit;
      PartOutcome outcome = dfs(part, rank, limit);
      if (outcome != PartOutcome::kNodeLimit) return outcome;
    }
  }

  bool placeable(int b) const { return offset_[b] < 0 && barred_[b] < min_offset_[b]; }

  // Propagates the state of `part`: the section bound, the split into independent stretches,
  // or the next hole to fill (into `frame`).
  NodeKind expand(const Part& part, const std::vector<int>& rank, Frame& frame,
                  std::vector<Part>& groups) const {
    // The level: no unplaced buffer can rest lower. A placeable buffer rests at its least offset
    // or higher. A barred one rests on the top of a buffer not yet placed (a placed one would
    // have lifted its least offset past the bar), so at least min_size above the level.
    Offset level = std::numeric_limits<Offset>::max();
    // Dominance (MiniMalloc's): a barred buffer's place at its least offset must be taken by a
    // later buffer, or else it could be moved down there, and that packing is on the branch
    // that placed it. Once the level reaches its top, nothing later can take that place.
    Offset barred_top = std::numeric_limits<Offset>::max();
    bool unplaced = false;
    for (int b : part.buffers) {
      if (offset_[b] >= 0) continue;
      unplaced = true;
      if (placeable(b)) {
        level = std::min(level, min_offset_[b]);
      } else {
        barred_top =
            std::min(barred_top, min_offset_[b] + static_cast<Offset>(buffers_[b].size_bytes));
      }
    }
    if (!unplaced) return NodeKind::kSolved;
    if (level >= barred_top) return NodeKind::kDeadEnd;
    const Offset barred_least = level + part.min_size;
    // The section bound: the least offset any unplaced buffer of a section can take plus their
    // total stays within the capacity. Meanwhile, the section at the level with the fewest
    // buffers that can fill it (first fail).
    int hole = -1;
    int hole_candidates = std::numeric_limits<int>::max();
    int first_open = -1;
    int last_open = -1;
    for (int s = part.first_section; s < part.end_section; ++s) {
      if (total_[s] == 0) continue;
      if (first_open < 0) first_open = s;
      last_open = s;
      if (level + total_[s] > capacity_) return NodeKind::kDeadEnd;
      refresh(s);
      const Offset least =
          section_barred_[s] > 0 ? std::min(section_min_[s], barred_least) : section_min_[s];
      if (least + total_[s] > capacity_) return NodeKind::kDeadEnd;
      const int candidates = section_min_[s] == level ? section_at_min_[s] : 0;
      if (candidates > 0 && candidates < hole_candidates) {
        hole = s;
        hole_candidates = candidates;
      }
    }
    if (split(part, first_open, last_open, groups)) return NodeKind::kSplit;
    frame = Frame{};
    frame.level = level;
    for (int b : section_buffers_[hole]) {
      if (placeable(b) && min_offset_[b] == level) frame.candidates.push_back(b);
    }
    std::sort(frame.candidates.begin(), frame.candidates.end(),
              [&](int a, int b) { return rank[a] < rank[b]; });
    return NodeKind::kBranch;
  }

  // The unplaced buffers of `part`, live in sections [first_open, last_open], split where none
  // is live across a section boundary. False (groups untouched) when there is no such cut.
  bool split(const Part& part, int first_open, int last_open, std::vector<Part>& groups) const {
    bool cut = false;
    for (int k = first_open + 1; k <= last_open && !cut; ++k) cut = crossing_[k] == 0;
    if (!cut) return false;
    groups.clear();
    for (int s = first_open; s <= last_open; ++s) {
      if (groups.empty() || crossing_[s] == 0) groups.push_back(Part{s, s + 1, {}});
      groups.back().end_section = s + 1;
    }
    for (int b : part.buffers) {
      if (offset_[b] >= 0) continue;
      auto it = std::upper_bound(groups.begin(), groups.end(), lo_[b],
                                 [](int s, const Part& p) { return s < p.first_section; });
      std::prev(it)->buffers.push_back(b);
    }
    std::erase_if(groups, [](const Part& g) { return g.buffers.empty(); });
    for (Part& group : groups) set_min_size(group);
    return true;
  }

  // Depth-first search of `part` from the current state. kFound leaves the part's offsets in
  // solution_; every outcome leaves the state as it found it.
  PartOutcome dfs(const Part& part, const std::vector<int>& rank, std::int64_t node_limit) {
    std::vector<Frame> frames(1);
    std::vector<Part> groups;
    switch (expand(part, rank, frames.back(), groups)) {
      case NodeKind::kSolved:
        return PartOutcome::kFound;
      case NodeKind::kDeadEnd:
        return PartOutcome::kInfeasible;
      case NodeKind::kSplit:
        return solve_groups(groups, rank, node_limit);
      case NodeKind::kBranch:
        break;
    }
    PartOutcome outcome = PartOutcome::kInfeasible;
    while (!frames.empty()) {
      const std::size_t depth = frames.size() - 1;
      if (frames[depth].applied) undo(frames[depth]);
      if (frames[depth].next > frames[depth].candidates.size()) {
        frames.pop_back();
        continue;
      }
      if (!apply_next(frames[depth])) continue;
      ++nodes_;
      if (++run_nodes_ > node_limit) {
        outcome = PartOutcome::kNodeLimit;
        break;
      }
      if ((nodes_ & 255) == 0 && Clock::now() > deadline_) {
        outcome = PartOutcome::kTimedOut;
        break;
      }
      Frame child;
      const NodeKind kind = expand(part, rank, child, groups);
      if (kind == NodeKind::kDeadEnd) continue;
      if (kind == NodeKind::kBranch) {
        frames.push_back(std::move(child));
        continue;
      }
      outcome =
          kind == NodeKind::kSolved ? PartOutcome::kFound : solve_groups(groups, rank, node_limit);
      if (outcome == PartOutcome::kInfeasible) continue;
      break;
    }
    if (outcome == PartOutcome::kFound) {
      for (int b : part.buffers) {
        if (offset_[b] >= 0) solution_[b] = offset_[b];
      }
    }
    // Unwind every placement so that the next run starts clean.
    for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
      if (it->applied) undo(*it);
    }
    return frames.empty() ? PartOutcome::kInfeasible : outcome;
  }

  // Independent stretches of time: each is solved on its own (their search trees would
  // otherwise multiply). The first that is not found decides.
  PartOutcome solve_groups(const std::vector<Part>& groups, const std::vector<int>& rank,
                           std::int64_t node_limit) {
    for (const Part& group : groups) {
      PartOutcome outcome = dfs(group, rank, node_limit);
      if (outcome != PartOutcome::kFound) return outcome;
    }
    return PartOutcome::kFound;
  }

  // Puts the frame's next branch into the state. False when the branch is refused at once.
  bool apply_next(Frame& f) {
    const std::size_t branch = f.next++;
    f.applied = true;
    f.offset_mark = offset_log_.size();
    f.bar_mark = bar_log_.size();
    if (branch < f.candidates.size()) {
      f.placed = f.candidates[branch];
      place(f.placed, f.level);
      return true;
    }
    f.placed = -1;
    // The empty hole. A lone candidate that overlaps no other unplaced buffer could never rest
    // higher (nothing is left to rest on), so its hole cannot stay empty. With two or more, each
    // overlaps the others.
    if (f.candidates.size() == 1) {
      const int b = f.candidates[0];
      if (std::none_of(overlaps_[b].begin(), overlaps_[b].end(),
                       [&](int o) { return offset_[o] < 0; })) {
        return false;
      }
    }
    for (int b : f.candidates) bar(b, f.level);
    return true;
  }

  void place(int b, Offset offset) {
    const Offset top = offset + static_cast<Offset>(buffers_[b].size_bytes);
    leave(b);
    offset_[b] = offset;
    for (int s = lo_[b]; s < hi_[b]; ++s) total_[s] -= static_cast<Offset>(buffers_[b].size_bytes);
    for (int k = lo_[b] + 1; k < hi_[b]; ++k) --crossing_[k];
    for (int o : overlaps_[b]) {
      if (offset_[o] >= 0 || min_offset_[o] >= top) continue;
      offset_log_.emplace_back(o, min_offset_[o]);
      leave(o);
      min_offset_[o] = align_up(top, static_cast<Offset>(buffers_[o].alignment));
      enter(o);
    }
  }

  void bar(int b, Offset level) {
    bar_log_.emplace_back(b, barred_[b]);
    leave(b);
    barred_[b] = level;
    enter(b);
  }

  void undo(Frame& f) {
    while (offset_log_.size() > f.offset_mark) {
      const auto [o, old] = offset_log_.back();
      offset_log_.pop_back();
      leave(o);
      min_offset_[o] = old;
      enter(o);
    }
    while (bar_log_.size() > f.bar_mark) {
      const auto [b, old] = bar_log_.back();
      bar_log_.pop_back();
      leave(b);
      barred_[b] = old;
      enter(b);
    }
    if (f.placed >= 0) {
      const int b = f.placed;
      for (int s = lo_[b]; s < hi_[b]; ++s) {
        total_[s] += static_cast<Offset>(buffers_[b].size_bytes);
      }
      for (int k = lo_[b] + 1; k < hi_[b]; ++k) ++crossing_[k];
      offset_[b] = -1;
      enter(b);
      f.placed = -1;
    }
    f.applied = false;
  }

  // The section summaries follow every unplaced buffer: leave(b) before its state changes,
  // enter(b) after. Removing the last buffer at a section's least offset leaves the least
  // unknown until refresh() rescans the section; an entering buffer is exact either way (a
  // stale least is below every remaining one).
  void leave(int b) {
    if (placeable(b)) {
      for (int s = lo_[b]; s < hi_[b]; ++s) {
        if (min_offset_[b] == section_min_[s] && --section_at_min_[s] == 0) mark_stale(s);
      }
    } else {
      for (int s = lo_[b]; s < hi_[b]; ++s) --section_barred_[s];
    }
  }

  void enter(int b) {
    if (placeable(b)) {
      const Offset m = min_offset_[b];
      for (int s = lo_[b]; s < hi_[b]; ++s) {
        if (m < section_min_[s]) {
          section_min_[s] = m;
          section_at_min_[s] = 1;
        } else if (m == section_min_[s]) {
          ++section_at_min_[s];
        }
      }
    } else {
      for (int s = lo_[b]; s < hi_[b]; ++s) ++section_barred_[s];
    }
  }

  void mark_stale(int s) {
    if (stale_[s]) return;
    stale_[s] = 1;
  }

  void refresh(int s) const {
    if (!stale_[s]) return;
    stale_[s] = 0;
    section_min_[s] = std::numeric_limits<Offset>::max();
    section_at_min_[s] = 0;
    for (int b : section_buffers_[s]) {
      if (!placeable(b)) continue;
      if (min_offset_[b] < section_min_[s]) {
        section_min_[s] = min_offset_[b];
        section_at_min_[s] = 1;
      } else if (min_offset_[b] == section_min_[s]) {
        ++section_at_min_[s];
      }
    }
  }

  const std::vector<PlanBuffer>& buffers_;
  const Offset capacity_;
  const Clock::time_point deadline_;
  std::int64_t nodes_ = 0;
  std::int64_t run_nodes_ = 0;  // nodes of the current run under a node limit

  std::vector<int> lo_, hi_;                       // per buffer: its sections [lo, hi)
  std::vector<std::vector<int>> section_buffers_;  // per section: buffers live there
  std::vector<std::vector<int>> overlaps_;         // per buffer: buffers overlapping in time

  std::vector<Offset> offset_;      // per buffer: placed offset, -1 while unplaced
  std::vector<Offset> min_offset_;  // per buffer: the highest top of the placed buffers it meets
  // Per buffer: a level it is barred from (-1: none). While its least offset is at or below
  // it, the buffer cannot rest at its least offset; see expand().
  std::vector<Offset> barred_;
  std::vector<Offset> total_;  // per section: bytes of its unplaced buffers
  // Per section boundary k (between sections k - 1 and k): unplaced buffers live on both sides.
  std::vector<int> crossing_;
  std::vector<Offset> solution_;                    // per buffer: offsets of the last part found
  std::vector<std::pair<int, Offset>> offset_log_;  // (buffer, previous min_offset_)
  std::vector<std::pair<int, Offset>> bar_log_;     // (buffer, previous barred_)
  // Per section, over its unplaced buffers: the least min_offset_ of the placeable ones, how
  // many have it, and how many are barred. A stale section's first two are rescanned on use.
  mutable std::vector<Offset> section_min_;
  mutable std::vector<int> section_at_min_;
  std::vector<int> section_barred_;
  mutable std::vector<char> stale_;
};

}  // namespace

SearchResult search_packing(const std::vector<PlanBuffer>& buffers, std::size_t capacity_bytes,
                            Clock::time_point deadline) {
  PackingSearch search(buffers, capacity_bytes, deadline);
  return search.run();
}

}  // namespace ebb::arena_internal
