#include "engine/zero/gather_plan.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/zero/gather_plan_internal.h"

namespace ebb {
namespace gather_internal {

std::string unit_label(const GatherProblem& problem, std::uint32_t u) {
  std::string s = "unit " + std::to_string(u);
  if (u < problem.units.size() && !problem.units[u].name.empty()) {
    s += " (" + problem.units[u].name + ")";
  }
  return s;
}

bool is_time(double seconds) { return std::isfinite(seconds) && seconds >= 0; }

// Where each op's reads start in a flat array of read slots (one slot per op and unit read).
std::vector<std::size_t> slot_offsets(const GatherProblem& problem) {
  std::vector<std::size_t> begin(problem.ops.size() + 1, 0);
  for (std::size_t i = 0; i < problem.ops.size(); ++i) {
    begin[i + 1] = begin[i] + problem.ops[i].reads.size();
  }
  return begin;
}

// The model's clock (see the header). `gathers` in request order; cover[slot]: the gather whose
// window covers that read, or kPersistent. Fills the per-op ready times and the stream's free
// time before each op's gathers, and each gather's arrival, when asked.
void time_step(const GatherProblem& problem, const std::vector<std::size_t>& slot_begin,
               const std::vector<GatherAction>& gathers, const std::vector<std::uint32_t>& cover,
               bool detail, StepTimes& out) {
  const std::size_t n = problem.ops.size();
  out.arrival.assign(gathers.size(), 0.0);
  if (detail) {
    out.ready.assign(n, 0.0);
    out.comm_free.assign(n, 0.0);
  }
  double compute = 0;  // end of the previous op
  double comm = 0;     // when the stream is free
  double exposed = 0;
  std::size_t g = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const GatherStepOp& op = problem.ops[i];
    if (detail) {
      out.ready[i] = compute;
      out.comm_free[i] = comm;
    }
    for (; g < gathers.size() && gathers[g].issue_before == i; ++g) {
      comm = std::max(comm, compute) + problem.units[gathers[g].unit].gather_seconds;
      out.arrival[g] = comm;
    }
    double start = compute;
    for (std::size_t s = slot_begin[i]; s < slot_begin[i + 1]; ++s) {
      if (cover[s] != kPersistent) start = std::max(start, out.arrival[cover[s]]);
    }
    exposed += start - compute;
    if (op.comm_seconds_after > 0) comm = std::max(comm, start) + op.comm_seconds_after;
    compute = start + op.seconds;
  }
  out.step_seconds = std::max(compute, comm);
  out.exposed_seconds = exposed;
}

// Bytes held at each op: other_bytes plus every window covering it plus the persistent units.
// Returns the gathered part alone in `gathered`.
std::vector<std::int64_t> held_bytes(const GatherProblem& problem,
                                     const std::vector<GatherAction>& gathers,
                                     const std::vector<std::uint32_t>& persistent,
                                     std::vector<std::int64_t>* gathered) {
  const std::size_t n = problem.ops.size();
  std::vector<std::int64_t> delta(n + 1, 0);
  std::int64_t always = 0;
  for (std::uint32_t u : persistent) always += problem.units[u].bytes;
  for (const GatherAction& a : gathers) {
    delta[a.issue_before] += problem.units[a.unit].bytes;
    delta[a.release_after + 1] -= problem.units[a.unit].bytes;
  }
  std::vector<std::int64_t> held(n);
  if (gathered != nullptr) gathered->assign(n, 0);
  std::int64_t run = always;
  for (std::size_t i = 0; i < n; ++i) {
    run += delta[i];
    held[i] = problem.ops[i].other_bytes + run;
    if (gathered != nullptr) (*gathered)[i] = run;
  }
  return held;
}

// The read slots' covering gathers, or the first read no window covers (as an error).
Result<std::vector<std::uint32_t>> cover_reads(const GatherProblem& problem,
                                               const std::vector<std::size_t>& slot_begin,
                                               const GatherSchedule& schedule) {
  const std::size_t units = problem.units.size();
  std::vector<std::vector<std::uint32_t>> windows(units);  // per unit, by issue
  std::vector<bool> persistent(units, false);
  for (std::uint32_t u : schedule.persistent) {
    if (u >= units) {
      return invalid_argument("gather schedule: persistent unit " + std::to_string(u) +
                              " is out of range (" + std::to_string(units) + " units)");
    }
    if (persistent[u]) {
      return invalid_argument("gather schedule: " + unit_label(problem, u) +
                              " is listed as persistent twice");
    }
    persistent[u] = true;
  }
  const std::size_t n = problem.ops.size();
  for (std::size_t k = 0; k < schedule.gathers.size(); ++k) {
    const GatherAction& a = schedule.gathers[k];
    const std::string which = "gather schedule: gather " + std::to_string(k) + " (";
    if (a.unit >= units) {
      return invalid_argument(which + "unit " + std::to_string(a.unit) + ") names no unit (" +
                              std::to_string(units) + " units)");
    }
    const std::string of = which + unit_label(problem, a.unit) + ", ops " +
                           std::to_string(a.issue_before) + " to " +
                           std::to_string(a.release_after) + ")";
    if (persistent[a.unit]) return invalid_argument(of + " gathers a persistent unit");
    if (a.issue_before > a.release_after || a.release_after >= n) {
      return invalid_argument(of + " is not a window of the step's " + std::to_string(n) + " ops");
    }
    if (k > 0 && a.issue_before < schedule.gathers[k - 1].issue_before) {
      return invalid_argument(of + " is requested before gather " + std::to_string(k - 1) +
                              " (op " + std::to_string(schedule.gathers[k - 1].issue_before) +
                              "): gathers must be in request order");
    }
    const std::vector<std::uint32_t>& reads = problem.ops[a.release_after].reads;
    if (std::find(reads.begin(), reads.end(), a.unit) == reads.end()) {
      return invalid_argument(of + " ends at op " + std::to_string(a.release_after) +
                              ", which does not read the unit");
    }
    std::vector<std::uint32_t>& w = windows[a.unit];
    if (!w.empty() && schedule.gathers[w.back()].release_after >= a.issue_before) {
      return invalid_argument(of + " overlaps gather " + std::to_string(w.back()) +
                              " of the unit at op " + std::to_string(a.issue_before));
    }
    w.push_back(static_cast<std::uint32_t>(k));
  }
  std::vector<std::uint32_t> cover(slot_begin.back());
  std::vector<std::size_t> next(units, 0);  // per unit, the first window not over yet
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t s = slot_begin[i]; s < slot_begin[i + 1]; ++s) {
      const std::uint32_t u = problem.ops[i].reads[s - slot_begin[i]];
      if (persistent[u]) {
        cover[s] = kPersistent;
        continue;
      }
      const std::vector<std::uint32_t>& w = windows[u];
      while (next[u] < w.size() && schedule.gathers[w[next[u]]].release_after < i) ++next[u];
      if (next[u] == w.size() || schedule.gathers[w[next[u]]].issue_before > i) {
        return invalid_argument("gather schedule: op " + std::to_string(i) + " reads " +
                                unit_label(problem, u) + ", which no gather's window covers");
      }
      cover[s] = w[next[u]];
    }
  }
  return cover;
}

