// CpuMemory: the memory of one cpu device: whole allocations, reserved virtual ranges with
// page-granular mappings (expandable segments), and pinned host memory.
//
// Device memory is host memory of a fixed capacity. Whole allocations and mapped pages count
// against the capacity; reserved address space and pinned host memory do not. Every region comes
// straight from mmap, so a use after free or an access to an unmapped page faults instead of
// silently reading stale bytes.
//
// The sim backend (kernels/sim) uses the same bookkeeping with MemoryBacking::kAddressSpaceOnly:
// device memory is then inaccessible address space (PROT_NONE, MAP_NORESERVE), so a capacity far
// past the machine's RAM works and any host access to device memory faults; pinned host memory
// is inaccessible address space too (the host tier of a simulated machine holds no values).
//
// Ownership: CpuMemory owns every region it hands out; its destructor unmaps what the caller did
// not return (the Device contract asks callers to return everything first).
//
// Thread safety: thread-safe; one mutex guards the bookkeeping. Syscalls run under it too: they
// are rare next to the copies and kernels that use the memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/status.h"

namespace ebb {

// The operating system's page size (4 KiB on x86-64 Linux).
std::size_t os_page_bytes();

// "0x7f12345000": how error messages name an address.
std::string address_string(const void* ptr);

// What stands behind device memory.
enum class MemoryBacking : std::uint8_t {
  kHostMemory,        // readable, writable host pages (cpu backend)
  kAddressSpaceOnly,  // no bytes: PROT_NONE address space (sim backend)
};

class CpuMemory {
 public:
  // OK when page_bytes is a power-of-two multiple of os_page_bytes().
  static Status check_page_bytes(std::size_t page_bytes);

  // REQUIRES: check_page_bytes(page_bytes).ok().
  CpuMemory(std::size_t capacity_bytes, std::size_t page_bytes,
            MemoryBacking backing = MemoryBacking::kHostMemory);
  ~CpuMemory();
  CpuMemory(const CpuMemory&) = delete;
  CpuMemory& operator=(const CpuMemory&) = delete;

  std::size_t capacity_bytes() const { return capacity_bytes_; }
  std::size_t page_bytes() const { return page_bytes_; }
  // Requested bytes of live allocations plus mapped pages.
  std::size_t committed_bytes() const;

  // Semantics as Device's methods of the same names.
  Result<void*> allocate(std::size_t bytes);
  Status free(void* ptr);
  Result<void*> reserve_range(std::size_t bytes);
  Status release_range(void* base, std::size_t bytes);
  Status map_pages(void* addr, std::size_t bytes);
  Status unmap_pages(void* addr, std::size_t bytes);
  Result<void*> allocate_pinned_host(std::size_t bytes);
  Status free_pinned_host(void* ptr);
  // mlock when device memory is backed (cpu), bookkeeping only otherwise (sim).
  Status register_host_memory(void* ptr, std::size_t bytes);
  Status unregister_host_memory(void* ptr);

  // OK when [ptr, ptr + bytes) lies inside one live allocation, or inside mapped pages of one
  // reserved range; kInvalidArgument naming the region otherwise. Copies and memsets check
  // their device side with it when they are enqueued.
  Status check_device_range(const void* ptr, std::size_t bytes) const;

 private:
  struct Allocation {
    std::size_t bytes;         // what the caller asked for; counts against capacity
    std::size_t mapped_bytes;  // bytes rounded up to OS pages; what munmap releases
  };
  // A reserved range of address space; pages of page_bytes_ are mapped one by one.
  struct Range {
    std::size_t bytes;         // reserved bytes, a multiple of page_bytes_
    std::vector<bool> mapped;  // one entry per page
    std::size_t mapped_pages;  // count of true entries in `mapped`
  };
  // Where [addr, addr + bytes) lies in a range: pages [first_page, first_page + page_count).
  struct PageSpan {
    Range* range;
    std::size_t first_page;
    std::size_t page_count;
  };

  // The span of pages [addr, addr + bytes) covers; kInvalidArgument unless it is page-aligned,
  // non-empty and inside one reserved range. `call` names the caller in messages.
  Result<PageSpan> find_pages(const char* call, void* addr, std::size_t bytes);

  // True when device memory has host pages behind it (MemoryBacking::kHostMemory).
  bool backed() const { return backing_ == MemoryBacking::kHostMemory; }

  const std::size_t capacity_bytes_;
  const std::size_t page_bytes_;
  const MemoryBacking backing_;

  mutable std::mutex mu_;
  std::size_t committed_bytes_ = 0;                   // GUARDED_BY(mu_)
  std::map<std::uintptr_t, Allocation> allocations_;  // GUARDED_BY(mu_); keyed by base
  std::map<std::uintptr_t, Range> ranges_;            // GUARDED_BY(mu_); keyed by base
  std::map<std::uintptr_t, std::size_t> pinned_;      // GUARDED_BY(mu_); base -> mapped bytes
  std::map<std::uintptr_t, std::size_t> registered_;  // GUARDED_BY(mu_); base -> bytes
};

}  // namespace ebb
