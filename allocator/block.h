// Block and Segment: the caching allocator's view of device memory.
//
// A Segment is one span of device address space the allocator took from the Device: a whole
// allocation (classic) or a reserved virtual range whose pages are mapped on demand
// (expandable). Blocks tile a segment in address order, each live (handed to a caller) or
// free. A free block remembers the stream of its last use and that stream's free sequence
// number, so it is reused on another stream only once an event shows the stream is past it.
//
// Thread safety: not thread-safe; the CachingAllocator's lock guards every Block and Segment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "allocator/allocator_stats.h"

namespace ebb {

class Stream;

// The allocator's record of one stream it has served: how far its frees are known complete.
struct StreamProgress {
  Stream* stream = nullptr;
  std::uint32_t id = 0;
  std::uint64_t epoch = 1;          // free sequence number given to the next free on the stream
  std::uint64_t completed = 0;      // every free with sequence <= completed is past, device-side
  std::uint64_t recorded = 0;       // highest sequence an event has been recorded for
  std::uint64_t last_free_seq = 0;  // sequence of the latest free on the stream
};

struct Segment;

struct Block {
  std::uintptr_t address = 0;
  std::size_t bytes = 0;            // rounded size
  std::size_t requested_bytes = 0;  // what the caller asked for; 0 when free
  Segment* segment = nullptr;
  Block* prev = nullptr;  // address-order neighbours within the segment
  Block* next = nullptr;
  Block* bin_prev = nullptr;  // links in the free index (free blocks only)
  Block* bin_next = nullptr;
  // Live: the allocating stream. Free: the stream of the last use; nullptr once the free is
  // known complete (or the block never served anyone), i.e. reusable on any stream.
  StreamProgress* stream = nullptr;
  std::uint64_t free_seq = 0;  // the stream's sequence number at the free
  std::uint64_t alloc_id = 0;  // sequence number of the allocation (traces)
  std::uint16_t bin = 0;
  std::uint8_t category = 0;  // the caller's category while allocated (AllocatorStats)
  bool allocated = false;
  bool indexed = false;  // in the free index

  // True when a free block may be handed to any stream without waiting.
  bool settled() const { return stream == nullptr || stream->completed >= free_seq; }
  std::uintptr_t end() const { return address + bytes; }
};

struct Segment {
  std::uintptr_t base = 0;
  std::size_t bytes = 0;
  PoolKind pool = PoolKind::kSmall;
  bool expandable = false;
  Block* first = nullptr;
  Block* last = nullptr;
  std::size_t allocated_bytes = 0;   // rounded bytes of live blocks
  std::int64_t allocated_count = 0;  // live blocks
  std::size_t mapped_bytes = 0;      // memory behind the segment (classic: all of it)
  // Expandable only, one entry per page: live blocks touching the page, and whether it is mapped.
  std::vector<std::uint32_t> page_live;
  std::vector<std::uint8_t> page_mapped;
};

}  // namespace ebb
