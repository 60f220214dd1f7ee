// PinnedHostPool: a cache of page-locked host buffers for staging copies between device and
// host, with a capacity limit.
//
// Memory comes from Device::allocate_pinned_host (cudaHostAlloc on cuda, mlock'ed aligned
// memory on cpu) in chunks of kPinnedMinChunkBytes, or of the rounded request when it is
// larger, never past the capacity; requests are served best-fit from cached free ranges,
// split and coalesced. Sizes are rounded to 4 KiB only: a 3 MiB + 4 KiB staging buffer costs
// that, not 4 MiB, unlike allocators that round large requests to a power of two.
//
// Ownership: holds a reference to the Device, which must outlive it; returns every chunk to
// the device on destruction.
//
// Thread safety: thread-safe; one mutex guards the pool, and is held across the Device calls
// that take and return chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

inline constexpr std::size_t kPinnedRoundBytes = 4 * kKiB;
inline constexpr std::size_t kPinnedMinChunkBytes = 2 * kMiB;

struct PinnedHostPoolStats {
  std::size_t capacity_bytes = 0;        // ceiling on reserved_bytes
  std::size_t reserved_bytes = 0;        // pinned memory held from the device
  std::size_t allocated_bytes = 0;       // bytes of live buffers, as rounded
  std::size_t peak_allocated_bytes = 0;  // highest allocated_bytes since creation
  std::size_t peak_reserved_bytes = 0;   // highest reserved_bytes since creation
  std::int64_t chunks = 0;               // pinned allocations held
  std::int64_t allocations = 0;          // live buffers
};

class PinnedHostPool {
 public:
  // capacity_bytes: ceiling on pinned memory held; must be > 0.
  static Result<std::unique_ptr<PinnedHostPool>> create(Device& device, std::size_t capacity_bytes);
  ~PinnedHostPool();
  PinnedHostPool(const PinnedHostPool&) = delete;
  PinnedHostPool& operator=(const PinnedHostPool&) = delete;

  // 4 KiB-aligned buffer of at least `bytes`. kInvalidArgument for 0; kOutOfMemory (naming the
  // request, held, cached and capacity) when the capacity would be passed after releasing
  // every free chunk.
  Result<void*> allocate(std::size_t bytes);
  // kInvalidArgument for a pointer that is not a live buffer of this pool.
  Status free(void* ptr);
  // Returns every chunk with no live buffer to the device.
  Status release_cached();
  PinnedHostPoolStats stats() const;

 private:
  // Implementation state, defined in the .cc: chunks, ranges by address, free ranges by size.
  struct State;
  PinnedHostPool(Device& device, std::size_t capacity_bytes);

  Device& device_;
  const std::size_t capacity_bytes_;
  mutable std::mutex mu_;
  std::unique_ptr<State> state_;  // guarded by mu_
};

}  // namespace ebb
