// Replay: runs a recorded sequence of allocs and frees (an ebb alloc trace, or a DTR log's
// storage lifetimes) through a CachingAllocator on a Device, to measure how much memory the
// allocator reserves for a workload's live bytes (fragmentation) and how fast it serves them.
//
// The replayed memory is never read or written, so on the cpu backend (which reserves address
// space with mmap) a replay of a many-GiB workload costs no RAM.
//
// Thread safety: replay() is a pure function of its arguments; it uses the Device from the
// calling thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "allocator/alloc_trace.h"
#include "allocator/allocator_stats.h"
#include "allocator/caching_allocator.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

// What a replay measured.
struct ReplayResult {
  std::size_t peak_live_bytes = 0;      // max over time of the requested bytes of live allocs
  std::size_t peak_reserved_bytes = 0;  // max over time of the device memory the allocator held
  double reserved_over_live = 0;        // peak_reserved_bytes / peak_live_bytes (0 if no allocs)
  std::size_t allocs = 0;               // alloc events replayed
  std::size_t frees = 0;                // free events replayed
  std::size_t streams = 0;              // distinct stream ids in the trace
  double seconds = 0;                   // wall time of the replay loop alone
  AllocatorStats stats;                 // the allocator's figures after the last event
};

// Replays `events` in order through a new CachingAllocator with `options` on `device`: one
// Stream per distinct stream id (id 0 is device.default_stream(), others are created), an alloc
// on its stream, a free on its own stream (or on the free's stream when that differs from the
// alloc's). Allocations still live at the end are freed after the timed loop.
// Errors: kInvalidArgument for an event sequence that is not well formed (an alloc of an id in
// use, a free of an id not live, 0 bytes), and the allocator's own Status (kOutOfMemory under a
// budget smaller than the workload, say) prefixed with the event's index, id and bytes.
Result<ReplayResult> replay(const std::vector<AllocEvent>& events, Device& device,
                            const CachingAllocatorOptions& options);

// The peak of live requested bytes of `events`, computed without an allocator (frees of
// unknown ids are ignored). For sizing a device before a replay.
std::size_t events_peak_live_bytes(const std::vector<AllocEvent>& events);

}  // namespace ebb
