// The executor's state: the plans an Engine holds (one per profiled shape of the loop's work),
// which one the current iteration follows, and how far it has got. The Engine's member functions
// in engine_plan.cc apply it; this header holds the plain data and the pure functions.
//
// How an iteration follows a plan. Op k of the iteration is matched against op k of the plan's
// profile by its signature: its name and the bytes of every input. Outputs are left out: a
// profile imported from a DTR log has ops without outputs, which the simulator runs with a
// one-byte placeholder output; and an output whose size changed is caught at the first op
// that reads it. While they match, the
// plan's actions at k are applied: copies back to the device that start before op k, then op k,
// then the swap-outs and drops after op k. A mismatch first looks for another cached plan whose
// profile agrees with every op run so far (alternating shapes); when none does, the iteration has
// diverged: it finishes under dynamic eviction and the engine profiles the next iteration that
// does not match a cached plan, to plan for it.
//
// Thread safety: not thread-safe; owned by the Engine's driving thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "engine/plan.h"
#include "engine/profile.h"

namespace ebb {

// Counters of the executor since the engine was created.
struct ExecutorStats {
  std::int64_t plans_set = 0;            // plans accepted by set_plan (or made by the planner)
  std::int64_t plans_refused = 0;        // plans set_plan or the planner refused
  std::int64_t planned_iterations = 0;   // iterations that followed a plan to their last op
  std::int64_t diverged_iterations = 0;  // iterations that left every cached plan
  std::int64_t plan_switches = 0;        // mid-iteration moves to another cached plan
  std::int64_t planned_swap_outs = 0;    // swap-outs the plan issued
  std::int64_t planned_drops = 0;        // drops the plan issued (early frees included)
  std::int64_t skipped_actions = 0;      // planned evictions not possible at their op
  std::int64_t prefetches = 0;           // copies back started ahead of their use
  std::int64_t late_prefetches = 0;      // prefetches not complete when their op needed them
  std::int64_t fallback_evictions =
      0;                     // tensors dynamic eviction evicted while a plan was followed
  std::string last_refusal;  // why the last plan was refused; empty if none
};

// What identifies one op for matching against a profile: its name and the bytes of its inputs,
// hashed.
std::uint64_t op_signature(std::string_view name, const std::vector<std::size_t>& input_bytes);
// The signature of every op of `profile`.
std::vector<std::uint64_t> profile_op_signatures(const Profile& profile);

inline constexpr std::uint32_t kNoSlot = std::numeric_limits<std::uint32_t>::max();

// One plan the engine can follow, with the profile it was made for.
struct CachedPlan {
  Plan plan;
  Profile profile;
  std::vector<std::uint64_t> signatures;  // profile_op_signatures(profile)
  // Per eviction: how many ops earlier than its prefetch_at the copy back now starts, raised
  // each time the prefetch was late (feedback), never before the op after the eviction.
  std::vector<std::size_t> prefetch_advance;
};

struct ExecutorState {
  std::vector<CachedPlan> plans;
  int active = -1;        // index into plans followed by this iteration; -1 = none
  bool diverged = false;  // this iteration left every plan
  // Signatures of the ops run in this iteration, for matching another cached plan.
  std::vector<std::uint64_t> run_signatures;
  std::vector<std::size_t> input_bytes;  // plan_before_op's scratch, kept to save an allocation
  // The active plan's actions by op index: evictions whose copy back starts before op k, and
  // evictions to apply right after op k.
  std::vector<std::vector<std::size_t>> prefetch_before;
  std::vector<std::vector<std::size_t>> evict_after;
  // Profile tensor id -> engine slot, learned as ops read and write tensors (kNoSlot: unseen).
  // The tensors that exist before the iteration's first op are mapped as the profiler numbers
  // them (see plan_tensor_created), so that a plan may move them before any op reads them.
  std::vector<std::uint32_t> slot_of;
  std::size_t next_unproduced = 0;  // the next profile tensor without a producer to map
  // Per engine slot (grown on demand): the eviction (index + 1) the tensor is off the device for
  // under the plan, 0 when none. A tensor rebuilt inside such an interval (as the input of a
  // replay) is dropped again after the op.
  std::vector<std::uint32_t> planned_off;
  // Per engine slot: the eviction (index + 1) whose prefetch brought the tensor back and has not
  // been waited for yet; used for late-prefetch feedback.
  std::vector<std::uint32_t> prefetched_by;
  // A profile of the next unmatched iteration is wanted (after a divergence).
  bool reprofile = false;
};

// Fills the action lists of `state` for plans[index] (with its prefetch_advance applied).
void index_plan_actions(ExecutorState& state, std::size_t index);

}  // namespace ebb
