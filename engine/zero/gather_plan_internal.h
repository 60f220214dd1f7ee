// Internals of the gather schedule's model (engine/zero/gather_plan.h), shared by its
// simulation (gather_plan.cc) and its search (gather_plan_search.cc). Not an API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/zero/gather_plan.h"
#include "kernels/status.h"

namespace ebb::gather_internal {

// A read covered by a persistent unit rather than a window.
constexpr std::uint32_t kPersistent = std::numeric_limits<std::uint32_t>::max();

// "unit U (name)", for messages.
std::string unit_label(const GatherProblem& problem, std::uint32_t u);
// Finite and not negative.
bool is_time(double seconds);

// Where each op's reads start in a flat array of read slots (one slot per op and unit read).
std::vector<std::size_t> slot_offsets(const GatherProblem& problem);

// The model's clock (see gather_plan.h): time_step's output.
struct StepTimes {
  double step_seconds = 0;
  double exposed_seconds = 0;
  std::vector<double> ready;      // per op: when compute reaches it
  std::vector<double> comm_free;  // per op: when the stream is free of everything before it
  std::vector<double> arrival;    // per gather
};

// `gathers` in request order; cover[slot]: the gather whose window covers that read, or
// kPersistent. Fills the step's times, and with `detail` the per-op ready times, the stream's
// free time before each op's gathers and each gather's arrival.
void time_step(const GatherProblem& problem, const std::vector<std::size_t>& slot_begin,
               const std::vector<GatherAction>& gathers, const std::vector<std::uint32_t>& cover,
               bool detail, StepTimes& out);

// Bytes held at each op: other_bytes plus every window covering it plus the persistent units.
// Returns the gathered part alone in `gathered` (may be null).
std::vector<std::int64_t> held_bytes(const GatherProblem& problem,
                                     const std::vector<GatherAction>& gathers,
                                     const std::vector<std::uint32_t>& persistent,
                                     std::vector<std::int64_t>* gathered);

// The read slots' covering gathers, or the first read no window covers (as an error).
Result<std::vector<std::uint32_t>> cover_reads(const GatherProblem& problem,
                                               const std::vector<std::size_t>& slot_begin,
                                               const GatherSchedule& schedule);

// A run of reads of one unit that no op reading another unit interrupts: a just-in-time window.
struct Run {
  std::uint32_t unit = 0;
  std::uint32_t first = 0;  // its first read
  std::uint32_t last = 0;   // its last read
};

// Runs in order of first read (then unit), and the run of each read slot.
void find_runs(const GatherProblem& problem, std::vector<Run>& runs,
               std::vector<std::uint32_t>& run_of_slot);

}  // namespace ebb::gather_internal
