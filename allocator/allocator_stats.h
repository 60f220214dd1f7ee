// AllocatorStats: what the caching allocator holds, in PyTorch's vocabulary
// (torch.cuda.memory_stats), so that a user can set ebb's figures beside PyTorch's.
//
// Thread safety: a plain value; CachingAllocator::stats() returns a consistent snapshot.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebb {

// One quantity followed over time.
struct StatCounter {
  std::int64_t current = 0;    // value now
  std::int64_t peak = 0;       // highest value since creation or the last reset_peak_stats()
  std::int64_t allocated = 0;  // total added since creation
  std::int64_t freed = 0;      // total removed since creation

  void increase(std::int64_t amount) {
    current += amount;
    allocated += amount;
    if (current > peak) peak = current;
  }
  void decrease(std::int64_t amount) {
    current -= amount;
    freed += amount;
  }
};

enum class PoolKind : std::uint8_t { kSmall = 0, kLarge = 1 };
// Categories a caller may tag its allocations with (CachingAllocator::allocate); the engine tags
// each block with the kind of the tensor it holds, so that memory is told apart by what it is
// for (parameters, gradients, optimizer state, activations, ...). Category 0 is the default.
inline constexpr int kAllocationCategories = 8;
inline constexpr int kPoolCount = 2;

// Figures for one pool (small: requests up to 1 MiB, large: the rest) or for all pools.
struct PoolStats {
  StatCounter allocated_bytes;  // bytes of live blocks, as rounded by the allocator
  StatCounter requested_bytes;  // bytes of live blocks, as the callers asked
  StatCounter reserved_bytes;   // device memory held: segments, or mapped pages
  // Live bytes plus freed bytes still in use by the device. ebb frees are stream-ordered (a
  // freed block is reusable on its stream at once), so this equals allocated_bytes; it is kept
  // under PyTorch's name so that figures line up.
  StatCounter active_bytes;
  StatCounter inactive_split_bytes;  // free bytes in segments that also hold live blocks
  StatCounter allocation;            // live blocks
  StatCounter segment;               // device allocations (classic) or mapped pages (expandable)
};

struct AllocatorStats {
  PoolStats all;                            // every pool together
  PoolStats pool[kPoolCount];               // indexed by PoolKind
  std::int64_t num_alloc_retries = 0;       // misses that freed cache or evicted and tried again
  std::int64_t num_ooms = 0;                // requests that failed with kOutOfMemory
  std::int64_t num_device_alloc = 0;        // calls that took memory from the device
  std::int64_t num_device_free = 0;         // calls that gave memory back to the device
  std::int64_t num_evictions = 0;           // calls to the eviction callback
  std::int64_t num_cross_stream_waits = 0;  // blocks reused on another stream after a wait
  std::size_t budget_bytes = 0;             // the configured ceiling on reserved bytes
  // Bytes of live blocks (as rounded) by the category the caller gave them.
  StatCounter category_bytes[kAllocationCategories];
};

}  // namespace ebb
