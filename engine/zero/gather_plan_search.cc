// plan_gathers (engine/zero/gather_plan.h): the search over schedules, judged by the model of
// gather_plan.cc.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/zero/gather_plan.h"
#include "engine/zero/gather_plan_internal.h"

namespace ebb {

using gather_internal::find_runs;
using gather_internal::held_bytes;
using gather_internal::Run;
using gather_internal::slot_offsets;
using gather_internal::StepTimes;
using gather_internal::time_step;

namespace {

// plan_gathers' search. A window joins consecutive runs [first, last] of one unit (indices into
// that unit's runs) and is issued before op `issue`.
struct Window {
  std::uint32_t unit = 0;
  std::uint32_t first = 0;
  std::uint32_t last = 0;
  std::uint32_t issue = 0;
};

struct Score {
  double step_seconds = 0;
  double exposed_seconds = 0;
  std::int64_t peak_bytes = 0;
};

// Within floating-point noise of each other: the simulation sums times in one fixed order, so
// equal schedules give equal figures; the tolerance only keeps sums that differ in the last
// bits from reading as progress.
bool same_time(double a, double b) { return std::abs(a - b) <= 1e-12 * std::max(1.0, std::abs(b)); }

// Faster, or as fast with less compute waiting: what a local move must achieve to be kept.
bool faster(const Score& a, const Score& b) {
  if (!same_time(a.step_seconds, b.step_seconds)) return a.step_seconds < b.step_seconds;
  return !same_time(a.exposed_seconds, b.exposed_seconds) && a.exposed_seconds < b.exposed_seconds;
}

// Faster, or as fast in fewer bytes: how the planner's candidates are ranked.
bool better(const Score& a, const Score& b) {
  if (!same_time(a.step_seconds, b.step_seconds)) return a.step_seconds < b.step_seconds;
  return a.peak_bytes < b.peak_bytes;
}

class GatherSearch {
 public:
  GatherSearch(const GatherProblem& problem, const GatherPlanOptions& options)
      : problem_(problem), options_(options), slot_begin_(slot_offsets(problem)) {
    std::vector<Run> runs;
    std::vector<std::uint32_t> run_of_slot;
    find_runs(problem, runs, run_of_slot);
    unit_runs_.resize(problem.units.size());
    index_in_unit_.resize(runs.size());
    for (std::size_t r = 0; r < runs.size(); ++r) {
      index_in_unit_[r] = static_cast<std::uint32_t>(unit_runs_[runs[r].unit].size());
      unit_runs_[runs[r].unit].push_back(runs[r]);
    }
    slot_unit_run_.resize(run_of_slot.size());
    for (std::size_t s = 0; s < run_of_slot.size(); ++s) {
      slot_unit_run_[s] = index_in_unit_[run_of_slot[s]];
    }
    budget_ =
        problem.budget_bytes > 0 ? problem.budget_bytes : std::numeric_limits<std::int64_t>::max();
  }

  std::vector<Window> just_in_time() const {
    std::vector<Window> w;
    for (std::uint32_t u = 0; u < unit_runs_.size(); ++u) {
      for (std::uint32_t k = 0; k < unit_runs_[u].size(); ++k) {
        w.push_back({u, k, k, unit_runs_[u][k].first});
      }
    }
    return w;
  }

  std::int64_t budget() const { return budget_; }

  // The schedule: gathers by issue op, then first read, then unit.
  GatherSchedule schedule(const std::vector<Window>& windows,
                          std::vector<std::size_t>* order) const {
    std::vector<std::size_t> idx(windows.size());
    for (std::size_t k = 0; k < idx.size(); ++k) idx[k] = k;
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      const Window& x = windows[a];
      const Window& y = windows[b];
      if (x.issue != y.issue) return x.issue < y.issue;
      const std::uint32_t fx = first_read(x);
      const std::uint32_t fy = first_read(y);
      return fx != fy ? fx < fy : x.unit < y.unit;
    });
    GatherSchedule s;
    s.gathers.reserve(idx.size());
    for (std::size_t k : idx) {
      s.gathers.push_back({windows[k].unit, windows[k].issue, release(windows[k])});
    }
    if (order != nullptr) *order = std::move(idx);
    return s;
  }

