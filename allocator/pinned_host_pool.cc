#include "allocator/pinned_host_pool.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "kernels/arith.h"

namespace ebb {
namespace {

// "3149824 B (3.00 MiB)": the exact figure for grepping, the scaled one for reading.
std::string format_bytes(std::size_t bytes) {
  char buf[64];
  if (bytes >= kGiB) {
    std::snprintf(buf, sizeof buf, "%zu B (%.2f GiB)", bytes, static_cast<double>(bytes) / kGiB);
  } else if (bytes >= kMiB) {
    std::snprintf(buf, sizeof buf, "%zu B (%.2f MiB)", bytes, static_cast<double>(bytes) / kMiB);
  } else if (bytes >= kKiB) {
    std::snprintf(buf, sizeof buf, "%zu B (%.2f KiB)", bytes, static_cast<double>(bytes) / kKiB);
  } else {
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  }
  return buf;
}

std::string format_pointer(const void* ptr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(ptr));
  return buf;
}

}  // namespace

// The ranges of a chunk tile it exactly: every byte of a chunk belongs to one range, free or
// live. Two free ranges are never adjacent within a chunk (free() coalesces them), so a chunk
// with no live buffer is exactly one free range that starts at the chunk's base.
struct PinnedHostPool::State {
  struct Range {
    std::uintptr_t chunk = 0;  // base of the chunk the range lies in
    std::size_t bytes = 0;     // multiple of kPinnedRoundBytes
    bool free = true;
  };
  using RangeMap = std::map<std::uintptr_t, Range>;

  std::map<std::uintptr_t, std::size_t> chunks;  // base -> bytes, as taken from the device
  RangeMap ranges;                               // every range, by start address
  std::set<std::pair<std::size_t, std::uintptr_t>> free_by_size;  // (bytes, address)
  PinnedHostPoolStats stats;

  std::size_t cached_bytes() const { return stats.reserved_bytes - stats.allocated_bytes; }

  // The smallest free range of at least `bytes`, or ranges.end().
  RangeMap::iterator best_fit(std::size_t bytes) {
    auto it = free_by_size.lower_bound({bytes, 0});
    if (it == free_by_size.end()) return ranges.end();
    return ranges.find(it->second);
  }

  // Marks the front `bytes` of the free range `it` live; the rest stays free.
  void* carve(RangeMap::iterator it, std::size_t bytes) {
    Range& range = it->second;
    EBB_CHECK(range.free && range.bytes >= bytes, "carve from a live or too small range");
    free_by_size.erase({range.bytes, it->first});
    if (range.bytes > bytes) {
      const std::uintptr_t rest = it->first + bytes;
      ranges.emplace(rest, Range{range.chunk, range.bytes - bytes, true});
      free_by_size.insert({range.bytes - bytes, rest});
      range.bytes = bytes;
    }
    range.free = false;
    stats.allocated_bytes += bytes;
    stats.peak_allocated_bytes = std::max(stats.peak_allocated_bytes, stats.allocated_bytes);
    ++stats.allocations;
    return reinterpret_cast<void*>(it->first);
  }

  // Marks the live range `it` free and merges it with free neighbours of the same chunk.
  void release(RangeMap::iterator it) {
    stats.allocated_bytes -= it->second.bytes;
    --stats.allocations;
    it->second.free = true;
    auto next = std::next(it);
    if (next != ranges.end() && next->second.free && next->second.chunk == it->second.chunk) {
      free_by_size.erase({next->second.bytes, next->first});
      it->second.bytes += next->second.bytes;
      ranges.erase(next);
    }
    if (it != ranges.begin()) {
      auto prev = std::prev(it);
      if (prev->second.free && prev->second.chunk == it->second.chunk) {
        free_by_size.erase({prev->second.bytes, prev->first});
        prev->second.bytes += it->second.bytes;
        ranges.erase(it);
        it = prev;
      }
    }
    free_by_size.insert({it->second.bytes, it->first});
  }

  // Books a new chunk from the device as one free range.
  RangeMap::iterator add_chunk(void* ptr, std::size_t bytes) {
    const auto base = reinterpret_cast<std::uintptr_t>(ptr);
    chunks.emplace(base, bytes);
    free_by_size.insert({bytes, base});
    stats.reserved_bytes += bytes;
    stats.peak_reserved_bytes = std::max(stats.peak_reserved_bytes, stats.reserved_bytes);
    ++stats.chunks;
    return ranges.emplace(base, Range{base, bytes, true}).first;
  }

  // Returns every chunk with no live buffer to the device. All are dropped from the books even
  // when the device reports an error; the first error is returned.
  Status release_free_chunks(Device& device) {
    Status first_error;
    for (auto chunk = chunks.begin(); chunk != chunks.end();) {
      auto range = ranges.find(chunk->first);
      EBB_CHECK(range != ranges.end(), "a chunk without a range at its base");
      if (!range->second.free || range->second.bytes != chunk->second) {
        ++chunk;
        continue;
      }
      free_by_size.erase({range->second.bytes, range->first});
      ranges.erase(range);
      stats.reserved_bytes -= chunk->second;
      --stats.chunks;
      Status status = device.free_pinned_host(reinterpret_cast<void*>(chunk->first));
      if (!status.ok() && first_error.ok()) first_error = std::move(status);
      chunk = chunks.erase(chunk);
    }
    return first_error;
  }
};

