// CudaVirtualMemory: the virtual-memory half of the cuda backend, for expandable segments:
// reserved address ranges (cuMemAddressReserve) and the physical page behind each mapped page.
//
// Each mapped page has its own allocation handle (cuMemCreate of one granule), so any
// page-aligned sub-range of what was mapped can later be unmapped and its memory released, as
// PyTorch's expandable segments do. Arguments are checked as a careful allocator would:
// kInvalidArgument for a size or address that is not page-aligned or not inside one reservation,
// kFailedPrecondition for mapping a mapped page, unmapping an unmapped one, or releasing a range
// with pages still mapped. Capacity is not known here: CudaDevice accounts the
// mapped bytes.
//
// Internal to kernels/cuda/. Ownership: owns its reservations and page handles, and releases
// whatever is left on destruction. Thread safety: thread-safe; one mutex guards the tables and
// is held across the driver calls of a map or unmap, so no two threads touch one page at once.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_driver.h"
#include "kernels/status.h"

namespace ebb {

class CudaVirtualMemory {
 public:
  // What is still held, for the device's report at destruction.
  struct Holdings {
    std::size_t ranges = 0;        // reservations not released
    std::size_t mapped_pages = 0;  // pages still mapped
  };

  // Queries the granularity of pinned device memory on GPU `ordinal`. When the device does not
  // support virtual memory management, page_bytes() is 2 MiB and reserve() is kUnavailable.
  static Result<std::unique_ptr<CudaVirtualMemory>> create(int ordinal, const DriverApi& driver);
  ~CudaVirtualMemory();
  CudaVirtualMemory(const CudaVirtualMemory&) = delete;
  CudaVirtualMemory& operator=(const CudaVirtualMemory&) = delete;

  std::size_t page_bytes() const { return page_bytes_; }
  bool supported() const { return supported_; }

  Result<void*> reserve(std::size_t bytes);
  // REQUIRES (checked): base and bytes are exactly one reservation, with no page mapped.
  Status release(void* base, std::size_t bytes);
  // Checks that [addr, addr+bytes) may be mapped, without mapping it: the argument errors of
  // map(), so that a caller can check them before it accounts capacity.
  Status check_map(void* addr, std::size_t bytes) const;
  Status map(void* addr, std::size_t bytes);
  // REQUIRES: no queued device work still uses the pages (the caller synchronizes).
  // *unmapped_bytes: what was unmapped, all of `bytes` unless a driver call failed midway.
  Status unmap(void* addr, std::size_t bytes, std::size_t* unmapped_bytes);

  Holdings holdings() const;

 private:
  // One reservation; pages[i] describes the page at base + i * page_bytes.
  struct Page {
    CUmemGenericAllocationHandle handle = 0;
    bool mapped = false;
  };
  struct Range {
    std::size_t bytes = 0;
    std::size_t mapped_pages = 0;
    std::vector<Page> pages;
  };

  CudaVirtualMemory(int ordinal, const DriverApi& driver, bool supported, std::size_t page_bytes,
                    CUmemAllocationProp prop);

  // The base of the reservation holding all of [addr, addr+bytes), after checking alignment;
  // kInvalidArgument naming `call` otherwise. REQUIRES: mu_ held.
  Result<std::uintptr_t> find_range(const char* call, void* addr, std::size_t bytes) const;
  // check_map(). REQUIRES: mu_ held.
  Status check_map_locked(void* addr, std::size_t bytes) const;
  // Unmaps and releases one mapped page. REQUIRES: mu_ held.
  Status unmap_page(std::uintptr_t address, Range& range, std::size_t index);

  const int ordinal_;
  const DriverApi& driver_;
  const bool supported_;
  const std::size_t page_bytes_;
  const CUmemAllocationProp prop_;  // pinned memory on this GPU
  const CUmemAccessDesc access_;    // read/write for this GPU

  mutable std::mutex mu_;
  std::map<std::uintptr_t, Range> ranges_;  // by base address
};

}  // namespace ebb
