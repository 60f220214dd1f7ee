#include "allocator/caching_allocator.h"

#include <mutex>

#include "allocator/heap.h"

namespace ebb {

Result<std::unique_ptr<CachingAllocator>> CachingAllocator::create(
    Device& device, CachingAllocatorOptions options) {
  const std::size_t capacity = device.capacity_bytes();
  const std::size_t budget = options.budget_bytes == 0 ? capacity : options.budget_bytes;
  if (budget > capacity) {
    return invalid_argument("allocator budget of " + std::to_string(budget) +
                            " bytes exceeds the capacity of " + device.name() + ", " +
                            std::to_string(capacity) + " bytes");
  }
  // Expandable segments need virtual memory management; a GPU or driver without it answers
  // kUnavailable, and classic segments serve instead (options() says which is in use).
  if (options.expandable_segments) {
    Result<void*> probe = device.reserve_range(device.page_bytes());
    if (probe.ok()) {
      EBB_RETURN_IF_ERROR(device.release_range(*probe, device.page_bytes()));
    } else if (probe.status().code() == StatusCode::kUnavailable) {
      options.expandable_segments = false;
    } else {
      return probe.status();
    }
  }
  // The smallest allocation: one block, or with expandable segments one mapped page.
  const std::size_t smallest = options.expandable_segments ? device.page_bytes() : kMinBlockBytes;
  if (budget < smallest) {
    return invalid_argument(
        "allocator budget of " + std::to_string(budget) +
        " bytes is below the smallest allocation it can make, " + std::to_string(smallest) +
        " bytes" + (options.expandable_segments ? " (one page of expandable segments)" : ""));
  }
  return std::unique_ptr<CachingAllocator>(new CachingAllocator(device, options, budget));
}

CachingAllocator::CachingAllocator(Device& device, CachingAllocatorOptions options,
                                   std::size_t budget_bytes)
    : device_(device),
      options_(options),
      budget_bytes_(budget_bytes),
      heap_(std::make_unique<Heap>(device, options, budget_bytes)) {}

CachingAllocator::~CachingAllocator() = default;

Result<void*> CachingAllocator::allocate(std::size_t bytes, Stream& stream, std::string_view tag,
                                         std::uint8_t category) {
  if (category >= kAllocationCategories) {
    return invalid_argument("allocation category " + std::to_string(category) + " is not below " +
                            std::to_string(kAllocationCategories));
  }
  if (bytes == 0) {
    return invalid_argument("zero-byte allocation request on stream " +
                            std::to_string(stream.id()) +
                            (tag.empty() ? std::string() : " for '" + std::string(tag) + "'"));
  }
  if (bytes > budget_bytes_ || round_block_bytes(bytes) > budget_bytes_) {
    return invalid_argument("allocation request of " + std::to_string(bytes) + " bytes" +
                            (tag.empty() ? std::string() : " for '" + std::string(tag) + "'") +
                            " is larger than the whole budget of " + std::to_string(budget_bytes_) +
                            " bytes");
  }
  std::unique_lock<SpinLock> lock(mu_);
  using Effort = Heap::Effort;
  for (Effort effort : {Effort::kCache, Effort::kRelease, Effort::kWait}) {
    EBB_ASSIGN_OR_RETURN(Block * block, heap_->allocate(bytes, stream, effort));
    if (block != nullptr) {
      if (effort != Effort::kCache) heap_->stats().num_alloc_retries += 1;
      heap_->record_alloc(*block, stream, tag, category);
      return reinterpret_cast<void*>(block->address);
    }
  }
  // The engine frees or swaps tensors; it calls free(), so the lock is not held meanwhile.
  while (eviction_) {
    EvictionCallback evict = eviction_;
    heap_->stats().num_evictions += 1;
    const std::int64_t freed_before = heap_->stats().all.allocated_bytes.freed;
    lock.unlock();
    const std::size_t released = evict(round_block_bytes(bytes), stream);
    lock.lock();
    // A callback that claims progress but freed nothing would otherwise be called forever.
    if (released == 0 || heap_->stats().all.allocated_bytes.freed == freed_before) break;
    EBB_ASSIGN_OR_RETURN(Block * block, heap_->allocate(bytes, stream, Effort::kWait));
    if (block != nullptr) {
      heap_->stats().num_alloc_retries += 1;
      heap_->record_alloc(*block, stream, tag, category);
      return reinterpret_cast<void*>(block->address);
    }
  }
  heap_->stats().num_ooms += 1;
  return out_of_memory(heap_->out_of_memory_report(bytes, stream, tag));
}

Status CachingAllocator::free(void* ptr) {
  std::lock_guard<SpinLock> lock(mu_);
  return heap_->free(ptr, nullptr);
}

Status CachingAllocator::free(void* ptr, Stream& last_use) {
  std::lock_guard<SpinLock> lock(mu_);
  return heap_->free(ptr, &last_use);
}

Status CachingAllocator::empty_cache() {
  std::lock_guard<SpinLock> lock(mu_);
  return heap_->empty_cache();
}

AllocatorStats CachingAllocator::stats() const {
  AllocatorStats s;
  {
    std::lock_guard<SpinLock> lock(mu_);
    s = heap_->stats();
  }
  // Frees are stream-ordered, so active equals allocated (see allocator_stats.h); it is filled in
  // here rather than kept twice on the fast path.
  for (PoolStats* p : {&s.all, &s.pool[0], &s.pool[1]}) p->active_bytes = p->allocated_bytes;
  return s;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<SpinLock> lock(mu_);
  AllocatorStats& s = heap_->stats();
  for (PoolStats* p : {&s.all, &s.pool[0], &s.pool[1]}) {
    for (StatCounter* c :
         {&p->allocated_bytes, &p->requested_bytes, &p->reserved_bytes, &p->active_bytes,
          &p->inactive_split_bytes, &p->allocation, &p->segment}) {
      c->peak = c->current;
    }
  }
  for (StatCounter& c : s.category_bytes) c.peak = c.current;
}

Result<std::size_t> CachingAllocator::block_bytes(const void* ptr) const {
  std::lock_guard<SpinLock> lock(mu_);
  return heap_->block_bytes(ptr);
}

void CachingAllocator::set_eviction_callback(EvictionCallback callback) {
  std::lock_guard<SpinLock> lock(mu_);
  eviction_ = std::move(callback);
}

void CachingAllocator::set_trace_sink(AllocTraceSink* sink) {
  std::lock_guard<SpinLock> lock(mu_);
  heap_->set_trace_sink(sink);
}

std::vector<BlockSnapshot> CachingAllocator::snapshot() const {
  std::lock_guard<SpinLock> lock(mu_);
  return heap_->snapshot();
}

}  // namespace ebb
