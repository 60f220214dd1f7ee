// Offload tiers for a plan's swaps. The planners choose what to swap and when by the host link;
// the host tier below the device has a fixed size (EngineOptions::host_tier_bytes), so a plan
// whose swapped bytes outgrow it at some op sends the swaps that do not fit one tier down, to
// NVMe, and its prediction prices those at NVMe's bandwidth (PlanModel).
//
// Which swaps go down: in the order the plan evicts them (evict_after, then tensor), each takes
// host room for its copy's span, from the op after its eviction to the op whose copy back starts
// (prefetch_at; the last op that reads it when it is never brought back); the first one whose
// span does not fit beside the earlier ones goes to NVMe. First come keeps the host tier, as the
// executor would find it at run time.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

struct TierAssignment {
  std::size_t host_swaps = 0;       // swaps whose copy the host tier holds
  std::size_t nvme_swaps = 0;       // swaps sent to the NVMe tier
  std::size_t peak_host_bytes = 0;  // the most bytes the host tier holds at one op
  std::int64_t added_step_ns = 0;   // what the NVMe swaps add to the model's step time
};

// Sets plan.evictions[i].tier for every swap of `plan` (made for `profile`) and adds
// TierAssignment::added_step_ns to plan.predicted.step_ns. host_tier_bytes: the host tier's
// size. kInvalidArgument naming the tensor when a swap does not fit the host tier and
// plan.hardware has no NVMe tier, or when host_tier_bytes is 0.
Result<TierAssignment> assign_offload_tiers(Plan& plan, const Profile& profile,
                                            std::size_t host_tier_bytes);

}  // namespace ebb
