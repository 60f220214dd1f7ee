// The gather schedule of ZeRO stage 3: when each slice's full parameters are all-gathered
// before the ops that read them, and when they are freed.
//
// In stage 3 every rank keeps 1/N of each parameter slice. A unit (a slice's full parameters)
// must be all-gathered on the communication stream, and have arrived, before any compute op that
// reads it runs, and is freed after. A schedule is a list of gathers, each a window of ops
// [issue_before, release_after] during which the unit is held; every read of a unit is covered
// by exactly one of its windows. Issuing earlier hides the gather behind compute but holds the
// bytes longer; one window over a layer's forward and backward reads saves a gather but holds
// the bytes between them.
//
// The model (simulate_gathers, the one judge of every schedule here):
//  - Compute runs the ops in program order. ready(i) = the end of op i-1 (0 for op 0): when op i
//    would start if it waited for nothing. Op i starts at max(ready(i), the arrival of every
//    gather covering a unit it reads) and ends `seconds` later. exposed_seconds sums
//    start(i) - ready(i).
//  - The communication stream runs one request at a time, first in, first out. Its requests, in
//    program order: for each op i, the gathers issued before op i (in the schedule's order),
//    requested at ready(i); then op i's own comm_seconds_after (gradient reductions), requested
//    at start(i). A request begins when it was requested and the stream is free.
//  - step_seconds: the end of the last op or of the last communication, whichever is later.
//  - Memory does not depend on time: a window holds its unit's bytes while ops issue_before to
//    release_after run (the gather is requested before op issue_before, freed after op
//    release_after). peak_bytes is the largest, over ops, of other_bytes plus the bytes held
//    while the op runs (persistent units at every op); peak_gathered_bytes the same without
//    other_bytes.
//
// Three schedulers, all judged by that model:
//  - just_in_time_schedule: a window per run of reads (reads of the unit with no op between them
//    that reads another unit), issued before its first read: a layer is gathered for its forward
//    ops and again for its backward ops.
//  - deepspeed_schedule: what DeepSpeed ZeRO-3's parameter coordinator does with a recorded
//    trace (see DeepSpeedStage3Config for the source and the version).
//  - plan_gathers: the fastest schedule the planner finds within the budget (see the function).
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/status.h"