// Runs in order of first read (then unit), and the run of each read slot.
void find_runs(const GatherProblem& problem, std::vector<Run>& runs,
               std::vector<std::uint32_t>& run_of_slot) {
  std::vector<std::int64_t> open(problem.units.size(), -1);
  std::int64_t last_reader = -1;  // the last op before this one that reads anything
  runs.clear();
  run_of_slot.clear();
  for (std::uint32_t i = 0; i < problem.ops.size(); ++i) {
    const std::vector<std::uint32_t>& reads = problem.ops[i].reads;
    for (std::uint32_t u : reads) {
      EBB_CHECK(u < problem.units.size(), "gather problem: op " + std::to_string(i) +
                                              " reads unit " + std::to_string(u) + " of " +
                                              std::to_string(problem.units.size()));
      if (open[u] >= 0 && runs[open[u]].last == last_reader) {
        runs[open[u]].last = i;
      } else {
        open[u] = static_cast<std::int64_t>(runs.size());
        runs.push_back({u, i, i});
      }
      run_of_slot.push_back(static_cast<std::uint32_t>(open[u]));
    }
    if (!reads.empty()) last_reader = i;
  }
}

}  // namespace gather_internal

using gather_internal::cover_reads;
using gather_internal::find_runs;
using gather_internal::held_bytes;
using gather_internal::is_time;
using gather_internal::Run;
using gather_internal::slot_offsets;
using gather_internal::StepTimes;
using gather_internal::time_step;
using gather_internal::unit_label;

