// HostTier: the pinned host memory that swapped tensors live in, under a capacity limit, with a
// record of which tensor owns which bytes (for messages, tests and reports).
//
// Buffers come from a PinnedHostPool (allocator/pinned_host_pool.h: page-locked, 4 KiB
// granular, best fit from cached chunks), so device<->host copies from and to them are DMA on
// cuda. When the tier is full, allocate() fails with kOutOfMemory naming the tensor, and the
// caller spills elsewhere (the NVMe tier).
//
// Ownership: owns the pool; holds a reference to the Device, which must outlive it.
// Thread safety: thread-safe (one mutex over the owner table; the pool has its own).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/pinned_host_pool.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

// Which tensor holds a host tier buffer.
struct HostTierOwner {
  std::string tensor;
  std::size_t bytes = 0;  // as asked
};

class HostTier {
 public:
  // capacity_bytes: ceiling on pinned memory held; must be > 0.
  static Result<std::unique_ptr<HostTier>> create(Device& device, std::size_t capacity_bytes);

  // A 4 KiB-aligned buffer of at least `bytes` for `tensor`. kOutOfMemory naming the tensor,
  // the request, what the pool holds and its capacity, when it does not fit.
  Result<void*> allocate(std::string_view tensor, std::size_t bytes);
  // kInvalidArgument for a pointer that is not a live buffer of this tier.
  Status free(void* ptr);
  // The owner of a live buffer; nullopt for any other pointer.
  std::optional<HostTierOwner> owner(const void* ptr) const;
  // Every live buffer's owner, by address.
  std::vector<HostTierOwner> owners() const;

  PinnedHostPoolStats stats() const { return pool_->stats(); }
  // Bytes that can still be allocated (capacity less allocated, as rounded).
  std::size_t free_bytes() const;

 private:
  explicit HostTier(std::unique_ptr<PinnedHostPool> pool) : pool_(std::move(pool)) {}

  std::unique_ptr<PinnedHostPool> pool_;
  mutable std::mutex mu_;
  std::map<const void*, HostTierOwner> owners_;  // GUARDED_BY(mu_)
};

}  // namespace ebb