namespace ebb {

// A slice's full parameters: what one gather brings in.
struct GatherUnit {
  std::string name;
  std::int64_t bytes = 0;     // device bytes while gathered
  std::int64_t elements = 0;  // parameter elements (DeepSpeed's thresholds count these)
  double gather_seconds = 0;  // one all-gather on the communication stream
};

// One compute op of the step, in program order.
struct GatherStepOp {
  double seconds = 0;                // its compute time
  std::vector<std::uint32_t> reads;  // units it reads: gathered and arrived before it starts
  std::int64_t other_bytes = 0;      // device bytes everything but the units holds while it runs
  // Other collectives (gradient reductions) it puts on the communication stream when it starts.
  double comm_seconds_after = 0;
};

struct GatherProblem {
  std::vector<GatherUnit> units;
  std::vector<GatherStepOp> ops;
  std::int64_t budget_bytes = 0;  // plan_gathers' ceiling on peak_bytes; 0: no ceiling
};

// One gather: `unit` requested when compute reaches op issue_before, freed after op
// release_after. REQUIRES: issue_before <= release_after, and op release_after reads the unit.
struct GatherAction {
  std::uint32_t unit = 0;
  std::uint32_t issue_before = 0;
  std::uint32_t release_after = 0;
};

struct GatherSchedule {
  std::vector<GatherAction> gathers;  // in request order (issue_before never decreases)
  // Units never gathered nor freed in the step: held at every op, as DeepSpeed holds a
  // parameter under its persistence threshold (gathered once, outside the step). No window of
  // the schedule may name one.
  std::vector<std::uint32_t> persistent;
};

// A schedule's simulated step.
struct GatherTimeline {
  double step_seconds = 0;      // the step's end (compute or communication, whichever is later)
  double exposed_seconds = 0;   // compute waiting for gathers
  double gather_seconds = 0;    // communication stream busy with gathers
  std::int64_t peak_bytes = 0;  // max over ops of other_bytes + units held
  std::size_t gathers = 0;      // gathers in the step
  std::int64_t peak_gathered_bytes = 0;  // max over ops of the units held
};

// kInvalidArgument naming the op or unit when a read names no unit, an op reads a unit twice,
// or a time, byte count or element count is negative or not finite, or the budget is negative.
Status validate_gather_problem(const GatherProblem& problem);

// The schedule's step under the model above. kInvalidArgument, naming the op and the unit, for
// an invalid problem, a gather out of request order, a window that is empty, out of range or
// ends on an op that does not read its unit, two windows of a unit that share an op, a read that
// no window covers, or a persistent unit that is out of range, listed twice or has a window.
Result<GatherTimeline> simulate_gathers(const GatherProblem& problem,
                                        const GatherSchedule& schedule);

// A window per run of reads of each unit, issued before its first read, freed after its last.
// Gathers in request order; at one op, by first read, then by unit. REQUIRES: a valid problem.
GatherSchedule just_in_time_schedule(const GatherProblem& problem);

// DeepSpeed ZeRO-3's defaults, in parameter elements, as deepspeed/runtime/zero/config.py of
// microsoft/DeepSpeed sets them (DeepSpeedZeroConfig, commit 03dc2b92f3d31a79ddb99caa7180d06b3379
// 082c, a 2024-25 master with stage3_module_granularity_threshold and pydantic 2). The config
// page (docs/_pages/config-json.md, https://www.deepspeed.ai/docs/config-json/) lists 5e8 for
// the prefetch bucket and 1e6 for the persistence threshold; the code, which is what runs, says
// 5e7 and 1e5. The behaviour modelled is PartitionedParameterCoordinator
// (deepspeed/runtime/zero/partitioned_param_coordinator.py, commit 03aecee816cece2b4d94af485af7
// bd69bd4a201a) once its trace is complete; see deepspeed_schedule.
struct DeepSpeedStage3Config {
  // stage3_prefetch_bucket_size: elements prefetched ahead of use at each op; 0: no prefetch.
  std::int64_t prefetch_bucket_elements = 50'000'000;
  // stage3_max_live_parameters: no prefetch while this many elements are gathered.
  std::int64_t max_live_elements = 1'000'000'000;
  // stage3_max_reuse_distance: a unit read again before this many elements of reads have gone
  // by is not freed.
  std::int64_t max_reuse_distance_elements = 1'000'000'000;
  // stage3_param_persistence_threshold: units of at most this many elements are persistent...
  std::int64_t param_persistence_threshold_elements = 100'000;
  // stage3_model_persistence_threshold: ...while the persistent units total at most this many.
  std::int64_t model_persistence_threshold_elements = std::numeric_limits<std::int64_t>::max();
};

// DeepSpeed ZeRO-3's schedule for the problem's step, each op standing for one submodule call
// of its trace and its reads for the submodule's parameters (in unit order). Before op i: gather
// the units op i reads that are not gathered; then, walking the rest of the trace's reads, skip
// those gathered and prefetch the others until the elements prefetched reach
// min(prefetch bucket, max live - elements gathered). After op i: free each unit it read unless
// it is persistent, the prefetch walk already went past a later read of it (beyond op i+1), or
// it is read again within the reuse distance (counted in elements of the reads after op i, whole
// ops at a time). DeepSpeed gathers a prefetch batch as one coalesced call; here each unit is a
// gather of its own, in trace order, which lets the first ones arrive earlier. Its host-side
// throttle (at most two fetch events outstanding) is not modelled.
// REQUIRES: a valid problem.
GatherSchedule deepspeed_schedule(const GatherProblem& problem,
                                  const DeepSpeedStage3Config& config = {});

struct GatherPlanOptions {
  // Rounds of each local-search pass (issue points, merges); each round simulates at most once
  // per window. >= 1.
  int max_passes = 8;
  // When the planner's choices (per unit: which consecutive just-in-time windows share a
  // window, and each window's issue point) number so few schedules that simulating them all
  // takes at most this many op steps (schedules x ops), every one is simulated and the best
  // returned; 0: never.
  std::int64_t exhaustive_op_steps = 5'000'000;
};

// The schedule of least simulated step_seconds (ties: least peak_bytes) found with peak_bytes
// within problem.budget_bytes, among schedules whose windows each join consecutive
// just-in-time windows of a unit, and gathers issued at one op go in order of first read.
//
// The search: from the just-in-time schedule, (1) issue points: in request order, each gather
// whose first reader waits for it is moved earlier, to the latest op from which the current
// timeline says it arrives in time (or the earliest the memory and the unit's previous window
// allow), kept only if the simulated step improves; repeated to a fixpoint, at most max_passes
// rounds. (2) merges: a unit's consecutive windows are joined, best time saved per byte held
// first, where the budget allows and the simulated step improves. It runs (1), (2) then (1),
// and (2) then (1), and returns the best of those and the just-in-time schedule; small problems
// are solved exactly (options.exhaustive_op_steps). Work: O((ops + units) x windows x max_passes)
// plus, when exhaustive, the enumeration.
//
// kInvalidArgument for an invalid problem or options; kOutOfMemory when even the just-in-time
// schedule does not fit, naming the op, the bytes it needs, the budget and the least budget the
// just-in-time schedule fits in.
Result<GatherSchedule> plan_gathers(const GatherProblem& problem,
                                    const GatherPlanOptions& options = {});

}  // namespace ebb
