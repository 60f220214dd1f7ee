// CachingAllocator: owns all device memory of an engine and never holds more than its budget.
//
// Requests are rounded (512 B), split into a small pool (up to 1 MiB) and a large pool, and
// served best-fit from cached free blocks, splitting a larger block and coalescing neighbours on
// free. Blocks are stream-aware: a block freed on stream S is reusable on S at once and on
// another stream only once an event recorded on S after the free has completed.
//
// Two ways to take memory from the Device:
//  - classic segments (cudaMalloc-style): small requests share 2 MiB segments, requests under
//    10 MiB share 20 MiB segments, larger ones get their own segment rounded to 2 MiB;
//  - expandable segments (default): one reserved virtual range per pool, with physical pages
//    mapped on demand, so a freed region merges with its neighbours wherever it began, and a
//    cached page can be unmapped and mapped again where it is needed.
//
// The budget: reserved bytes never pass budget_bytes. On a miss the allocator (1) reuses blocks
// freed on other streams whose events have completed, (2) takes new memory if the budget
// allows, (3) releases cached memory, (4) calls the eviction callback (the engine frees or
// swaps tensors), (5) waits for other streams' pending frees, and otherwise fails with
// kOutOfMemory and a report: requested, live, cached, largest free block, budget.
//
// Ownership: the allocator holds a reference to the Device, which must outlive it. Streams
// passed to allocate/free must outlive the allocator's use of them (until the allocator is
// destroyed or empty_cache() has returned). Memory still allocated at destruction is returned
// to the device.
//
// Thread safety: thread-safe; one lock (a SpinLock: the fast path holds it for nanoseconds)
// guards the heap. The eviction callback runs without the lock held and may call free().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/alloc_trace.h"
#include "allocator/allocator_stats.h"
#include "allocator/spin_lock.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

inline constexpr std::size_t kMinBlockBytes = 512;                  // rounding unit
inline constexpr std::size_t kSmallRequestLimitBytes = kMiB;        // small pool: <= 1 MiB
inline constexpr std::size_t kSmallSegmentBytes = 2 * kMiB;         // classic small segment
inline constexpr std::size_t kLargeSharedLimitBytes = 10 * kMiB;    // classic: below, share...
inline constexpr std::size_t kLargeSharedSegmentBytes = 20 * kMiB;  // ...a 20 MiB segment
inline constexpr std::size_t kLargeRoundBytes = 2 * kMiB;           // classic: own segment rounding

struct CachingAllocatorOptions {
  // Ceiling on reserved bytes; 0 means the device's capacity.
  std::size_t budget_bytes = 0;
  // Expandable segments (virtual range + pages on demand) or classic segments. Where the device
  // has no virtual memory management (reserve_range answers kUnavailable) the allocator uses
  // classic segments instead; CachingAllocator::options() tells which is in use.
  bool expandable_segments = true;
};

// Called on a miss that releasing the cache could not cover. Receives the bytes the allocator
// still lacks and the stream of the request; frees or swaps out tensors through free(), and
// returns the number of bytes it released (0 when it could release nothing).
using EvictionCallback = std::function<std::size_t(std::size_t bytes_needed, Stream& stream)>;

// A live or free block as seen from outside, for tests, reports and replay checks.
struct BlockSnapshot {
  std::uintptr_t address = 0;
  std::size_t bytes = 0;            // rounded size of the block
  std::size_t requested_bytes = 0;  // 0 for a free block
  bool allocated = false;
  PoolKind pool = PoolKind::kSmall;
  std::uint32_t stream = 0;  // allocating stream (live) or last-use stream (free)
};

class CachingAllocator {
 public:
  // Fails with kInvalidArgument when the budget is larger than the device's capacity or below
  // the smallest block, naming both figures.
  static Result<std::unique_ptr<CachingAllocator>> create(Device& device,
                                                          CachingAllocatorOptions options);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns a block of at least `bytes` bytes, 512-byte aligned, usable in stream order on
  // `stream`. `tag` is recorded in the trace only; the block's bytes count in
  // AllocatorStats::category_bytes[category] while it lives. kInvalidArgument for 0 bytes, more
  // than the budget or a category >= kAllocationCategories; kOutOfMemory with a report when even
  // evicting cannot make room.
  Result<void*> allocate(std::size_t bytes, Stream& stream, std::string_view tag = {},
                         std::uint8_t category = 0);
  // Frees a block whose last use was on its allocating stream.
  Status free(void* ptr);
  // Frees a block whose last use was on `last_use` (a copy stream, say): it is reusable on
  // `last_use` at once and elsewhere after an event on `last_use` shows it is past the free.
  Status free(void* ptr, Stream& last_use);

  // Returns every cached byte that no live block needs to the device (waiting for pending
  // cross-stream frees first).
  Status empty_cache();

  AllocatorStats stats() const;
  void reset_peak_stats();
  std::size_t budget_bytes() const { return budget_bytes_; }
  const CachingAllocatorOptions& options() const { return options_; }

  // The rounded size of a live block, or kInvalidArgument for a pointer that is not one.
  Result<std::size_t> block_bytes(const void* ptr) const;

  void set_eviction_callback(EvictionCallback callback);
  // nullptr stops tracing. The sink must outlive its use.
  void set_trace_sink(AllocTraceSink* sink);

  // Every block in address order, for tests and reports.
  std::vector<BlockSnapshot> snapshot() const;

  class Heap;  // the implementation; defined in allocator/heap.h (heap.cc, heap_segments.cc)

 private:
  CachingAllocator(Device& device, CachingAllocatorOptions options, std::size_t budget_bytes);

  Device& device_;
  const CachingAllocatorOptions options_;
  const std::size_t budget_bytes_;
  mutable SpinLock mu_;
  EvictionCallback eviction_;   // guarded by mu_
  std::unique_ptr<Heap> heap_;  // guarded by mu_
};

// Rounds a request to the allocator's block size (512 B multiples).
constexpr std::size_t round_block_bytes(std::size_t bytes) {
  return (bytes + kMinBlockBytes - 1) / kMinBlockBytes * kMinBlockBytes;
}

}  // namespace ebb
