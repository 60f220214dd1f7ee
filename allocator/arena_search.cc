// The branch-and-bound search of arena_search.h. The depth-first search keeps its own stack of
// frames (not the call stack: a trace has thousands of buffers) and an undo log, so that
// backtracking restores the exact state before a placement.
#include "allocator/arena_search.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>

namespace ebb::arena_internal {
namespace {

using Offset = std::int64_t;  // bytes; every figure stays below 2^62 (check_plan_buffers)

constexpr std::size_t kMaxSectionEntries = 4'000'000;  // (buffer, section) pairs, 16 MiB

Offset align_up(Offset value, Offset alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// A stretch of time (a run of sections) that no buffer crosses into from outside.
struct Part {
  int first_section = 0;
  int end_section = 0;       // one past the last
  std::vector<int> buffers;  // indices into the input
};

enum class PartOutcome { kFound, kInfeasible, kTimedOut, kNodeLimit };

struct Candidate {
  Offset offset;  // the buffer's least offset now
  int rank;       // its preorder rank
  int buffer;
};

struct Frame {
  std::vector<Candidate> order;  // unplaced buffers by (offset, rank)
  std::size_t next = 0;          // next candidate to try
  Offset min_height = 0;         // least top any unplaced buffer can reach
  Offset bound_offset = -1;      // canonical order: candidates must follow (offset, rank)
  int bound_rank = -1;
  int placed = -1;  // the buffer this frame's current branch placed, or -1
  // The placed buffer overlaps no unplaced buffer in time: its offset is final in every
  // completion, so when its subtree fails no other branch of this frame can succeed.
  bool hatless = false;
  std::size_t offset_mark = 0;
  std::size_t floor_mark = 0;
  // Over the part's sections, relative to its first: the most unplaced bytes in any section
  // before s (prefix) and from s on (suffix). A candidate at offset o leaves the sections
  // outside its lifetime untouched, and the section bound then needs o + total <= capacity
  // there, so most failing candidates are refused without placing them.
  std::vector<Offset> prefix_total;  // [k]: max total of sections first..first+k-1
  std::vector<Offset> suffix_total;  // [k]: max total of sections first+k..end-1
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
    floor_.assign(sections, 0);
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
      const PlanBuffer& b = buffers_[i];
      for (int s = lo_[i]; s < hi_[i]; ++s) {
        section_buffers_[s].push_back(i);
        total_[s] += static_cast<Offset>(b.size_bytes);
      }
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
    solution_.assign(n, 0);
    affected_stamp_.assign(sections, 0);
    return true;
  }

  // Cuts time wherever no buffer is live across the boundary.
  std::vector<Part> build_parts() const {
    const int sections = static_cast<int>(section_buffers_.size());
    std::vector<int> crossing(sections + 1, 0);  // buffers live on both sides of boundary k
    for (std::size_t i = 0; i < buffers_.size(); ++i) {
      if (hi_[i] - lo_[i] >= 2) {
        ++crossing[lo_[i] + 1];
        --crossing[hi_[i]];
      }
    }
    std::vector<Part> parts;
    int live = 0;
    for (int s = 0; s < sections; ++s) {
      live += crossing[s];
      if (s == 0 || live == 0) parts.push_back(Part{s, s + 1, {}});
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
    return parts;
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

  // Round-robin over the preorders under a node limit that triples each round, until one run
  // completes. Search times are heavy-tailed: one preorder may need 6k nodes where another needs
  // over a million, and restarts cut the tail. Tripling (not doubling) was chosen on the
  // MiniMalloc problems A-E: 461k nodes in all and 161k at worst, against 564k and 243k.
  PartOutcome solve_part(const Part& part) {
    const std::vector<std::vector<int>> ranks = preorders(part);
    std::int64_t limit = static_cast<std::int64_t>(part.buffers.size());
    while (true) {
      limit = std::min<std::int64_t>(limit * 3, std::numeric_limits<std::int64_t>::max() / 4);
      for (const std::vector<int>& rank : ranks) {
        run_nodes_ = 0;
        PartOutcome outcome = dfs(part, rank, limit, -1, -1);
        if (outcome != PartOutcome::kNodeLimit) return outcome;
      }
    }
  }

  Frame make_frame(const std::vector<Candidate>& from, Offset bound_offset, int bound_rank) const {
    Frame frame;
    frame.bound_offset = bound_offset;
    frame.bound_rank = bound_rank;
    frame.min_height = std::numeric_limits<Offset>::max();
    frame.order.reserve(from.size());
    for (const Candidate& c : from) {
      if (offset_[c.buffer] >= 0) continue;
      const Offset least = min_offset_[c.buffer];
      frame.order.push_back(Candidate{least, c.rank, c.buffer});
      frame.min_height =
          std::min(frame.min_height, least + static_cast<Offset>(buffers_[c.buffer].size_bytes));
    }
    std::sort(frame.order.begin(), frame.order.end(), [](const Candidate& a, const Candidate& b) {
      return a.offset != b.offset ? a.offset < b.offset : a.rank < b.rank;
    });
    return frame;
  }

  // The unplaced buffers of `order` split where none is live across a section boundary; fewer
  // than two groups means no split.
  std::vector<Part> split(const std::vector<Candidate>& order) const {
    std::vector<int> open;
    for (const Candidate& c : order) {
      if (offset_[c.buffer] < 0) open.push_back(c.buffer);
    }
    std::sort(open.begin(), open.end(), [&](int a, int b) { return lo_[a] < lo_[b]; });
    std::vector<Part> groups;
    int reach = -1;  // the last section end of the current group
    for (int b : open) {
      if (lo_[b] >= reach) groups.push_back(Part{lo_[b], hi_[b], {}});
      reach = std::max(reach, hi_[b]);
      groups.back().end_section = reach;
      groups.back().buffers.push_back(b);
    }
    return groups;
  }

  // Depth-first search of `part` from the current state, every offset following the canonical
  // bound (bound_offset, bound_rank). kFound leaves the part's offsets in solution_; every
  // outcome leaves the state as it found it.
  PartOutcome dfs(const Part& part, const std::vector<int>& rank, std::int64_t node_limit,
                  Offset bound_offset, int bound_rank) {
    std::vector<Candidate> all;
    for (int b : part.buffers) all.push_back(Candidate{0, rank[b], b});
    std::vector<Frame> frames;
    frames.push_back(make_frame(all, bound_offset, bound_rank));
    fill_section_totals(part, frames.back());
    PartOutcome outcome = PartOutcome::kInfeasible;
    while (!frames.empty()) {
      Frame& f = frames.back();
      if (f.placed >= 0) {
        // Hatless: every canonical completion from here places f.placed next (or a candidate
        // before it, already tried), since nothing can move it; its subtree failed, so all do.
        if (f.hatless) f.next = f.order.size();
        unplace(f);
      }
      bool descended = false;
      while (f.next < f.order.size()) {
        const Candidate c = f.order[f.next++];
        if (c.offset >= f.min_height) break;  // dominance; the order is by offset
        if (c.offset < f.bound_offset || (c.offset == f.bound_offset && c.rank < f.bound_rank)) {
          continue;
        }
        if (c.offset + static_cast<Offset>(buffers_[c.buffer].size_bytes) > capacity_) continue;
        if (c.offset + std::max(f.prefix_total[lo_[c.buffer] - part.first_section],
                                f.suffix_total[hi_[c.buffer] - part.first_section]) >
            capacity_) {
          continue;
        }
        place(f, c);
        if (!check(part, c.offset)) {
          unplace(f);
          continue;
        }
        ++nodes_;
        if (++run_nodes_ > node_limit) {
          outcome = PartOutcome::kNodeLimit;
        } else if ((nodes_ & 255) == 0 && Clock::now() > deadline_) {
          outcome = PartOutcome::kTimedOut;
        } else {
          std::vector<Part> groups = split(f.order);
          if (groups.size() >= 2) {
            // Independent stretches of time: solve each on its own (their search trees would
            // otherwise multiply).
            PartOutcome groups_outcome = PartOutcome::kFound;
            for (const Part& group : groups) {
              groups_outcome = dfs(group, rank, node_limit, c.offset, c.rank);
              if (groups_outcome != PartOutcome::kFound) break;
            }
            if (groups_outcome == PartOutcome::kInfeasible) {
              if (f.hatless) f.next = f.order.size();
              unplace(f);
              continue;
            }
            outcome = groups_outcome;
          } else if (groups.empty()) {
            outcome = PartOutcome::kFound;
          } else {
            frames.push_back(make_frame(f.order, c.offset, c.rank));  // f dangles from here
            fill_section_totals(part, frames.back());
            descended = true;
            break;
          }
          if (outcome == PartOutcome::kFound) {
            for (int b : part.buffers) {
              if (offset_[b] >= 0) solution_[b] = offset_[b];
            }
          }
        }
        // Stop: unwind every placement so that the next run starts clean.
        for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
          if (it->placed >= 0) unplace(*it);
        }
        return outcome;
      }
      if (!descended) frames.pop_back();
    }
    return PartOutcome::kInfeasible;
  }

  void fill_section_totals(const Part& part, Frame& f) const {
    const int count = part.end_section - part.first_section;
    f.prefix_total.assign(count + 1, 0);
    f.suffix_total.assign(count + 1, 0);
    for (int k = 0; k < count; ++k) {
      f.prefix_total[k + 1] = std::max(f.prefix_total[k], total_[part.first_section + k]);
    }
    for (int k = count - 1; k >= 0; --k) {
      f.suffix_total[k] = std::max(f.suffix_total[k + 1], total_[part.first_section + k]);
    }
  }

  void place(Frame& f, const Candidate& c) {
    const int b = c.buffer;
    const Offset top = c.offset + static_cast<Offset>(buffers_[b].size_bytes);
    f.placed = b;
    f.hatless = std::none_of(overlaps_[b].begin(), overlaps_[b].end(),
                             [&](int o) { return offset_[o] < 0; });
    f.offset_mark = offset_log_.size();
    f.floor_mark = floor_log_.size();
    offset_[b] = c.offset;
    for (int s = lo_[b]; s < hi_[b]; ++s) {
      floor_log_.emplace_back(s, floor_[s]);
      floor_[s] = std::max(floor_[s], top);
      total_[s] -= static_cast<Offset>(buffers_[b].size_bytes);
    }
    ++stamp_;
    affected_.clear();
    auto mark = [&](int section) {
      // A section with no unplaced buffer has no floor to raise.
      if (total_[section] > 0 && affected_stamp_[section] != stamp_) {
        affected_stamp_[section] = stamp_;
        affected_.push_back(section);
      }
    };
    for (int s = lo_[b]; s < hi_[b]; ++s) mark(s);
    for (int o : overlaps_[b]) {
      if (offset_[o] >= 0 || min_offset_[o] >= top) continue;
      const Offset old = min_offset_[o];
      offset_log_.emplace_back(o, old);
      min_offset_[o] = align_up(top, static_cast<Offset>(buffers_[o].alignment));
      // Only a section whose floor o held down (o could go at or below it) can rise.
      for (int s = lo_[o]; s < hi_[o]; ++s) {
        if (old <= floor_[s]) mark(s);
      }
    }
    // No unplaced buffer of a section can go below the least of their least offsets. One that
    // can go at or below the floor already keeps it where it is.
    for (int s : affected_) {
      Offset least = std::numeric_limits<Offset>::max();
      for (int o : section_buffers_[s]) {
        if (offset_[o] >= 0) continue;
        least = std::min(least, min_offset_[o]);
        if (least <= floor_[s]) break;
      }
      if (least != std::numeric_limits<Offset>::max() && least > floor_[s]) {
        floor_log_.emplace_back(s, floor_[s]);
        floor_[s] = least;
      }
    }
  }

  void unplace(Frame& f) {
    const int b = f.placed;
    while (floor_log_.size() > f.floor_mark) {
      floor_[floor_log_.back().first] = floor_log_.back().second;
      floor_log_.pop_back();
    }
    while (offset_log_.size() > f.offset_mark) {
      min_offset_[offset_log_.back().first] = offset_log_.back().second;
      offset_log_.pop_back();
    }
    for (int s = lo_[b]; s < hi_[b]; ++s) {
      total_[s] += static_cast<Offset>(buffers_[b].size_bytes);
    }
    offset_[b] = -1;
    f.placed = -1;
  }

  // The section bound: later buffers go at or above `offset` and above each section's floor.
  bool check(const Part& part, Offset offset) const {
    for (int s = part.first_section; s < part.end_section; ++s) {
      if (total_[s] > 0 && std::max(floor_[s], offset) + total_[s] > capacity_) return false;
    }
    return true;
  }

  const std::vector<PlanBuffer>& buffers_;
  const Offset capacity_;
  const Clock::time_point deadline_;
  std::int64_t nodes_ = 0;
  std::int64_t run_nodes_ = 0;  // nodes of the current run under a node limit

  std::vector<int> lo_, hi_;                       // per buffer: its sections [lo, hi)
  std::vector<std::vector<int>> section_buffers_;  // per section: buffers live there
  std::vector<std::vector<int>> overlaps_;         // per buffer: buffers overlapping in time

  std::vector<Offset> offset_;                      // per buffer: placed offset, -1 while unplaced
  std::vector<Offset> min_offset_;                  // per buffer: least offset it can take now
  std::vector<Offset> floor_;                       // per section: no unplaced buffer can go lower
  std::vector<Offset> total_;                       // per section: bytes of its unplaced buffers
  std::vector<Offset> solution_;                    // per buffer: offsets of the last part found
  std::vector<std::pair<int, Offset>> offset_log_;  // (buffer, previous min_offset_)
  std::vector<std::pair<int, Offset>> floor_log_;   // (section, previous floor_)
  std::vector<std::uint32_t> affected_stamp_;
  std::uint32_t stamp_ = 0;
  std::vector<int> affected_;
};

}  // namespace

SearchResult search_packing(const std::vector<PlanBuffer>& buffers, std::size_t capacity_bytes,
                            Clock::time_point deadline) {
  PackingSearch search(buffers, capacity_bytes, deadline);
  return search.run();
}

}  // namespace ebb::arena_internal
