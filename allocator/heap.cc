#include "allocator/heap.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace ebb {
namespace {

std::string hex(std::uintptr_t address) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, address);
  return buf;
}

}  // namespace

CachingAllocator::Heap::Heap(Device& device, const CachingAllocatorOptions& options,
                             std::size_t budget_bytes)
    : device_(device),
      options_(options),
      budget_bytes_(budget_bytes),
      page_bytes_(options.expandable_segments ? device.page_bytes() : kLargeRoundBytes) {
  stats_.budget_bytes = budget_bytes;
}

CachingAllocator::Heap::~Heap() {
  // Device work may still use freed blocks: let it finish before the memory goes back.
  for (PendingEvent& p : pending_events_) {
    Status s = p.event->synchronize();
    if (!s.ok()) std::fprintf(stderr, "ebb: allocator shutdown: %s\n", s.to_string().c_str());
  }
  for (auto& seg : segments_) {
    Status s;
    if (seg->expandable) {
      for (std::size_t p = 0; p < seg->page_mapped.size() && s.ok(); ++p) {
        if (seg->page_mapped[p]) {
          s = device_.unmap_pages(reinterpret_cast<void*>(seg->base + p * page_bytes_),
                                  page_bytes_);
        }
      }
      if (s.ok()) s = device_.release_range(reinterpret_cast<void*>(seg->base), seg->bytes);
    } else {
      s = device_.free(reinterpret_cast<void*>(seg->base));
    }
    // A destructor cannot return the error; it is reported rather than lost.
    if (!s.ok()) std::fprintf(stderr, "ebb: allocator shutdown: %s\n", s.to_string().c_str());
  }
}

StreamProgress* CachingAllocator::Heap::progress_of(Stream& stream) {
  if (last_stream_ != nullptr && last_stream_->stream == &stream) return last_stream_;
  for (StreamProgress& p : streams_) {
    if (p.stream == &stream) return last_stream_ = &p;
  }
  streams_.push_back(StreamProgress{&stream, stream.id()});
  return last_stream_ = &streams_.back();
}

Block* CachingAllocator::Heap::new_block() {
  if (!spare_blocks_.empty()) {
    Block* b = spare_blocks_.back();
    spare_blocks_.pop_back();
    *b = Block{};
    return b;
  }
  return &block_storage_.emplace_back();
}

void CachingAllocator::Heap::recycle_block(Block* block) { spare_blocks_.push_back(block); }

std::pair<std::size_t, std::size_t> CachingAllocator::Heap::page_span(const Segment& s,
                                                                      const Block& b) const {
  const std::size_t first = (b.address - s.base) / page_bytes_;
  const std::size_t last = (b.end() - s.base + page_bytes_ - 1) / page_bytes_;
  return {first, last};
}

Result<Block*> CachingAllocator::Heap::allocate(std::size_t bytes, Stream& stream, Effort effort) {
  const std::size_t rounded = round_block_bytes(bytes);
  Pool& pool = pool_for(rounded);
  StreamProgress* sp = progress_of(stream);
  auto accept = [sp](const Block* b) { return b->stream == sp || b->settled(); };

  if (Block* b = pool.index.best_fit(rounded, accept)) {
    EBB_ASSIGN_OR_RETURN(Block * got, take(pool, b, rounded, bytes, sp));
    if (got != nullptr) return got;
  }
  // Miss: learn which other streams are past their frees, merge what that frees up, retry.
  if (effort >= Effort::kWait) {
    EBB_RETURN_IF_ERROR(wait_streams());
  } else {
    EBB_RETURN_IF_ERROR(observe_streams(/*record_new=*/true));
  }
  settle_and_coalesce();
  if (Block* b = pool.index.best_fit(rounded, accept)) {
    EBB_ASSIGN_OR_RETURN(Block * got, take(pool, b, rounded, bytes, sp));
    if (got != nullptr) return got;
  }
  if (options_.expandable_segments) {
    // A fitting block may exist whose pages are all mapped where the best fit's were not.
    auto mapped_fit = [&](const Block* b) {
      if (!accept(b)) return false;
      Block probe = *b;
      probe.bytes = rounded;
      auto [first, last] = page_span(*b->segment, probe);
      for (std::size_t p = first; p < last; ++p) {
        if (!b->segment->page_mapped[p]) return false;
      }
      return true;
    };
    if (Block* b = pool.index.best_fit(rounded, mapped_fit)) {
      EBB_ASSIGN_OR_RETURN(Block * got, take(pool, b, rounded, bytes, sp));
      if (got != nullptr) return got;
    }
    // Address space itself ran out (fragmented, or none reserved yet): reserve another range.
    if (pool.index.best_fit(rounded, accept) == nullptr) {
      EBB_ASSIGN_OR_RETURN(Segment * seg, grow_expandable(pool, rounded));
      if (seg != nullptr) return take(pool, seg->first, rounded, bytes, sp);
    }
    return static_cast<Block*>(nullptr);
  }
  EBB_ASSIGN_OR_RETURN(Segment * seg, grow_classic(pool, rounded, effort));
  if (seg == nullptr) return static_cast<Block*>(nullptr);
  return take(pool, seg->first, rounded, bytes, sp);
}

