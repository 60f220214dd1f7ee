// CachingAllocator::Heap, second half: taking memory from the device and giving it back
// (classic segments, expandable ranges and their pages), statistics and reports.
#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "allocator/heap.h"
#include "kernels/arith.h"

namespace ebb {
namespace {

constexpr std::size_t kRangeBudgetMultiple = 2;  // address space per range, in budgets
constexpr std::size_t kMaxRangesPerPool = 16;

std::string mib(std::size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%zu bytes (%.2f MiB)", bytes, static_cast<double>(bytes) / kMiB);
  return buf;
}

}  // namespace

void CachingAllocator::Heap::add_reserved(PoolKind pool, std::int64_t bytes,
                                          std::int64_t segments) {
  for (PoolStats* s : {&stats_.all, &stats_.pool[static_cast<int>(pool)]}) {
    if (bytes >= 0) {
      s->reserved_bytes.increase(bytes);
      s->segment.increase(segments);
    } else {
      s->reserved_bytes.decrease(-bytes);
      s->segment.decrease(-segments);
    }
  }
}

std::int64_t CachingAllocator::Heap::inactive_split_of(const Segment& s) const {
  if (s.allocated_count == 0) return 0;
  return static_cast<std::int64_t>(s.mapped_bytes) - static_cast<std::int64_t>(s.allocated_bytes);
}

void CachingAllocator::Heap::inactive_before(const Segment& s) {
  const std::int64_t v = inactive_split_of(s);
  if (v == 0) return;
  stats_.all.inactive_split_bytes.decrease(v);
  stats_.pool[static_cast<int>(s.pool)].inactive_split_bytes.decrease(v);
}

void CachingAllocator::Heap::inactive_after(const Segment& s) {
  const std::int64_t v = inactive_split_of(s);
  if (v == 0) return;
  stats_.all.inactive_split_bytes.increase(v);
  stats_.pool[static_cast<int>(s.pool)].inactive_split_bytes.increase(v);
}

Result<Segment*> CachingAllocator::Heap::grow_classic(Pool& pool, std::size_t rounded,
                                                      Effort effort) {
  // PyTorch's sizes: small requests share 2 MiB segments, requests under 10 MiB share 20 MiB
  // ones, larger ones get their own; where the budget forbids the shared size, an exact one.
  std::size_t preferred = pool.kind == PoolKind::kSmall      ? kSmallSegmentBytes
                          : rounded < kLargeSharedLimitBytes ? kLargeSharedSegmentBytes
                                                             : round_up(rounded, kLargeRoundBytes);
  bool released = false;
  for (;;) {
    const std::size_t reserved = reserved_bytes();
    std::size_t bytes = 0;
    for (std::size_t candidate : {preferred, round_up(rounded, kLargeRoundBytes), rounded}) {
      if (candidate >= rounded && reserved + candidate <= budget_bytes_) {
        bytes = candidate;
        break;
      }
    }
    if (bytes != 0) {
      Result<void*> memory = device_.allocate(bytes);
      if (memory.ok()) {
        auto seg = std::make_unique<Segment>();
        seg->base = reinterpret_cast<std::uintptr_t>(*memory);
        seg->bytes = bytes;
        seg->mapped_bytes = bytes;
        seg->pool = pool.kind;
        Block* b = new_block();
        b->address = seg->base;
        b->bytes = bytes;
        b->segment = seg.get();
        seg->first = seg->last = b;
        pool.index.insert(b);
        add_reserved(pool.kind, static_cast<std::int64_t>(bytes), 1);
        stats_.num_device_alloc += 1;
        segments_.push_back(std::move(seg));
        return segments_.back().get();
      }
      if (memory.status().code() != StatusCode::kOutOfMemory) return memory.status();
    }
    if (released || effort < Effort::kRelease) return static_cast<Segment*>(nullptr);
    EBB_RETURN_IF_ERROR(release_classic_cache());
    released = true;
  }
}

Status CachingAllocator::Heap::release_classic_cache() {
  EBB_RETURN_IF_ERROR(observe_streams(/*record_new=*/true));
  return release_idle_segments(/*classic_only=*/true);
}

Status CachingAllocator::Heap::release_idle_segments(bool classic_only) {
  for (std::size_t i = 0; i < segments_.size();) {
    Segment* seg = segments_[i].get();
    // A whole free segment goes back; an expandable range only once none of it is mapped.
    const bool idle = seg->allocated_count == 0 && seg->first == seg->last && seg->first->settled();
    const bool releasable = seg->expandable ? !classic_only && seg->mapped_bytes == 0 : true;
    if (idle && releasable) {
      EBB_RETURN_IF_ERROR(free_segment(seg));
      segments_.erase(segments_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    ++i;
  }
  return ok_status();
}

// REQUIRES: the segment holds one free, settled block (and, if expandable, no mapped page).
Status CachingAllocator::Heap::free_segment(Segment* seg) {
  Block* b = seg->first;
  pools_[static_cast<int>(seg->pool)].index.remove(b);
  if (seg->expandable) {
    EBB_RETURN_IF_ERROR(device_.release_range(reinterpret_cast<void*>(seg->base), seg->bytes));
  } else {
    EBB_RETURN_IF_ERROR(device_.free(reinterpret_cast<void*>(seg->base)));
    add_reserved(seg->pool, -static_cast<std::int64_t>(seg->bytes), -1);
    stats_.num_device_free += 1;
  }
  recycle_block(b);
  return ok_status();
}

Result<Segment*> CachingAllocator::Heap::grow_expandable(Pool& pool, std::size_t rounded) {
  std::size_t ranges = 0;
  for (const auto& s : segments_) ranges += s->pool == pool.kind ? 1 : 0;
  if (ranges >= kMaxRangesPerPool) return static_cast<Segment*>(nullptr);
  const std::size_t bytes =
      round_up(std::max(kRangeBudgetMultiple * budget_bytes_, rounded), page_bytes_);
  EBB_ASSIGN_OR_RETURN(void* base, device_.reserve_range(bytes));
  auto seg = std::make_unique<Segment>();
  seg->base = reinterpret_cast<std::uintptr_t>(base);
  seg->bytes = bytes;
  seg->pool = pool.kind;
  seg->expandable = true;
  seg->page_live.assign(bytes / page_bytes_, 0);
  seg->page_mapped.assign(bytes / page_bytes_, 0);
  Block* b = new_block();
  b->address = seg->base;
  b->bytes = bytes;
  b->segment = seg.get();
  seg->first = seg->last = b;
  pool.index.insert(b);
  segments_.push_back(std::move(seg));
  return segments_.back().get();
}

Result<bool> CachingAllocator::Heap::ensure_mapped(Segment* seg, std::uintptr_t address,
                                                   std::size_t bytes) {
  const std::size_t first = (address - seg->base) / page_bytes_;
  const std::size_t last = (address + bytes - seg->base + page_bytes_ - 1) / page_bytes_;
  std::size_t missing = 0;
  for (std::size_t p = first; p < last; ++p) {
    // Pin first, so that finding room below never unmaps a page this block needs.
    if (seg->page_live[p]++ == 0 && seg->page_mapped[p]) cached_mapped_pages_ -= 1;
    missing += seg->page_mapped[p] ? 0 : 1;
  }
  if (missing == 0) return true;
  // Physical pages are the budget: reuse cached ones (unmap there, map here) before growing.
  if (cached_mapped_pages_ > 0) {
    // Only pages of frees the device is known to be past can move; learn which those are.
    Status observed = observe_streams(/*record_new=*/true);
    if (!observed.ok()) {
      unpin_pages(seg, address, bytes);
      return observed;
    }
    Result<std::size_t> unmapped = unmap_cached_pages(missing);
    if (!unmapped.ok()) {
      unpin_pages(seg, address, bytes);
      return unmapped.status();
    }
  }
  if (reserved_bytes() + missing * page_bytes_ > budget_bytes_) {
    unpin_pages(seg, address, bytes);
    return false;
  }
  for (std::size_t p = first; p < last;) {
    if (seg->page_mapped[p]) {
      ++p;
      continue;
    }
    std::size_t run = 1;
    while (p + run < last && !seg->page_mapped[p + run]) ++run;
    Status s =
        device_.map_pages(reinterpret_cast<void*>(seg->base + p * page_bytes_), run * page_bytes_);
    if (!s.ok()) {
      unpin_pages(seg, address, bytes);
      if (s.code() == StatusCode::kOutOfMemory) return false;  // the device is shared
      return s;
    }
    std::fill_n(seg->page_mapped.begin() + static_cast<std::ptrdiff_t>(p), run, 1);
    inactive_before(*seg);
    seg->mapped_bytes += run * page_bytes_;
    inactive_after(*seg);
    add_reserved(seg->pool, static_cast<std::int64_t>(run * page_bytes_),
                 static_cast<std::int64_t>(run));
    stats_.num_device_alloc += 1;
    p += run;
  }
  return true;
}

void CachingAllocator::Heap::unpin_pages(Segment* seg, std::uintptr_t address, std::size_t bytes) {
  const std::size_t first = (address - seg->base) / page_bytes_;
  const std::size_t last = (address + bytes - seg->base + page_bytes_ - 1) / page_bytes_;
  for (std::size_t p = first; p < last; ++p) {
    if (--seg->page_live[p] == 0 && seg->page_mapped[p]) cached_mapped_pages_ += 1;
  }
}

Result<std::size_t> CachingAllocator::Heap::unmap_cached_pages(std::size_t pages_wanted) {
  std::size_t unmapped = 0;
  for (auto& seg_ptr : segments_) {
    Segment* seg = seg_ptr.get();
    if (!seg->expandable) continue;
    // From the top down, so that the mapped part of a range stays dense at its bottom.
    for (Block* b = seg->last; b != nullptr && unmapped < pages_wanted; b = b->prev) {
      if (b->allocated || !b->settled()) continue;
      const std::size_t first = (b->address - seg->base + page_bytes_ - 1) / page_bytes_;
      const std::size_t last = (b->end() - seg->base) / page_bytes_;
      for (std::size_t p = last; p > first && unmapped < pages_wanted; --p) {
        const std::size_t page = p - 1;
        if (!seg->page_mapped[page] || seg->page_live[page] != 0) continue;
        EBB_RETURN_IF_ERROR(device_.unmap_pages(
            reinterpret_cast<void*>(seg->base + page * page_bytes_), page_bytes_));
        seg->page_mapped[page] = 0;
        inactive_before(*seg);
        seg->mapped_bytes -= page_bytes_;
        inactive_after(*seg);
        add_reserved(seg->pool, -static_cast<std::int64_t>(page_bytes_), -1);
        stats_.num_device_free += 1;
        cached_mapped_pages_ -= 1;
        ++unmapped;
      }
    }
    if (unmapped == pages_wanted) break;
  }
  return unmapped;
}

Status CachingAllocator::Heap::empty_cache() {
  EBB_RETURN_IF_ERROR(wait_streams());
  settle_and_coalesce();
  if (cached_mapped_pages_ > 0) {
    EBB_RETURN_IF_ERROR(
        unmap_cached_pages(static_cast<std::size_t>(cached_mapped_pages_)).status());
  }
  return release_idle_segments(/*classic_only=*/false);
}

void CachingAllocator::Heap::set_trace_sink(AllocTraceSink* sink) {
  trace_ = sink;
  trace_start_ = std::chrono::steady_clock::now();
}

void CachingAllocator::Heap::record_alloc(Block& block, const Stream& stream, std::string_view tag,
                                          std::uint8_t category) {
  block.category = category;
  stats_.category_bytes[category].increase(static_cast<std::int64_t>(block.bytes));
  if (trace_ == nullptr) return;
  AllocEvent e;
  e.op = AllocEvent::Op::kAlloc;
  e.id = block.alloc_id;
  e.bytes = block.requested_bytes;
  e.stream = block.stream->id;
  e.t_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                trace_start_)
               .count();
  e.tag = std::string(tag);
  trace_->record(e);
}

std::string CachingAllocator::Heap::out_of_memory_report(std::size_t bytes, const Stream& stream,
                                                         std::string_view tag) const {
  std::size_t largest_free = 0;
  std::size_t free_blocks = 0;
  for (const auto& seg : segments_) {
    for (const Block* b = seg->first; b != nullptr; b = b->next) {
      if (b->allocated) continue;
      ++free_blocks;
      // In an expandable range, only the mapped part of a free block is memory.
      std::size_t usable = b->bytes;
      if (seg->expandable) {
        usable = 0;
        const std::size_t first = (b->address - seg->base) / page_bytes_;
        const std::size_t last = (b->end() - seg->base + page_bytes_ - 1) / page_bytes_;
        for (std::size_t p = first; p < last; ++p) usable += seg->page_mapped[p] ? page_bytes_ : 0;
        usable = std::min(usable, b->bytes);
      }
      largest_free = std::max(largest_free, usable);
    }
  }
  const auto live = static_cast<std::size_t>(stats_.all.allocated_bytes.current);
  const std::size_t reserved = reserved_bytes();
  std::string report = "out of memory: request of " + mib(bytes);
  if (!tag.empty()) report += " for '" + std::string(tag) + "'";
  report += " on stream " + std::to_string(stream.id()) + " cannot be met within the budget of " +
            mib(budget_bytes_) + ". Live: " + mib(live) + " in " +
            std::to_string(stats_.all.allocation.current) +
            " blocks; cached (reserved, not live): " + mib(reserved - std::min(reserved, live)) +
            "; reserved: " + mib(reserved) + "; largest free block: " + mib(largest_free) + " of " +
            std::to_string(free_blocks) + " free blocks; " +
            (options_.expandable_segments ? "expandable segments" : "classic segments") + ".";
  return report;
}

Result<std::size_t> CachingAllocator::Heap::block_bytes(const void* ptr) const {
  const Block* b = live_.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (b == nullptr) return invalid_argument("pointer is not a live allocation of this allocator");
  return b->bytes;
}

std::vector<BlockSnapshot> CachingAllocator::Heap::snapshot() const {
  std::vector<BlockSnapshot> out;
  for (const auto& seg : segments_) {
    for (const Block* b = seg->first; b != nullptr; b = b->next) {
      BlockSnapshot s;
      s.address = b->address;
      s.bytes = b->bytes;
      s.requested_bytes = b->requested_bytes;
      s.allocated = b->allocated;
      s.pool = seg->pool;
      s.stream = b->stream != nullptr ? b->stream->id : 0;
      out.push_back(s);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const BlockSnapshot& a, const BlockSnapshot& b) { return a.address < b.address; });
  return out;
}

}  // namespace ebb