  // The windows' step under the model; arrival (when asked) per window.
  Score evaluate(const std::vector<Window>& windows, StepTimes* times,
                 std::vector<std::int64_t>* held) const {
    std::vector<std::size_t> order;
    const GatherSchedule s = schedule(windows, &order);
    // Which gather covers each read: per unit and run, the gather of its window.
    std::vector<std::vector<std::uint32_t>> gather_of_run(unit_runs_.size());
    for (std::uint32_t u = 0; u < unit_runs_.size(); ++u) {
      gather_of_run[u].resize(unit_runs_[u].size());
    }
    for (std::size_t g = 0; g < order.size(); ++g) {
      const Window& w = windows[order[g]];
      for (std::uint32_t k = w.first; k <= w.last; ++k) {
        gather_of_run[w.unit][k] = static_cast<std::uint32_t>(g);
      }
    }
    std::vector<std::uint32_t> cover(slot_unit_run_.size());
    for (std::size_t i = 0; i < problem_.ops.size(); ++i) {
      for (std::size_t sl = slot_begin_[i]; sl < slot_begin_[i + 1]; ++sl) {
        cover[sl] = gather_of_run[problem_.ops[i].reads[sl - slot_begin_[i]]][slot_unit_run_[sl]];
      }
    }
    StepTimes local;
    StepTimes& t = times != nullptr ? *times : local;
    time_step(problem_, slot_begin_, s.gathers, cover, times != nullptr, t);
    if (times != nullptr) {  // arrival per window rather than per gather
      std::vector<double> by_window(windows.size());
      for (std::size_t g = 0; g < order.size(); ++g) by_window[order[g]] = t.arrival[g];
      t.arrival = std::move(by_window);
    }
    Score score{t.step_seconds, t.exposed_seconds, 0};
    std::vector<std::int64_t> h = held_bytes(problem_, s.gathers, {}, nullptr);
    for (std::int64_t b : h) score.peak_bytes = std::max(score.peak_bytes, b);
    if (held != nullptr) *held = std::move(h);
    return score;
  }

  std::uint32_t first_read(const Window& w) const { return unit_runs_[w.unit][w.first].first; }
  std::uint32_t release(const Window& w) const { return unit_runs_[w.unit][w.last].last; }

  // The earliest op a window may be issued before: after the unit's previous window.
  std::uint32_t earliest_issue(const std::vector<Window>& windows, const Window& w) const {
    std::uint32_t lo = 0;
    for (const Window& v : windows) {
      if (v.unit == w.unit && v.last < w.first) lo = std::max(lo, release(v) + 1);
    }
    return lo;
  }