Status validate_gather_problem(const GatherProblem& problem) {
  for (std::size_t u = 0; u < problem.units.size(); ++u) {
    const GatherUnit& unit = problem.units[u];
    if (unit.bytes < 0 || unit.elements < 0 || !is_time(unit.gather_seconds)) {
      return invalid_argument(
          "gather problem: " + unit_label(problem, static_cast<std::uint32_t>(u)) +
          " has a negative or non-finite size or gather time");
    }
  }
  if (problem.budget_bytes < 0) {
    return invalid_argument("gather problem: negative budget " +
                            std::to_string(problem.budget_bytes));
  }
  std::vector<std::size_t> seen(problem.units.size(), problem.ops.size());
  for (std::size_t i = 0; i < problem.ops.size(); ++i) {
    const GatherStepOp& op = problem.ops[i];
    if (!is_time(op.seconds) || !is_time(op.comm_seconds_after) || op.other_bytes < 0) {
      return invalid_argument("gather problem: op " + std::to_string(i) +
                              " has a negative or non-finite time or byte count");
    }
    for (std::uint32_t u : op.reads) {
      if (u >= problem.units.size()) {
        return invalid_argument("gather problem: op " + std::to_string(i) + " reads unit " +
                                std::to_string(u) + ", but there are " +
                                std::to_string(problem.units.size()) + " units");
      }
      if (seen[u] == i) {
        return invalid_argument("gather problem: op " + std::to_string(i) + " reads " +
                                unit_label(problem, u) + " twice");
      }
      seen[u] = i;
    }
  }
  return ok_status();
}

Result<GatherTimeline> simulate_gathers(const GatherProblem& problem,
                                        const GatherSchedule& schedule) {
  EBB_RETURN_IF_ERROR(validate_gather_problem(problem));
  const std::vector<std::size_t> slot_begin = slot_offsets(problem);
  EBB_ASSIGN_OR_RETURN(std::vector<std::uint32_t> cover,
                       cover_reads(problem, slot_begin, schedule));
  StepTimes times;
  time_step(problem, slot_begin, schedule.gathers, cover, /*detail=*/false, times);
  GatherTimeline t;
  t.step_seconds = times.step_seconds;
  t.exposed_seconds = times.exposed_seconds;
  for (const GatherAction& a : schedule.gathers)
    t.gather_seconds += problem.units[a.unit].gather_seconds;
  t.gathers = schedule.gathers.size();
  std::vector<std::int64_t> gathered;
  const std::vector<std::int64_t> held =
      held_bytes(problem, schedule.gathers, schedule.persistent, &gathered);
  for (std::size_t i = 0; i < held.size(); ++i) {
    t.peak_bytes = std::max(t.peak_bytes, held[i]);
    t.peak_gathered_bytes = std::max(t.peak_gathered_bytes, gathered[i]);
  }
  return t;
}

GatherSchedule just_in_time_schedule(const GatherProblem& problem) {
  std::vector<Run> runs;
  std::vector<std::uint32_t> run_of_slot;
  find_runs(problem, runs, run_of_slot);
  std::stable_sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) {
    return a.first != b.first ? a.first < b.first : a.unit < b.unit;
  });
  GatherSchedule schedule;
  for (const Run& r : runs) schedule.gathers.push_back({r.unit, r.first, r.last});
  return schedule;
}

