// A reference implementation of Dynamic Tensor Rematerialization's simulator (Kirisame et al.,
// "Dynamic Tensor Rematerialization", ICLR 2021) with its h_DTR^eq heuristic, run over a
// Profile: what DTR itself does under a budget, written from the paper and independent of the
// engine's own dynamic eviction (engine/residency/eviction.h), so that `ebb plan` can be held
// against it and can take what it did as a plan candidate (planner.cc).
//
// The run, op by op in profile order:
//  - Before an op, its inputs are made resident: an evicted input is rematerialized by running
//    its producer again (its own evicted inputs first, recursively); a re-run rebuilds every
//    output of the op, costs the op's duration, and an output that was already resident is freed
//    right after (it was computed twice). The inputs are locked while the op runs.
//  - The op's outputs are allocated; while the resident bytes plus the outputs' pass the budget,
//    the resident evictable tensor with the smallest h = e*(t) / (bytes(t) x staleness(t)) is
//    evicted. Evictable: it has a producer (constants never are), it is not locked, and it can be
//    rebuilt (each input of its producer resident, or evicted and rebuildable in turn).
//    staleness = the clock (base and remat compute so far) minus the tensor's last access. e*
//    is h_DTR^eq's estimate: the tensor's own compute plus, once per equivalence class, the
//    compute of the classes of its evicted neighbours (inputs of its producer and outputs of the
//    ops that read it), where an evicted tensor joins the classes of its evicted neighbours in a
//    union-find and a rematerialized one takes its compute out of its class (the classes are not
//    split: the approximation of the paper's section 4).
//  - Nothing evictable while the bytes do not fit: infeasible (kOutOfMemory outcome).
//  - The program's frees: as in the DTR authors' simulator with eager eviction (their paper's
//    runs), a freed tensor's bytes go at once but its recipe stays: a later rematerialization
//    that reads it rebuilds it, and it counts in the equivalence classes as an evicted tensor. A
//    rematerialized freed tensor stays resident (and evictable) until evicted, as there. One
//    departure: DTR pins constants, so a freed constant keeps its bytes; here the profile's
//    frees are followed (the budget is the profile's), so a freed tensor that cannot be rebuilt
//    (no producer, or an input gone) keeps its bytes only while an evicted tensor still wanted
//    needs it (as the engine's pager does), and is gone after. keep_freed_constants pins them
//    as DTR does (their bytes stay to the end); the engine does not, so a plan written from
//    such a run may ask for drops the engine cannot undo.
//  - An op that reads a tensor some op writes in place (ProfiledOp::writes) is never replayed:
//    its outputs are not evicted (the engine could drop them before the write; the reference is
//    conservative there).
//  - With rematerialize_outputs, tensors the program never frees are rematerialized at the end
//    of the iteration, as the authors' simulator does (its outputs must be material).
//  - Thrashed: the remat compute passes max_remat_overhead x the base compute (the authors'
//    simulator gives up at a 2x total, i.e. remat over 1x the base), or the events pass their
//    bound (8 x (ops + tensors) + 4096, which also bounds zero-duration loops).
//
// Memory is O(ops + tensors + events).
//
// Thread safety: a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

struct DtrReferenceOptions {
  std::size_t budget_bytes = 0;  // resident tensor bytes never pass it; REQUIRES: > 0
  // Remat compute allowed, as a multiple of the base compute; 0: no limit. 1 is the DTR
  // authors' simulator (overhead limit 2: total compute at most twice the base).
  double max_remat_overhead = 1.0;
  bool rematerialize_outputs = true;
  // DTR's pinned constants: a freed tensor without a producer keeps its bytes (see above).
  bool keep_freed_constants = false;
};

enum class DtrOutcome : std::uint8_t { kFits, kOutOfMemory, kThrashed };
std::string_view dtr_outcome_name(DtrOutcome outcome);  // "fits", "out of memory", "thrashed"

// One eviction by the heuristic: the tensor left after op `evicted_after` (before op
// evicted_after + 1 ran; nullopt: before op 0) and was rematerialized before op
// `rematerialized_before` (ops.size(): at the end, as an output; nullopt: never again).
struct DtrEvent {
  std::size_t tensor = 0;
  std::optional<std::size_t> evicted_after;
  std::optional<std::size_t> rematerialized_before;
  // A rematerialization for op evicted_after + 1 read it before it was evicted (DTR evicts
  // between the rebuilds of an op's inputs, which a plan's op-granular drops cannot).
  bool read_before_eviction = false;
};

struct DtrReferenceResult {
  DtrOutcome outcome = DtrOutcome::kFits;
  std::string message;                 // why, when it does not fit: the op and the bytes
  std::int64_t base_compute_ns = 0;    // the profile's op time
  std::int64_t remat_compute_ns = 0;   // re-runs of producers (up to where it stopped)
  std::size_t peak_bytes = 0;          // resident tensor bytes, at most the budget
  std::size_t evictions = 0;           // by the heuristic (program frees not counted)
  std::size_t rematerializations = 0;  // producer re-runs
  // Tensors rebuilt after the program freed them (for another tensor's rematerialization), which
  // DTR then keeps until evicted: a plan cannot say that (its evictions end at the program's
  // free), so the engine rebuilds them at each replay that needs them, and a plan written from
  // such a run may replay more than the run did.
  std::size_t rebuilt_after_free = 0;
  std::vector<DtrEvent> events;  // one per eviction, in eviction order

  bool feasible() const { return outcome == DtrOutcome::kFits; }
  // remat / base compute (0 for a profile without op time).
  double extra_compute() const;
};

// Runs DTR over `profile` (see the file comment). kInvalidArgument for a budget of 0; the
// outcome says whether it fit.
// REQUIRES: validate_profile(profile) passed.
Result<DtrReferenceResult> run_dtr_reference(const Profile& profile,
                                             const DtrReferenceOptions& options);

// What a run did, as plan evictions of the same profile (Plan::evictions' order): each interval
// a tensor still wanted by the program spent evicted, from the op after which it left to the op
// before which it came back (prefetch_at) and the next op that reads it (needed_at); a tensor
// back for a rematerialization only and evicted again before an op read it is one interval.
// Evictions after the program freed the tensor are the program's business, not the plan's.
// A tensor evicted while op k's inputs were rebuilt, after one of those rebuilds read it
// (DtrEvent::read_before_eviction), has no exact plan: dropped after op k - 1, the engine
// rebuilds it for that rebuild (more compute than DTR); with `after_reads`, it is dropped after
// op k (DTR's compute, but its bytes stay while op k's outputs are allocated, which DTR did not
// hold).
std::vector<Eviction> dtr_plan_evictions(const Profile& profile, const DtrReferenceResult& run,
                                         bool after_reads);

}  // namespace ebb