Result<Block*> CachingAllocator::Heap::take(Pool& pool, Block* block, std::size_t rounded,
                                            std::size_t requested, StreamProgress* stream) {
  Segment* seg = block->segment;
  if (seg->expandable) {
    EBB_ASSIGN_OR_RETURN(bool mapped, ensure_mapped(seg, block->address, rounded));
    if (!mapped) return static_cast<Block*>(nullptr);
  }
  inactive_before(*seg);
  pool.index.remove(block);
  const std::size_t rest = block->bytes - rounded;
  const bool split = seg->expandable || pool.kind == PoolKind::kSmall
                         ? rest >= kMinBlockBytes
                         : rest > kSmallRequestLimitBytes;  // keep large remnants useful
  if (split) {
    Block* r = new_block();
    r->address = block->address + rounded;
    r->bytes = rest;
    r->segment = seg;
    r->prev = block;
    r->next = block->next;
    r->stream = block->stream;
    r->free_seq = block->free_seq;
    if (block->next != nullptr) {
      block->next->prev = r;
    } else {
      seg->last = r;
    }
    block->next = r;
    block->bytes = rounded;
    pool.index.insert(r);
  }
  block->allocated = true;
  block->requested_bytes = requested;
  block->stream = stream;
  block->free_seq = 0;
  block->alloc_id = next_alloc_id_++;
  seg->allocated_bytes += block->bytes;
  seg->allocated_count += 1;
  inactive_after(*seg);
  live_.insert(block->address, block);

  const auto pool_index = static_cast<int>(pool.kind);
  for (PoolStats* s : {&stats_.all, &stats_.pool[pool_index]}) {
    s->allocated_bytes.increase(static_cast<std::int64_t>(block->bytes));
    s->requested_bytes.increase(static_cast<std::int64_t>(requested));
    s->allocation.increase(1);
  }
  return block;
}

Status CachingAllocator::Heap::free(void* ptr, Stream* last_use) {
  const auto address = reinterpret_cast<std::uintptr_t>(ptr);
  Block* b = ptr == nullptr ? nullptr : live_.find(address);
  if (b == nullptr) {
    if (ptr == nullptr) return invalid_argument("free of a null pointer");
    for (const auto& seg : segments_) {
      if (address >= seg->base && address < seg->base + seg->bytes) {
        return invalid_argument("free of " + hex(address) +
                                ", which is not a live allocation: it lies at offset " +
                                std::to_string(address - seg->base) +
                                " of one of this allocator's segments (already freed, or not "
                                "the start of a block)");
      }
    }
    return invalid_argument("free of " + hex(address) +
                            ", a pointer this allocator never handed out");
  }
  live_.erase(address);
  Segment* seg = b->segment;
  StreamProgress* sp = last_use != nullptr ? progress_of(*last_use) : b->stream;
  const auto pool_index = static_cast<int>(seg->pool);
  for (PoolStats* s : {&stats_.all, &stats_.pool[pool_index]}) {
    s->allocated_bytes.decrease(static_cast<std::int64_t>(b->bytes));
    s->requested_bytes.decrease(static_cast<std::int64_t>(b->requested_bytes));
    s->allocation.decrease(1);
  }
  stats_.category_bytes[b->category].decrease(static_cast<std::int64_t>(b->bytes));
  if (trace_ != nullptr) {
    AllocEvent e;
    e.op = AllocEvent::Op::kFree;
    e.id = b->alloc_id;
    e.stream = sp->id;
    e.t_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                  trace_start_)
                 .count();
    trace_->record(e);
  }
  inactive_before(*seg);
  seg->allocated_bytes -= b->bytes;
  seg->allocated_count -= 1;
  if (seg->expandable) unpin_pages(seg, b->address, b->bytes);
  b->allocated = false;
  b->requested_bytes = 0;
  b->stream = sp;
  b->free_seq = sp->epoch;
  sp->last_free_seq = sp->epoch;
  release_block(b);
  inactive_after(*seg);
  return ok_status();
}

