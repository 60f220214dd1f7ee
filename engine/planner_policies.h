// The planners' policies, each adding its evictions to a PlanModel (engine/plan_model.h);
// make_plan (planner.h) picks one, checks the result on the sim device and builds the Plan.
//
// Thread safety: functions of the model passed in, which they modify.
#pragma once

#include <cstddef>

#include "engine/plan_model.h"

namespace ebb {

// recompute-all, or sqrt when `sqrt_checkpoints` (see planner.h).
void add_recompute_all(PlanModel& model, bool sqrt_checkpoints);
// swap-all (see planner.h). REQUIRES: the model's hardware has a host link.
void add_swap_all(PlanModel& model);
// The cost-aware planner: while the model's peak passes `target_bytes`, evicts at the op with
// the most resident bytes the candidate with the best score (bytes x over-target ops its
// interval covers / cost). Returns false when that op is over the target and has no candidate
// left (the target cannot be reached); the model then holds every eviction made so far.
bool add_cost_aware(PlanModel& model, std::size_t target_bytes, bool allow_swap);

}  // namespace ebb
