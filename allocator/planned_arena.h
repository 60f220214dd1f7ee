// PlannedArena: runs a profiled iteration out of one reservation, serving each allocation at the
// offset an ArenaPlan (arena_plan.h) gave its buffer, so that the memory held is the plan's
// height (close to the most bytes live at once) instead of what an online allocator fragments
// into.
//
// The reservation is one block taken from a CachingAllocator, so the arena and everything else
// share that allocator's budget. An allocation is served from the plan when its plan id is in
// the plan, it asks for no more than the planned bytes, it is on the arena's stream, and no
// live planned allocation overlaps its planned bytes. Anything else (a divergent iteration, a
// new shape, a lifetime longer than profiled) falls back to the CachingAllocator and is counted
// in PlannedArenaStats::fallback_allocs; it is never served from memory that may be in use.
//
// Ownership: the arena holds references to the allocator and the stream, which must outlive
// it; it frees its reservation (and fallback blocks still live) when destroyed.
// Thread safety: not thread-safe; the caller serialises calls (the executor's thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "allocator/alloc_trace.h"
#include "allocator/allocator_stats.h"
#include "allocator/arena_plan.h"
#include "allocator/caching_allocator.h"
#include "allocator/replay.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

struct PlannedArenaStats {
  std::size_t arena_bytes = 0;       // the reservation: the plan's height
  std::int64_t planned_allocs = 0;   // requests served at their planned offset
  std::int64_t fallback_allocs = 0;  // requests the plan could not serve, given to the allocator
  StatCounter planned_bytes;         // requested bytes live at planned offsets
  StatCounter fallback_bytes;        // requested bytes live in fallback blocks
};

class PlannedArena {
 public:
  // Takes a block of plan.height_bytes from `allocator` on `stream`. kInvalidArgument when the
  // plan does not validate against `buffers` or two buffers share a plan id; the allocator's
  // status when the budget cannot hold the reservation (kInvalidArgument past the budget,
  // kOutOfMemory when other blocks hold it).
  static Result<std::unique_ptr<PlannedArena>> create(CachingAllocator& allocator, Stream& stream,
                                                      const std::vector<PlanBuffer>& buffers,
                                                      const ArenaPlan& plan);
  ~PlannedArena();
  PlannedArena(const PlannedArena&) = delete;
  PlannedArena& operator=(const PlannedArena&) = delete;

  // Memory for buffer `plan_id` of `bytes` bytes, usable on `stream`: at its planned offset
  // when the plan can serve it, else from the allocator (see the class comment). Errors are the
  // allocator's (kInvalidArgument for 0 bytes, kOutOfMemory).
  Result<void*> allocate(std::uint64_t plan_id, std::size_t bytes, Stream& stream);
  // Frees what allocate returned. kInvalidArgument for a pointer it did not return.
  Status free(void* ptr);

  PlannedArenaStats stats() const { return stats_; }
  std::size_t arena_bytes() const { return stats_.arena_bytes; }

 private:
  struct Slot {
    std::size_t offset = 0;
    std::size_t bytes = 0;  // planned bytes
  };
  struct Live {
    std::size_t end = 0;              // offset + planned bytes
    std::size_t requested_bytes = 0;  // what the caller asked
  };

  PlannedArena(CachingAllocator& allocator, Stream& stream)
      : allocator_(allocator), stream_(stream) {}
  bool slot_free(const Slot& slot) const;

  CachingAllocator& allocator_;
  Stream& stream_;
  char* base_ = nullptr;                           // the reservation, or nullptr for an empty plan
  std::unordered_map<std::uint64_t, Slot> slots_;  // plan id -> planned bytes
  std::map<std::size_t, Live> live_;               // offset -> planned allocation
  std::unordered_map<void*, std::size_t> fallback_live_;  // fallback block -> requested bytes
  PlannedArenaStats stats_;
};

// What replaying a trace through a PlannedArena measured: the allocator's figures (its
// peak_reserved_bytes covers the reservation and every fallback block) and the arena's.
struct PlannedReplayResult {
  ReplayResult replay;
  PlannedArenaStats arena;
};

// Replays `events` (one stream, id 0) through a PlannedArena over a new CachingAllocator with
// `options` on `device`, serving alloc i as plan id events[i].id. `buffers` and `plan` are the
// plan (e.g. plan_buffers_from_events of the same events, then plan_arena). Errors as replay()'s,
// and kInvalidArgument for an event on another stream.
Result<PlannedReplayResult> replay_planned(const std::vector<AllocEvent>& events,
                                           const std::vector<PlanBuffer>& buffers,
                                           const ArenaPlan& plan, Device& device,
                                           const CachingAllocatorOptions& options);

}  // namespace ebb
