// Plan: what the scheduler decides for one profiled iteration under a memory budget, and what the
// executor applies in the steady-state iterations. For every tensor of the Profile it was made
// from, the plan lists the intervals in which the tensor gives up its device bytes (an
// Eviction): after op `evict_after` the bytes leave the device (swapped out to a tier, or
// dropped), and they are back before op `needed_at` (a copy back started before op
// `prefetch_at`, or the producer replayed from the tape). A tensor with no eviction is kept.
//
// Semantics the executor follows and the planners plan for (op indices are Profile op indices):
//  - kSwap: right after op `evict_after` is launched, the tensor is copied to `tier` on a copy
//    stream and its device block is freed once the copy is done (stream-ordered). Before op
//    `prefetch_at` runs, the copy back starts on a copy stream into a fresh block; op
//    `needed_at` waits on its event (late: the wait shows as lost time).
//  - kRecompute: right after op `evict_after` the tensor's device block is freed (its bytes are
//    dropped). Before op `needed_at` its producer is replayed, after the producer's own dropped
//    inputs are rebuilt the same way (a chain). The replay allocates every output of the
//    producer; the ones not wanted are freed after the replay. A tensor a chain rebuilds inside
//    its own interval is dropped again after the op, unless the op is at or after its
//    `prefetch_at`: then it stays from there on (prefetch_at < needed_at is how a plan says
//    "the replays before op prefetch_at rebuild it; keep it", so that a chain is replayed once).
//  - `needed_at` is nullopt when no op reads the tensor again: the bytes are given up early
//    (before the program's own free) at no cost.
//  - A Hold keeps a tensor without a producer (a constant, an input, a weight version) that the
//    program frees after op f on the device until op `until` > f, because a planned replay
//    before op `until` reads it: nothing can rebuild it, so freeing it would leave the replay
//    without an input. The executor gives its bytes back right after op `until`.
// A tensor may have several evictions, in disjoint intervals, each between two of its uses:
// evict_after is its producer or any later op (any op for a tensor that exists before the
// iteration; a planner frees at a use, the engine's dynamic eviction written down as a plan
// frees where it ran out of room), no op in (evict_after, needed_at) reads it, and needed_at
// reads it.
//
// Plans are written as JSON beside the profile (profiles/README.md, "The plan format") and
// carry the fingerprint of the profile they were made for, so that a plan is never applied to
// another workload.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema/hardware_model.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

enum class EvictionMethod : std::uint8_t { kSwap, kRecompute };
enum class OffloadTier : std::uint8_t { kHost, kNvme };
// "swap", "recompute"; "host", "nvme".
std::string_view eviction_method_name(EvictionMethod method);
std::string_view offload_tier_name(OffloadTier tier);

// One interval in which one tensor is off the device (see the file comment).
struct Eviction {
  std::size_t tensor = 0;  // Profile tensor id
  EvictionMethod method = EvictionMethod::kRecompute;
  OffloadTier tier = OffloadTier::kHost;  // kSwap only
  std::size_t evict_after = 0;            // op index
  // kSwap: the op before which the copy back starts, evict_after < prefetch_at <= needed_at.
  // kRecompute: in (evict_after, needed_at]; below needed_at, a replay chain before that op
  // rebuilds it and it is kept from then on (see the file comment). Unused when needed_at is
  // nullopt.
  std::size_t prefetch_at = 0;
  std::optional<std::size_t> needed_at;  // the next op that reads it; nullopt: never again

  friend bool operator==(const Eviction&, const Eviction&) = default;
};

// A released tensor the plan keeps on the device for its replays (see the file comment).
struct Hold {
  std::size_t tensor = 0;  // Profile tensor id: no producer, freed by the program
  std::size_t until = 0;   // op index: the last op before which a replay reads it

  friend bool operator==(const Hold&, const Hold&) = default;
};

