// CachingAllocator::Heap: the allocator's state and algorithms, behind the public class.
//
// The public CachingAllocator validates arguments, takes the lock, and runs the miss path
// (eviction callback) outside it; Heap does the rest: pools, segments, blocks, page mapping,
// stream progress and statistics.
//
// Thread safety: not thread-safe; every call is made with CachingAllocator's lock held.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "allocator/block.h"
#include "allocator/caching_allocator.h"
#include "allocator/free_block_index.h"
#include "allocator/pointer_map.h"

namespace ebb {

class CachingAllocator::Heap {
 public:
  Heap(Device& device, const CachingAllocatorOptions& options, std::size_t budget_bytes);
  ~Heap();

  // How hard a miss may try before giving up.
  enum class Effort {
    kCache,    // cached blocks, settled frees of other streams, new memory within the budget
    kRelease,  // also release cached memory that no live block needs
    kWait,     // also block until other streams' pending frees complete
  };

  // A live block, or nullptr when the effort was not enough (no error: the caller escalates).
  Result<Block*> allocate(std::size_t bytes, Stream& stream, Effort effort);
  Status free(void* ptr, Stream* last_use);
  Status empty_cache();

  // A block handed out: its category counted, and the allocation traced.
  void record_alloc(Block& block, const Stream& stream, std::string_view tag,
                    std::uint8_t category);
  void set_trace_sink(AllocTraceSink* sink);

  // The report of a failed request: what it asked, what is live, cached, free, the budget.
  std::string out_of_memory_report(std::size_t bytes, const Stream& stream,
                                   std::string_view tag) const;
  Result<std::size_t> block_bytes(const void* ptr) const;
  std::vector<BlockSnapshot> snapshot() const;
  std::size_t reserved_bytes() const {
    return static_cast<std::size_t>(stats_.all.reserved_bytes.current);
  }

  // The figures the public class reports; it updates the retry, eviction and OOM counts.
  AllocatorStats& stats() { return stats_; }

 private:
  struct Pool {
    PoolKind kind;
    FreeBlockIndex index;
  };

  Pool& pool_for(std::size_t rounded_bytes) {
    return pools_[rounded_bytes <= kSmallRequestLimitBytes ? 0 : 1];
  }
  StreamProgress* progress_of(Stream& stream);

  Block* new_block();
  void recycle_block(Block* block);

  // Takes `block` (free, indexed) for a request of `rounded` bytes: splits off the rest.
  Result<Block*> take(Pool& pool, Block* block, std::size_t rounded, std::size_t requested,
                      StreamProgress* stream);
  // Inserts a free block into its pool, merging with free neighbours where streams allow.
  void release_block(Block* block);
  bool mergeable(const Block* a, const Block* b) const;
  Block* merge(Block* low, Block* high);

  // Segments.
  Result<Segment*> grow_classic(Pool& pool, std::size_t rounded, Effort effort);
  Result<Segment*> grow_expandable(Pool& pool, std::size_t rounded);
  Status release_classic_cache();
  // Returns every segment no block uses (a single free, settled block) to the device; with
  // classic_only, expandable ranges stay reserved.
  Status release_idle_segments(bool classic_only);
  Status free_segment(Segment* segment);

  // Expandable pages. ensure_mapped returns false (nothing changed) when the budget forbids.
  // Pins the pages of [address, address+bytes) and maps the missing ones, unmapping cached
  // pages elsewhere first. False (nothing changed) when the budget forbids.
  Result<bool> ensure_mapped(Segment* seg, std::uintptr_t address, std::size_t bytes);
  void unpin_pages(Segment* seg, std::uintptr_t address, std::size_t bytes);
  // Unmaps up to pages_wanted mapped pages that lie inside settled free blocks.
  Result<std::size_t> unmap_cached_pages(std::size_t pages_wanted);
  std::pair<std::size_t, std::size_t> page_span(const Segment& s, const Block& b) const;

  // Streams.
  Status observe_streams(bool record_new);
  Status wait_streams();
  void settle_and_coalesce();

  // Statistics.
  void add_reserved(PoolKind pool, std::int64_t bytes, std::int64_t segments);
  void inactive_before(const Segment& s);
  void inactive_after(const Segment& s);
  std::int64_t inactive_split_of(const Segment& s) const;

  Device& device_;
  const CachingAllocatorOptions options_;
  const std::size_t budget_bytes_;
  const std::size_t page_bytes_;
  Pool pools_[kPoolCount] = {{PoolKind::kSmall, {}}, {PoolKind::kLarge, {}}};
  std::vector<std::unique_ptr<Segment>> segments_;
  PointerMap live_;
  std::deque<Block> block_storage_;
  std::vector<Block*> spare_blocks_;
  std::deque<StreamProgress> streams_;
  StreamProgress* last_stream_ = nullptr;
  struct PendingEvent {
    StreamProgress* stream;
    std::uint64_t seq;
    std::unique_ptr<Event> event;
  };
  std::vector<PendingEvent> pending_events_;
  std::vector<std::unique_ptr<Event>> spare_events_;
  std::int64_t cached_mapped_pages_ = 0;  // mapped pages no live block touches
  std::uint64_t next_alloc_id_ = 1;
  AllocatorStats stats_;
  AllocTraceSink* trace_ = nullptr;
  std::chrono::steady_clock::time_point trace_start_;
};

}  // namespace ebb
