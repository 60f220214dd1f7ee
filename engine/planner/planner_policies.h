// The planners' policies, each adding its evictions to a PlanModel (engine/planner/plan_model.h);
// make_plan (planner.h) picks one, checks the result on the sim device and builds the Plan.
//
// Thread safety: functions of the model passed in, which they modify.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/planner/plan_model.h"

namespace ebb {

// recompute-all, or sqrt when `sqrt_checkpoints` (see planner.h).
void add_recompute_all(PlanModel& model, bool sqrt_checkpoints);
// swap-all (see planner.h). REQUIRES: the model's hardware has a host link.
void add_swap_all(PlanModel& model);
// Which evictions the cost-aware planner may choose.
enum class SwapUse : std::uint8_t {
  kNone,    // recompute only (no host link, or planning as if there were none)
  kScored,  // swaps and recomputes, by score alone
  // Whenever the worst op has one, a candidate that costs no time: a swap whose copies hide
  // behind compute (nothing waits for them) or a release of a tensor not read again; else by
  // score. A score weighs bytes against cost, so a cheap recompute can outscore a hidden swap
  // that costs only link time; on the trainer's profiles that replays what the link moves free.
  kHiddenFirst,
};
// The cost-aware planner: while the model's peak passes `target_bytes`, evicts at the op with
// the most resident bytes the candidate with the best score (bytes x over-target ops its
// interval covers / cost). Returns false when that op is over the target and has no candidate
// left (the target cannot be reached); the model then holds every eviction made so far.
// REQUIRES: the model's hardware has a host link unless `swaps` is kNone.
bool add_cost_aware(PlanModel& model, std::size_t target_bytes, SwapUse swaps);

}  // namespace ebb