// What the simulator (or the planner's own model) predicts for a plan.
struct PlanPrediction {
  std::size_t peak_reserved_bytes = 0;  // allocator's peak reserved on the sim device
  std::size_t peak_live_bytes = 0;      // peak of resident tensor bytes under the plan
  std::int64_t base_compute_ns = 0;     // the profile's op time
  std::int64_t extra_compute_ns = 0;    // recompute replays
  std::int64_t step_ns = 0;             // predicted iteration time, transfers and waits included
  std::size_t swapped_bytes = 0;        // bytes copied out plus bytes copied back
  std::int64_t recomputed_ops = 0;      // producer replays per iteration
  bool checked_on_sim = false;          // the figures come from a run on the sim device

  friend bool operator==(const PlanPrediction&, const PlanPrediction&) = default;
};

// Which profile a plan belongs to: the shape of the work, not its timings.
struct ProfileKey {
  std::size_t ops = 0;
  std::size_t tensors = 0;
  std::uint64_t fingerprint = 0;  // profile_fingerprint()

  friend bool operator==(const ProfileKey&, const ProfileKey&) = default;
};
// A hash of op names, op inputs/outputs/frees and tensor sizes, kinds and producers (durations
// are left out: two profiles of the same work on different days have the same key).
ProfileKey profile_key(const Profile& profile);

// Where one slice of model state's master weights and optimizer state go, as --optimizer-state
// auto chose (engine/planner/state_placement.h): "device", "swapped", "host" or "nvme".
struct StateSliceDecision {
  std::string slice;  // "<group>.s<k>"
  std::string choice;
  std::size_t state_bytes = 0;
  double predicted_s = 0;  // the slice's part of the optimizer's step

  friend bool operator==(const StateSliceDecision&, const StateSliceDecision&) = default;
};

struct Plan {
  static constexpr int kSchemaVersion = 1;

  int version = kSchemaVersion;
  std::string policy;  // which planner made it: "plan", "recompute-all", "sqrt", "swap-all", ...
  std::size_t budget_bytes = 0;
  ProfileKey profile;
  HardwareModel hardware;
  std::vector<Eviction> evictions;  // sorted by (evict_after, tensor)
  std::vector<Hold> holds;          // sorted by tensor, one per tensor; optional in JSON
  PlanPrediction predicted;
  double planner_seconds = 0;  // how long planning took
  // With --optimizer-state auto: the choice per slice of model state; empty otherwise (every
  // slice on the device). Optional in JSON.
  std::vector<StateSliceDecision> state_placement;

  friend bool operator==(const Plan&, const Plan&) = default;
};

// Puts evictions in the order Plan::evictions keeps: by (evict_after, tensor).
void sort_evictions(std::vector<Eviction>& evictions);

// The plan's actions per op index, for the executor: what to do right before op k runs and
// right after it is launched. Each list holds indices into Plan::evictions.
struct OpActions {
  std::vector<std::size_t> prefetch_before;  // kSwap evictions with prefetch_at == k
  std::vector<std::size_t> evict_after;      // evictions with evict_after == k
};
// REQUIRES: validate_plan(plan, profile) passed.
std::vector<OpActions> plan_actions(const Plan& plan, std::size_t ops);

// Checks a plan against the profile it is to be applied to: schema version; the profile key;
// tensor ids and op indices in range; every evicted tensor exists in the interval, is not read
// inside it and is read at needed_at; kRecompute only for recomputable tensors; evictions of
// one tensor disjoint; kSwap only with a host link in the hardware model, kNvme only with an
// NVMe tier; holds sorted by tensor, each of a tensor without a producer that the program frees
// before `until`, and not evicted over its free. kInvalidArgument "<source_name>: <field path>:
// what is wrong".
Status validate_plan(const Plan& plan, const Profile& profile, const std::string& source_name);

// JSON (profiles/README.md, "The plan format"), one eviction per line.
std::string plan_to_json(const Plan& plan);
// Parses (does not validate against a profile: call validate_plan). An unknown version or a
// missing or ill-typed field is kInvalidArgument naming source_name and the field path.
Result<Plan> plan_from_json(std::string_view text, const std::string& source_name);
// Atomic write (temporary file, fsync, rename), as write_profile.
Status write_plan(const Plan& plan, const std::string& path);
Result<Plan> read_plan(const std::string& path);

}  // namespace ebb