GatherSchedule deepspeed_schedule(const GatherProblem& problem,
                                  const DeepSpeedStage3Config& config) {
  const std::size_t units = problem.units.size();
  const std::size_t n = problem.ops.size();
  GatherSchedule schedule;
  // Persistence: in the model's parameter order, as DeepSpeed marks them at setup.
  std::vector<bool> persistent(units, false);
  std::int64_t persistent_elements = 0;
  for (std::uint32_t u = 0; u < units; ++u) {
    const std::int64_t e = problem.units[u].elements;
    if (e > config.model_persistence_threshold_elements - persistent_elements) continue;
    if (e <= config.param_persistence_threshold_elements) {
      persistent[u] = true;
      persistent_elements += e;
      schedule.persistent.push_back(u);
    }
  }
  // The parameter trace: each op's reads in unit order; elements[m]: of the reads before op m.
  struct Entry {
    std::uint32_t unit;
    std::int64_t op;
  };
  std::vector<Entry> trace;
  std::vector<std::vector<std::uint32_t>> reads(n);
  std::vector<std::int64_t> elements_before(n + 1, 0);
  std::vector<std::vector<std::uint32_t>> readers(units);  // per unit, the ops that read it
  for (std::uint32_t i = 0; i < n; ++i) {
    reads[i] = problem.ops[i].reads;
    std::sort(reads[i].begin(), reads[i].end());
    elements_before[i + 1] = elements_before[i];
    for (std::uint32_t u : reads[i]) {
      EBB_CHECK(u < units, "gather problem: op " + std::to_string(i) + " reads unit " +
                               std::to_string(u) + " of " + std::to_string(units));
      trace.push_back({u, i});
      elements_before[i + 1] += problem.units[u].elements;
      readers[u].push_back(i);
    }
  }
  std::vector<std::int64_t> open(units, -1);  // the gather holding the unit now
  std::vector<std::int64_t> fetched_for(units, std::numeric_limits<std::int64_t>::min());
  std::vector<std::size_t> next_reader(units, 0);
  std::int64_t live = 0;  // elements gathered (in flight or arrived)
  std::size_t queue = 0;  // the trace's next entry not yet walked
  auto gather = [&](std::uint32_t u, std::uint32_t issue, std::uint32_t first_read) {
    open[u] = static_cast<std::int64_t>(schedule.gathers.size());
    schedule.gathers.push_back({u, issue, first_read});
    live += problem.units[u].elements;
  };
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto step = static_cast<std::int64_t>(i);
    std::size_t to_walk = 0;
    for (std::uint32_t u : reads[i]) {
      if (!persistent[u] && open[u] < 0) gather(u, i, i);
      if (fetched_for[u] < step) ++to_walk;
    }
    // This op's own entries come off the trace (those a prefetch walked already are gone).
    for (; to_walk > 0; --to_walk, ++queue) fetched_for[trace[queue].unit] = trace[queue].op;
    if (config.prefetch_bucket_elements > 0) {
      const std::int64_t room =
          std::min(config.max_live_elements - live, config.prefetch_bucket_elements);
      std::int64_t prefetched = 0;
      while (queue < trace.size() && prefetched < room) {
        const Entry e = trace[queue++];
        fetched_for[e.unit] = std::max(fetched_for[e.unit], e.op);
        if (!persistent[e.unit] && open[e.unit] < 0) {
          gather(e.unit, i, static_cast<std::uint32_t>(e.op));
          prefetched += problem.units[e.unit].elements;
        }
      }
    }
    for (std::uint32_t u : reads[i]) {
      if (persistent[u]) continue;
      schedule.gathers[open[u]].release_after = i;
      std::vector<std::uint32_t>& r = readers[u];
      while (next_reader[u] < r.size() && r[next_reader[u]] <= i) ++next_reader[u];
      const bool walked_past = fetched_for[u] > step + 1;
      const bool reused =
          next_reader[u] < r.size() && elements_before[r[next_reader[u]]] - elements_before[i + 1] <
                                           config.max_reuse_distance_elements;
      if (walked_past || reused) continue;
      open[u] = -1;
      live -= problem.units[u].elements;
    }
  }
  return schedule;
}

}  // namespace ebb