  // Pass (1) of the header: gathers whose first reader waits for them move earlier.
  void improve_issues(std::vector<Window>& windows) const {
    StepTimes times;
    std::vector<std::int64_t> held;
    Score current = evaluate(windows, &times, &held);
    for (int pass = 0; pass < options_.max_passes; ++pass) {
      std::vector<std::size_t> order(windows.size());
      for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
      std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const std::uint32_t fa = first_read(windows[a]);
        const std::uint32_t fb = first_read(windows[b]);
        return fa != fb ? fa < fb : windows[a].unit < windows[b].unit;
      });
      bool changed = false;
      for (std::size_t k : order) {
        const Window w = windows[k];
        const std::uint32_t f = first_read(w);
        if (times.arrival[k] <= times.ready[f]) continue;  // arrives in time
        const std::int64_t bytes = problem_.units[w.unit].bytes;
        const std::uint32_t floor = earliest_issue(windows, w);
        std::uint32_t lo = w.issue;
        while (lo > floor && held[lo - 1] + bytes <= budget_) --lo;
        if (lo == w.issue) continue;
        // The latest op from which this timeline says the gather arrives in time.
        const double g = problem_.units[w.unit].gather_seconds;
        std::uint32_t target = lo;
        for (std::uint32_t i = w.issue; i-- > lo;) {
          if (std::max(times.ready[i], times.comm_free[i]) + g <= times.ready[f]) {
            target = i;
            break;
          }
        }
        for (std::uint32_t issue : {target, lo}) {
          windows[k].issue = issue;
          StepTimes t;
          std::vector<std::int64_t> h;
          const Score s = evaluate(windows, &t, &h);
          if (faster(s, current)) {
            current = s;
            times = std::move(t);
            held = std::move(h);
            changed = true;
            break;
          }
          windows[k].issue = w.issue;
          if (target == lo) break;
        }
      }
      if (!changed) break;
    }
  }

  // Pass (2) of the header: a unit's consecutive windows joined, best seconds saved per byte
  // held (over the ops between them) first, where the budget allows and the step gets faster.
  void merge_windows(std::vector<Window>& windows) const {
    std::vector<std::int64_t> held;
    Score current = evaluate(windows, nullptr, &held);
    for (int pass = 0; pass < options_.max_passes; ++pass) {
      struct Candidate {
        double score;
        std::uint32_t unit, first, last;  // the joined window's runs
      };
      std::vector<Candidate> candidates;
      for (const Window& a : windows) {
        for (const Window& b : windows) {
          if (b.unit != a.unit || b.first != a.last + 1) continue;
          const double gap = std::max<double>(1, static_cast<double>(b.issue) - release(a) - 1);
          const double bytes = std::max<double>(1, problem_.units[a.unit].bytes);
          candidates.push_back(
              {problem_.units[a.unit].gather_seconds / (bytes * gap), a.unit, a.first, b.last});
        }
      }
      std::sort(candidates.begin(), candidates.end(), [](const Candidate& x, const Candidate& y) {
        if (x.score != y.score) return x.score > y.score;
        return x.unit != y.unit ? x.unit < y.unit : x.first < y.first;
      });
      bool changed = false;
      for (const Candidate& c : candidates) {
        // Both halves still there (an earlier merge of this pass may have taken one).
        std::size_t a = windows.size();
        std::size_t b = windows.size();
        for (std::size_t k = 0; k < windows.size(); ++k) {
          if (windows[k].unit != c.unit) continue;
          if (windows[k].first == c.first) a = k;
          if (windows[k].last == c.last) b = k;
        }
        if (a == windows.size() || b == windows.size() || windows[a].last + 1 != windows[b].first) {
          continue;
        }
        const std::int64_t bytes = problem_.units[c.unit].bytes;
        bool fits = true;
        for (std::uint32_t i = release(windows[a]) + 1; i < windows[b].issue && fits; ++i) {
          fits = held[i] + bytes <= budget_;
        }
        if (!fits) continue;
        std::vector<Window> trial = windows;
        trial[a].last = windows[b].last;
        trial.erase(trial.begin() + static_cast<std::ptrdiff_t>(b));
        std::vector<std::int64_t> h;
        const Score s = evaluate(trial, nullptr, &h);
        if (!faster(s, current)) continue;
        windows = std::move(trial);
        held = std::move(h);
        current = s;
        changed = true;
      }
      if (!changed) break;
    }
  }

  // Every schedule of the planner's space, when simulating them all takes at most
  // options_.exhaustive_op_steps; the best that fits, or nothing.
  bool exhaustive(std::vector<Window>& best_windows) const {
    const std::int64_t limit =
        options_.exhaustive_op_steps /
        std::max<std::int64_t>(1, static_cast<std::int64_t>(problem_.ops.size()));
    if (limit <= 0) return false;
    // Per unit: every way to join its runs into windows, and every issue point of each.
    std::vector<std::vector<std::vector<Window>>> choices(unit_runs_.size());
    std::int64_t total = 1;
    for (std::uint32_t u = 0; u < unit_runs_.size(); ++u) {
      if (!unit_choices(u, limit, choices[u])) return false;
      if (choices[u].empty()) continue;
      if (total > limit / static_cast<std::int64_t>(choices[u].size())) return false;
      total *= static_cast<std::int64_t>(choices[u].size());
    }
    std::vector<std::size_t> pick(unit_runs_.size(), 0);
    bool found = false;
    Score best;
    std::vector<Window> windows;
    for (;;) {
      windows.clear();
      for (std::size_t u = 0; u < choices.size(); ++u) {
        if (!choices[u].empty()) {
          windows.insert(windows.end(), choices[u][pick[u]].begin(), choices[u][pick[u]].end());
        }
      }
      const Score s = evaluate(windows, nullptr, nullptr);
      if (s.peak_bytes <= budget_ && (!found || better(s, best))) {
        found = true;
        best = s;
        best_windows = windows;
      }
      std::size_t u = 0;
      for (; u < choices.size(); ++u) {
        if (choices[u].empty()) continue;
        if (++pick[u] < choices[u].size()) break;
        pick[u] = 0;
      }
      if (u == choices.size()) break;
    }
    return found;
  }

 private:
  // Unit u's windows, every way; false when there are more than `limit`.
  bool unit_choices(std::uint32_t u, std::int64_t limit,
                    std::vector<std::vector<Window>>& out) const {
    const std::vector<Run>& runs = unit_runs_[u];
    if (runs.empty()) return true;
    const auto r = static_cast<std::uint32_t>(runs.size());
    if (r > 20) return false;
    for (std::uint32_t cuts = 0; cuts < (1U << (r - 1)); ++cuts) {
      // Bit k of `cuts`: a window ends after run k.
      std::vector<Window> shape;
      std::uint32_t first = 0;
      for (std::uint32_t k = 0; k < r; ++k) {
        if (k + 1 == r || ((cuts >> k) & 1U) != 0) {
          shape.push_back({u, first, k, 0});
          first = k + 1;
        }
      }
      // Every issue point of every window: an odometer over [after the previous, first read].
      std::vector<std::uint32_t> lo(shape.size());
      for (std::size_t k = 0; k < shape.size(); ++k) {
        lo[k] = k == 0 ? 0 : runs[shape[k - 1].last].last + 1;
        shape[k].issue = lo[k];
      }
      for (;;) {
        if (static_cast<std::int64_t>(out.size()) >= limit) return false;
        out.push_back(shape);
        std::size_t k = 0;
        for (; k < shape.size(); ++k) {
          if (shape[k].issue < runs[shape[k].first].first) {
            ++shape[k].issue;
            break;
          }
          shape[k].issue = lo[k];
        }
        if (k == shape.size()) break;
      }
    }
    return true;
  }

  const GatherProblem& problem_;
  const GatherPlanOptions& options_;
  std::vector<std::size_t> slot_begin_;
  std::vector<std::vector<Run>> unit_runs_;   // per unit, its runs in order
  std::vector<std::uint32_t> index_in_unit_;  // per run (find_runs' order), its index in the unit
  std::vector<std::uint32_t> slot_unit_run_;  // per read slot, its run's index in its unit
  std::int64_t budget_ = 0;
};

}  // namespace

