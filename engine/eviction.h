// Victim selection for dynamic eviction (no profile, no plan): when the allocator cannot find
// room, the engine ranks the resident tensors it may evict and evicts from the front until it
// has released enough bytes.
//
//  - recompute: tensors with a producer on the tape that are not parameters, inputs or optimizer
//    state, by the DTR heuristic h = recompute_cost / (bytes x staleness), lowest first, where
//    recompute_cost includes the chain of dropped inputs and staleness = ticks since last use+1;
//  - swap: any tensor whose host copy fits the host tier, most bytes per second of transfer
//    first (the largest first, since every copy crosses the same link), a tensor that already
//    has a clean host copy before all others (evicting it costs no copy), older first on ties;
//  - both: for each tensor the cheaper of recompute and swap-in (bytes / host link bandwidth),
//    scored as DTR scores a drop, cost / (bytes x staleness).
//
// Thread safety: pure functions of the tables passed in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/tape.h"

namespace ebb {

enum class EvictionPolicy : std::uint8_t { kNone, kSwap, kRecompute, kBoth };
// "none", "swap", "recompute", "both".
std::string_view eviction_policy_name(EvictionPolicy policy);

enum class EvictionAction : std::uint8_t { kDrop, kSwap };

struct EvictionCandidate {
  std::uint32_t slot = 0;
  EvictionAction action = EvictionAction::kDrop;
  double score = 0;  // lower is evicted first
};

struct EvictionContext {
  EvictionPolicy policy = EvictionPolicy::kNone;
  std::uint64_t tick = 0;                // the engine's current tick
  double host_link_bytes_per_s = 10e9;   // device<->host bandwidth for swap-in estimates
  std::size_t host_tier_free_bytes = 0;  // room left in the host tier for new host copies
};

// True when dropping the tensor loses nothing that replaying its producer cannot rebuild, and
// its kind is one the engine recomputes (not a parameter, input or optimizer state).
bool droppable(const TensorRecord& record);

// The resident, unlocked, live tensors the policy may evict, best victim first.
std::vector<EvictionCandidate> rank_eviction_candidates(const TensorTable& tensors,
                                                        const std::vector<OpRecord>& tape,
                                                        const EvictionContext& context);

}  // namespace ebb
