// PlanExecutor: follows a Plan in the steady-state iterations. It holds the plans of an engine
// (one per profiled shape of the loop's work), which one the current iteration follows and how
// far it has got, and the late-prefetch feedback; it moves tensors only through the pager's
// narrow interface (swap_out, drop_recoverable, prefetch), so a tensor the plan moved comes back
// by the same copy-back and replay paths as under dynamic eviction, and the bits do not depend on
// whether the plan was followed, late or abandoned.
//
// How an iteration follows a plan. Op k of the iteration is matched against op k of the plan's
// profile by its signature: its name and the bytes of every input. Outputs are left out: a
// profile imported from a DTR log has ops without outputs, which the simulator runs with a
// one-byte placeholder output; and an output whose size changed is caught at the first op that
// reads it. While they match, the plan's actions at k are applied: copies back to the device
// that start before op k (queued by the transfer engine by the op that needs them), then op k,
// then the swap-outs and drops after op k, and drops again of tensors that a replay rebuilt
// inside their planned interval. A mismatch first looks for another cached plan whose profile
// agrees with every op run so far (alternating shapes); when none does, the iteration has
// diverged: it finishes under dynamic eviction and the engine profiles the next iteration that
// does not match a cached plan, to plan for it. A prefetch that arrived after its op asked for
// it starts one op earlier in the next iteration. A swap to the NVMe tier (Eviction::tier) is
// written through the transfer engine's I/O thread, and its prefetch is an NVMe read queued by
// the deadline of the op that needs it; a plan that swaps to NVMe is refused by an engine
// without an NVMe tier. A plan's hold (Plan::holds) keeps a released tensor that nothing can
// rebuild on the device for the replays that read it: the pager holds it from the op that reads
// it and lets it go after the hold's last op.
//
// Ownership: owned by the Engine; references the options, the tensor table, the tape, the pager
// and the profiler, which outlive it.
// Thread safety: not thread-safe; the engine's driving thread calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "engine/residency/pager.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/profiler.h"
#include "engine/runtime/tape.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

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
  // Tensors dynamic eviction evicted while a plan was followed.
  std::int64_t fallback_evictions = 0;
  std::string last_refusal;  // why the last plan was refused; empty if none
};

// What identifies one op for matching against a profile: its name and the bytes of its inputs,
// hashed.
std::uint64_t op_signature(std::string_view name, const std::vector<std::size_t>& input_bytes);
// The signature of every op of `profile`.
std::vector<std::uint64_t> profile_op_signatures(const Profile& profile);

class PlanExecutor final : public EvictionHooks {
 public:
  PlanExecutor(const EngineOptions& options, TensorTable& tensors, Tape& tape, Pager& pager,
               Profiler& profiler);
  PlanExecutor(const PlanExecutor&) = delete;
  PlanExecutor& operator=(const PlanExecutor&) = delete;

  // Adds `plan`, made for `profile`, to the plans followed from the next iteration on (replacing
  // one made for the same profile key). The plan is checked against the profile (validate_plan)
  // and against `budget_bytes`, the engine's; a refused plan is kInvalidArgument naming the
  // field, and the executor goes on as it did. `in_iteration`: the iteration in flight keeps
  // the plan it follows.
  Status set_plan(const Plan& plan, const Profile& profile, std::size_t budget_bytes,
                  bool in_iteration);
  void clear_plans();
  // The plan the current (or next) iteration follows; nullptr when none.
  const Plan* active_plan() const;
  const ExecutorStats& stats() const { return stats_; }
  bool has_plans() const { return !plans_.empty(); }