Result<std::unique_ptr<PinnedHostPool>> PinnedHostPool::create(Device& device,
                                                               std::size_t capacity_bytes) {
  if (capacity_bytes == 0) {
    return invalid_argument("PinnedHostPool::create: capacity_bytes must be > 0");
  }
  return std::unique_ptr<PinnedHostPool>(new PinnedHostPool(device, capacity_bytes));
}

PinnedHostPool::PinnedHostPool(Device& device, std::size_t capacity_bytes)
    : device_(device), capacity_bytes_(capacity_bytes), state_(std::make_unique<State>()) {
  state_->stats.capacity_bytes = capacity_bytes;
}

PinnedHostPool::~PinnedHostPool() {
  // Buffers still live are the caller's bug; their memory goes back with their chunk all the
  // same, so that nothing pinned outlives the pool. A destructor cannot report a failed free.
  for (const auto& [base, bytes] : state_->chunks) {
    (void)device_.free_pinned_host(reinterpret_cast<void*>(base));
  }
}

Result<void*> PinnedHostPool::allocate(std::size_t bytes) {
  if (bytes == 0) return invalid_argument("PinnedHostPool::allocate: 0 bytes requested");
  std::lock_guard<std::mutex> lock(mu_);
  State& s = *state_;
  auto oom = [&](const std::string& why) -> Status {
    return out_of_memory("PinnedHostPool: cannot allocate " + format_bytes(bytes) + ": " + why +
                         "; held " + format_bytes(s.stats.reserved_bytes) +
                         ", of which cached (free) " + format_bytes(s.cached_bytes()) +
                         ", capacity " + format_bytes(capacity_bytes_));
  };
  // The second test keeps the rounding below from overflowing when the capacity is huge.
  if (bytes > capacity_bytes_ || bytes > std::numeric_limits<std::size_t>::max() / 2) {
    return oom("the request alone passes the capacity");
  }
  const std::size_t rounded = round_up(bytes, kPinnedRoundBytes);

  auto fit = s.best_fit(rounded);
  if (fit != s.ranges.end()) return s.carve(fit, rounded);

  // A miss: take a new chunk. Free chunks are released first when they stand in the way.
  if (rounded > capacity_bytes_ - s.stats.reserved_bytes) {
    EBB_RETURN_IF_ERROR(s.release_free_chunks(device_));
    if (rounded > capacity_bytes_ - s.stats.reserved_bytes) {
      return oom("rounded to " + format_bytes(rounded) +
                 ", it would pass the capacity after releasing every free chunk");
    }
  }
  // Chunks are kPinnedMinChunkBytes so that small requests share one pinned allocation, but
  // never larger than the headroom left under the capacity.
  const std::size_t headroom = capacity_bytes_ - s.stats.reserved_bytes;
  const std::size_t chunk_bytes = std::max(
      rounded, std::min(kPinnedMinChunkBytes, headroom / kPinnedRoundBytes * kPinnedRoundBytes));
  Result<void*> chunk = device_.allocate_pinned_host(chunk_bytes);
  if (!chunk.ok() && s.cached_bytes() > 0) {
    // The device itself is short (host memory, or the lock limit): give back what is cached.
    EBB_RETURN_IF_ERROR(s.release_free_chunks(device_));
    chunk = device_.allocate_pinned_host(chunk_bytes);
  }
  if (!chunk.ok()) {
    return Status(chunk.status().code(), "PinnedHostPool: allocate_pinned_host(" +
                                             format_bytes(chunk_bytes) + ") for a request of " +
                                             format_bytes(bytes) +
                                             " failed: " + chunk.status().message());
  }
  if (reinterpret_cast<std::uintptr_t>(*chunk) % kPinnedRoundBytes != 0) {
    Status status = device_.free_pinned_host(*chunk);
    (void)status;  // the misalignment is the error to report
    return internal_error("PinnedHostPool: device returned pinned memory at " +
                          format_pointer(*chunk) + ", not aligned to " +
                          format_bytes(kPinnedRoundBytes));
  }
  return s.carve(s.add_chunk(*chunk, chunk_bytes), rounded);
}

Status PinnedHostPool::free(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = *state_;
  auto it = s.ranges.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == s.ranges.end() || it->second.free) {
    return invalid_argument("PinnedHostPool::free: " + format_pointer(ptr) +
                            " is not a live buffer of this pool");
  }
  s.release(it);
  return ok_status();
}

Status PinnedHostPool::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  return state_->release_free_chunks(device_);
}

PinnedHostPoolStats PinnedHostPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_->stats;
}

}  // namespace ebb