Result<GatherSchedule> plan_gathers(const GatherProblem& problem,
                                    const GatherPlanOptions& options) {
  EBB_RETURN_IF_ERROR(validate_gather_problem(problem));
  if (options.max_passes < 1) {
    return invalid_argument("gather plan: max_passes " + std::to_string(options.max_passes) +
                            " (at least 1)");
  }
  const GatherSearch search(problem, options);
  const std::vector<Window> jit = search.just_in_time();
  std::vector<std::int64_t> held;
  Score best = search.evaluate(jit, nullptr, &held);
  if (best.peak_bytes > search.budget()) {
    const auto worst =
        static_cast<std::size_t>(std::max_element(held.begin(), held.end()) - held.begin());
    std::size_t over = 0;
    while (held[over] <= search.budget()) ++over;
    return out_of_memory(
        "gather plan: op " + std::to_string(over) + " needs " + std::to_string(held[over]) +
        " bytes (" + std::to_string(problem.ops[over].other_bytes) +
        " besides the units gathered for it) over the budget of " +
        std::to_string(problem.budget_bytes) + " bytes, even gathering just in time; that fits " +
        "a budget of at least " + std::to_string(best.peak_bytes) + " bytes (the peak, at op " +
        std::to_string(worst) + ")");
  }
  std::vector<Window> best_windows = jit;
  auto consider = [&](const std::vector<Window>& w) {
    const Score s = search.evaluate(w, nullptr, nullptr);
    if (s.peak_bytes <= search.budget() && better(s, best)) {
      best = s;
      best_windows = w;
    }
  };
  std::vector<Window> exact;
  if (search.exhaustive(exact)) {
    consider(exact);
  } else {
    std::vector<Window> issues_first = jit;
    search.improve_issues(issues_first);
    consider(issues_first);
    search.merge_windows(issues_first);
    search.improve_issues(issues_first);
    consider(issues_first);
    std::vector<Window> merges_first = jit;
    search.merge_windows(merges_first);
    search.improve_issues(merges_first);
    consider(merges_first);
  }
  return search.schedule(best_windows, nullptr);
}

}  // namespace ebb