  // Hooks of the engine's iteration, in the order it calls them.
  void begin_iteration();
  // A tensor made by input()/parameter() inside the iteration, or live at its start.
  void tensor_created(std::uint32_t slot);
  // Before op `op_index` is run on these inputs: follows or leaves the plan, maps profile
  // tensors to slots, starts the prefetches due.
  Status before_op(std::size_t op_index, std::string_view name,
                   const std::vector<std::uint32_t>& input_slots);
  // After op `op_index` was launched: the plan's swap-outs and drops, and drops again of tensors
  // that a replay rebuilt inside their planned interval.
  void after_op(std::size_t op_index);
  // After the device was synchronized: late-prefetch feedback, counters, and a plan for a
  // profile the warm-up (or a re-profile) just completed, from options.planner.
  Status end_iteration(bool ok, bool profile_completed);

  // EvictionHooks: drops, until `bytes_needed` are freed, the tensors a replay of the current
  // op rebuilt that the plan keeps off the device (after_op would drop them after the op).
  std::size_t make_room(std::size_t bytes_needed) override;
  void evicted_dynamically(std::int64_t tensors) override;

 private:
  static constexpr std::uint32_t kNoSlot = std::numeric_limits<std::uint32_t>::max();

  // One plan the engine can follow, with the profile it was made for.
  struct CachedPlan {
    Plan plan;
    Profile profile;
    std::vector<std::uint64_t> signatures;  // profile_op_signatures(profile)
    // Per eviction: how many ops earlier than its prefetch_at the copy back now starts, raised
    // each time the prefetch was late (feedback), never before the op after the eviction.
    std::vector<std::size_t> prefetch_advance;
  };

  bool following() const { return active_ >= 0 && !diverged_; }
  const CachedPlan& active() const { return plans_[static_cast<std::size_t>(active_)]; }
  // Fills the action lists for plans_[index] (with its prefetch_advance applied).
  void index_actions(std::size_t index);
  std::uint32_t& planned_off(std::uint32_t slot);
  // Whether the plan keeps `slot` off the device at op `op_index` (it was rebuilt inside an
  // interval of its eviction, before the op from which the plan keeps it).
  bool kept_off(std::uint32_t slot, std::size_t op_index) const;

  const EngineOptions& options_;
  TensorTable& tensors_;
  Tape& tape_;
  Pager& pager_;
  Profiler& profiler_;
  ExecutorStats stats_;

  std::vector<CachedPlan> plans_;
  int active_ = -1;        // index into plans_ followed by this iteration; -1 = none
  bool diverged_ = false;  // this iteration left every plan
  // A profile of the next unmatched iteration is wanted (after a divergence).
  bool reprofile_ = false;
  // Signatures of the ops run in this iteration, for matching another cached plan.
  std::vector<std::uint64_t> run_signatures_;
  std::vector<std::size_t> input_bytes_;  // before_op's scratch, kept to save an allocation
  // The active plan's actions by op index: evictions whose copy back starts before op k, and
  // evictions to apply right after op k.
  std::vector<std::vector<std::size_t>> prefetch_before_;
  std::vector<std::vector<std::size_t>> evict_after_;
  // The active plan's holds: per profile tensor the op its hold ends after (0: none), and per
  // op the tensors whose hold ends after it.
  std::vector<std::size_t> hold_until_;
  std::vector<std::vector<std::size_t>> hold_ends_;
  // Profile tensor id -> engine slot, learned as ops read and write tensors (kNoSlot: unseen).
  // The tensors that exist before the iteration's first op are mapped as the profiler numbers
  // them (see tensor_created), so that a plan may move them before any op reads them.
  std::vector<std::uint32_t> slot_of_;
  std::size_t next_unproduced_ = 0;  // the next profile tensor without a producer to map
  // Per engine slot (grown on demand): the eviction (index + 1) the tensor is off the device for
  // under the plan, 0 when none. A tensor rebuilt inside such an interval (as the input of a
  // replay) is dropped again after the op.
  std::vector<std::uint32_t> planned_off_;
  // Prefetch ids given to the pager: (plan index, eviction index) per id - 1, this iteration.
  std::vector<std::pair<int, std::size_t>> prefetch_ids_;
};

}  // namespace ebb