bool CachingAllocator::Heap::mergeable(const Block* a, const Block* b) const {
  return a->stream == b->stream || a->settled() || b->settled();
}

Block* CachingAllocator::Heap::merge(Block* low, Block* high) {
  if (low->stream == high->stream) {
    low->free_seq = std::max(low->free_seq, high->free_seq);
  } else if (low->settled()) {
    // The merged block is as restricted as its unsettled part.
    low->stream = high->stream;
    low->free_seq = high->free_seq;
  }
  if (low->settled()) {
    low->stream = nullptr;
    low->free_seq = 0;
  }
  low->bytes += high->bytes;
  low->next = high->next;
  if (high->next != nullptr) {
    high->next->prev = low;
  } else {
    low->segment->last = low;
  }
  recycle_block(high);
  return low;
}

void CachingAllocator::Heap::release_block(Block* block) {
  FreeBlockIndex& index = pools_[static_cast<int>(block->segment->pool)].index;
  if (Block* p = block->prev; p != nullptr && !p->allocated && mergeable(p, block)) {
    index.remove(p);
    block = merge(p, block);
  }
  if (Block* n = block->next; n != nullptr && !n->allocated && mergeable(block, n)) {
    index.remove(n);
    block = merge(block, n);
  }
  index.insert(block);
}

Status CachingAllocator::Heap::observe_streams(bool record_new) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < pending_events_.size(); ++i) {
    PendingEvent& p = pending_events_[i];
    EBB_ASSIGN_OR_RETURN(bool done, p.event->query());
    if (done) {
      p.stream->completed = std::max(p.stream->completed, p.seq);
      spare_events_.push_back(std::move(p.event));
    } else {
      pending_events_[kept++] = std::move(p);
    }
  }
  pending_events_.resize(kept);
  if (!record_new) return ok_status();
  for (StreamProgress& sp : streams_) {
    if (sp.last_free_seq <= sp.completed) continue;
    // An idle stream is past every free made on it so far; no event needed.
    EBB_ASSIGN_OR_RETURN(bool idle, sp.stream->query());
    if (idle) {
      sp.completed = sp.epoch;
      sp.epoch += 1;
      continue;
    }
    if (sp.last_free_seq <= sp.recorded) continue;
    std::unique_ptr<Event> event;
    if (!spare_events_.empty()) {
      event = std::move(spare_events_.back());
      spare_events_.pop_back();
    } else {
      EBB_ASSIGN_OR_RETURN(event, device_.create_event());
    }
    EBB_RETURN_IF_ERROR(sp.stream->record(*event));
    sp.recorded = sp.epoch;
    pending_events_.push_back(PendingEvent{&sp, sp.epoch, std::move(event)});
    sp.epoch += 1;
  }
  return ok_status();
}

Status CachingAllocator::Heap::wait_streams() {
  EBB_RETURN_IF_ERROR(observe_streams(/*record_new=*/true));
  if (!pending_events_.empty()) stats_.num_cross_stream_waits += 1;
  for (PendingEvent& p : pending_events_) {
    EBB_RETURN_IF_ERROR(p.event->synchronize());
    p.stream->completed = std::max(p.stream->completed, p.seq);
    spare_events_.push_back(std::move(p.event));
  }
  pending_events_.clear();
  return ok_status();
}

void CachingAllocator::Heap::settle_and_coalesce() {
  for (auto& seg : segments_) {
    FreeBlockIndex& index = pools_[static_cast<int>(seg->pool)].index;
    for (Block* b = seg->first; b != nullptr;) {
      if (b->allocated) {
        b = b->next;
        continue;
      }
      if (b->stream != nullptr && b->settled()) {
        b->stream = nullptr;
        b->free_seq = 0;
      }
      Block* n = b->next;
      if (n != nullptr && !n->allocated && mergeable(b, n)) {
        inactive_before(*seg);
        index.remove(b);
        index.remove(n);
        b = merge(b, n);
        index.insert(b);
        inactive_after(*seg);
        continue;  // b may merge with its new neighbour too
      }
      b = n;
    }
  }
}

}  // namespace ebb
