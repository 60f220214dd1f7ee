#include "kernels/cuda/cuda_virtual_memory.h"

#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_call.h"
#include "kernels/device.h"

namespace ebb {
namespace {

constexpr std::size_t kFallbackPageBytes = 2 * kMiB;  // page_bytes() without VMM support

std::string hex(std::uintptr_t address) {
  char text[32];
  std::snprintf(text, sizeof(text), "%#llx", static_cast<unsigned long long>(address));
  return text;
}

// "map_pages(0x7f0000000000, 2097152 bytes)": how argument errors name the call.
std::string describe(const char* call, const void* addr, std::size_t bytes) {
  return std::string(call) + "(" + hex(reinterpret_cast<std::uintptr_t>(addr)) + ", " +
         std::to_string(bytes) + " bytes)";
}

CUmemAccessDesc read_write_access(const CUmemAllocationProp& prop) {
  CUmemAccessDesc access = {};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return access;
}

}  // namespace

Result<std::unique_ptr<CudaVirtualMemory>> CudaVirtualMemory::create(int ordinal,
                                                                     const DriverApi& driver) {
  CUdevice device = 0;
  EBB_RETURN_IF_ERROR(cuda_status(driver.cuDeviceGet(&device, ordinal), {"cuDeviceGet"}));
  int supported = 0;
  EBB_RETURN_IF_ERROR(
      cuda_status(driver.cuDeviceGetAttribute(
                      &supported, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device),
                  {"cuDeviceGetAttribute(VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)"}));

  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  std::size_t page_bytes = kFallbackPageBytes;
  if (supported != 0) {
    EBB_RETURN_IF_ERROR(cuda_status(
        driver.cuMemGetAllocationGranularity(&page_bytes, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
        {"cuMemGetAllocationGranularity"}));
  }
  return std::unique_ptr<CudaVirtualMemory>(
      new CudaVirtualMemory(ordinal, driver, supported != 0, page_bytes, prop));
}

CudaVirtualMemory::CudaVirtualMemory(int ordinal, const DriverApi& driver, bool supported,
                                     std::size_t page_bytes, CUmemAllocationProp prop)
    : ordinal_(ordinal),
      driver_(driver),
      supported_(supported),
      page_bytes_(page_bytes),
      prop_(prop),
      access_(read_write_access(prop)) {}

CudaVirtualMemory::~CudaVirtualMemory() {
  std::lock_guard<std::mutex> lock(mu_);
  (void)cudaSetDevice(ordinal_);
  for (auto& [base, range] : ranges_) {
    for (std::size_t i = 0; i < range.pages.size(); ++i) {
      if (!range.pages[i].mapped) continue;
      Status status = unmap_page(base + i * page_bytes_, range, i);
      if (!status.ok()) std::fprintf(stderr, "ebb: %s\n", status.to_string().c_str());
    }
    Status status = cuda_status(driver_.cuMemAddressFree(base, range.bytes),
                                {"cuMemAddressFree", range.bytes, reinterpret_cast<void*>(base)});
    if (!status.ok()) std::fprintf(stderr, "ebb: %s\n", status.to_string().c_str());
  }
}

Result<void*> CudaVirtualMemory::reserve(std::size_t bytes) {
  if (!supported_) {
    return unavailable("reserve_range(" + std::to_string(bytes) + " bytes): cuda:" +
                       std::to_string(ordinal_) + " does not support virtual memory management");
  }
  if (bytes == 0 || bytes % page_bytes_ != 0) {
    return invalid_argument("reserve_range(" + std::to_string(bytes) +
                            " bytes): not a positive multiple of the page size (" +
                            std::to_string(page_bytes_) + " bytes)");
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  CUdeviceptr base = 0;
  EBB_RETURN_IF_ERROR(cuda_status(driver_.cuMemAddressReserve(&base, bytes, page_bytes_, 0, 0),
                                  {"cuMemAddressReserve", bytes}));
  std::lock_guard<std::mutex> lock(mu_);
  Range& range = ranges_[base];
  range.bytes = bytes;
  range.pages.assign(bytes / page_bytes_, Page{});
  return reinterpret_cast<void*>(base);
}

Status CudaVirtualMemory::release(void* base, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranges_.find(reinterpret_cast<std::uintptr_t>(base));
  if (it == ranges_.end()) {
    return invalid_argument(describe("release_range", base, bytes) +
                            ": not the base of a reserved range");
  }
  if (it->second.bytes != bytes) {
    return invalid_argument(describe("release_range", base, bytes) + ": the range reserved is " +
                            std::to_string(it->second.bytes) + " bytes");
  }
  if (it->second.mapped_pages != 0) {
    return failed_precondition(describe("release_range", base, bytes) + ": " +
                               std::to_string(it->second.mapped_pages) + " pages are still mapped");
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  EBB_RETURN_IF_ERROR(
      cuda_status(driver_.cuMemAddressFree(it->first, bytes), {"cuMemAddressFree", bytes, base}));
  ranges_.erase(it);
  return Status();
}

Result<std::uintptr_t> CudaVirtualMemory::find_range(const char* call, void* addr,
                                                     std::size_t bytes) const {
  const auto address = reinterpret_cast<std::uintptr_t>(addr);
  if (bytes == 0 || address % page_bytes_ != 0 || bytes % page_bytes_ != 0) {
    return invalid_argument(describe(call, addr, bytes) +
                            ": address and size must be non-zero multiples of the page size (" +
                            std::to_string(page_bytes_) + " bytes)");
  }
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) {
    return invalid_argument(describe(call, addr, bytes) + ": not inside a reserved range");
  }
  --it;
  const std::uintptr_t base = it->first;
  const std::size_t offset = address - base;
  if (offset >= it->second.bytes || bytes > it->second.bytes - offset) {
    return invalid_argument(describe(call, addr, bytes) + ": not inside a reserved range" +
                            " (the nearest below is " + hex(base) + ", " +
                            std::to_string(it->second.bytes) + " bytes)");
  }
  return base;
}

Status CudaVirtualMemory::check_map(void* addr, std::size_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  return check_map_locked(addr, bytes);
}

Status CudaVirtualMemory::check_map_locked(void* addr, std::size_t bytes) const {
  EBB_ASSIGN_OR_RETURN(std::uintptr_t base, find_range("map_pages", addr, bytes));
  const Range& range = ranges_.at(base);
  const std::size_t first = (reinterpret_cast<std::uintptr_t>(addr) - base) / page_bytes_;
  for (std::size_t i = first; i < first + bytes / page_bytes_; ++i) {
    if (range.pages[i].mapped) {
      return failed_precondition(describe("map_pages", addr, bytes) + ": the page at " +
                                 hex(base + i * page_bytes_) + " is already mapped");
    }
  }
  return Status();
}

Status CudaVirtualMemory::map(void* addr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  EBB_RETURN_IF_ERROR(check_map_locked(addr, bytes));
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  const auto address = reinterpret_cast<std::uintptr_t>(addr);
  const std::uintptr_t base = find_range("map_pages", addr, bytes).value();
  Range& range = ranges_.at(base);
  const std::size_t first = (address - base) / page_bytes_;
  const std::size_t count = bytes / page_bytes_;

  // One handle per page; on any failure, undo the pages of this call and report the failure.
  Status failure;
  std::size_t done = 0;
  for (; done < count; ++done) {
    const std::uintptr_t page = address + done * page_bytes_;
    CUmemGenericAllocationHandle handle = 0;
    failure = cuda_status(driver_.cuMemCreate(&handle, page_bytes_, &prop_, 0),
                          {"cuMemCreate", page_bytes_});
    if (!failure.ok()) break;
    failure = cuda_status(driver_.cuMemMap(page, page_bytes_, 0, handle, 0),
                          {"cuMemMap", page_bytes_, reinterpret_cast<void*>(page)});
    if (!failure.ok()) {
      (void)driver_.cuMemRelease(handle);
      break;
    }
    range.pages[first + done] = Page{handle, true};
    ++range.mapped_pages;
  }
  if (failure.ok()) {
    // One access call over the whole run: it may span many allocations, all mapped.
    failure = cuda_status(driver_.cuMemSetAccess(address, bytes, &access_, 1),
                          {"cuMemSetAccess", bytes, addr});
    if (failure.ok()) return Status();
  }
  for (std::size_t i = 0; i < done; ++i) {
    Status undo = unmap_page(address + i * page_bytes_, range, first + i);
    if (!undo.ok())
      std::fprintf(stderr, "ebb: undoing a failed map: %s\n", undo.to_string().c_str());
  }
  return failure;
}

Status CudaVirtualMemory::unmap(void* addr, std::size_t bytes, std::size_t* unmapped_bytes) {
  *unmapped_bytes = 0;
  std::lock_guard<std::mutex> lock(mu_);
  EBB_ASSIGN_OR_RETURN(std::uintptr_t base, find_range("unmap_pages", addr, bytes));
  Range& range = ranges_.at(base);
  const auto address = reinterpret_cast<std::uintptr_t>(addr);
  const std::size_t first = (address - base) / page_bytes_;
  const std::size_t count = bytes / page_bytes_;
  for (std::size_t i = first; i < first + count; ++i) {
    if (!range.pages[i].mapped) {
      return failed_precondition(describe("unmap_pages", addr, bytes) + ": the page at " +
                                 hex(base + i * page_bytes_) + " is not mapped");
    }
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  for (std::size_t i = 0; i < count; ++i) {
    const bool was_mapped = range.pages[first + i].mapped;
    Status status = unmap_page(address + i * page_bytes_, range, first + i);
    if (was_mapped && !range.pages[first + i].mapped) *unmapped_bytes += page_bytes_;
    EBB_RETURN_IF_ERROR(status);
  }
  return Status();
}

Status CudaVirtualMemory::unmap_page(std::uintptr_t address, Range& range, std::size_t index) {
  Page& page = range.pages[index];
  // Each page was mapped by its own cuMemMap, so it can be unmapped alone.
  EBB_RETURN_IF_ERROR(cuda_status(driver_.cuMemUnmap(address, page_bytes_),
                                  {"cuMemUnmap", page_bytes_, reinterpret_cast<void*>(address)}));
  page.mapped = false;
  --range.mapped_pages;
  CUmemGenericAllocationHandle handle = page.handle;
  page.handle = 0;
  return cuda_status(driver_.cuMemRelease(handle), {"cuMemRelease", page_bytes_});
}

CudaVirtualMemory::Holdings CudaVirtualMemory::holdings() const {
  std::lock_guard<std::mutex> lock(mu_);
  Holdings holdings;
  holdings.ranges = ranges_.size();
  for (const auto& [base, range] : ranges_) holdings.mapped_pages += range.mapped_pages;
  return holdings;
}

}  // namespace ebb
