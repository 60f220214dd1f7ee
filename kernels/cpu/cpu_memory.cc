#include "kernels/cpu/cpu_memory.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "kernels/arith.h"

namespace ebb {
namespace {

// mlock and munlock as the kernel answers them. AddressSanitizer and ThreadSanitizer intercept
// the libc functions and make them succeed without locking anything, which would hide a
// RLIMIT_MEMLOCK failure in exactly the builds that test the error paths.
int lock_pages(const void* ptr, std::size_t bytes) {
  return static_cast<int>(syscall(SYS_mlock, ptr, bytes));
}
int unlock_pages(const void* ptr, std::size_t bytes) {
  return static_cast<int>(syscall(SYS_munlock, ptr, bytes));
}

std::uintptr_t as_int(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr); }
void* as_ptr(std::uintptr_t addr) { return reinterpret_cast<void*>(addr); }

// "mmap of 4096 bytes failed: Cannot allocate memory".
Status syscall_error(const char* call, std::size_t bytes, int err) {
  return internal_error(std::string(call) + " of " + std::to_string(bytes) +
                        " bytes failed: " + std::strerror(err));
}

// "[0x7f0000, +8192 bytes)": how messages name a region.
std::string region_string(const void* ptr, std::size_t bytes) {
  return "[" + address_string(ptr) + ", +" + std::to_string(bytes) + " bytes)";
}

// True when [addr, addr + bytes) does not wrap around the address space.
bool fits_address_space(std::uintptr_t addr, std::size_t bytes) {
  return bytes <= std::numeric_limits<std::uintptr_t>::max() - addr;
}

}  // namespace

std::size_t os_page_bytes() {
  static const std::size_t kBytes = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return kBytes;
}

std::string address_string(const void* ptr) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", ptr);
  return buf;
}

Status CpuMemory::check_page_bytes(std::size_t page_bytes) {
  const bool power_of_two = page_bytes != 0 && (page_bytes & (page_bytes - 1)) == 0;
  if (!power_of_two || page_bytes < os_page_bytes()) {
    return invalid_argument("page_bytes " + std::to_string(page_bytes) +
                            " must be a power of two and a multiple of the OS page size " +
                            std::to_string(os_page_bytes()));
  }
  return ok_status();
}

CpuMemory::CpuMemory(std::size_t capacity_bytes, std::size_t page_bytes, MemoryBacking backing)
    : capacity_bytes_(capacity_bytes), page_bytes_(page_bytes), backing_(backing) {
  EBB_CHECK(check_page_bytes(page_bytes).ok(), "page_bytes " + std::to_string(page_bytes));
}

CpuMemory::~CpuMemory() {
  // The Device contract asks callers to return everything; what is left is released here so
  // that a test that stops early does not leak address space.
  for (const auto& [base, a] : allocations_) munmap(as_ptr(base), a.mapped_bytes);
  for (const auto& [base, r] : ranges_) munmap(as_ptr(base), r.bytes);
  for (const auto& [base, bytes] : pinned_) {
    if (backed()) unlock_pages(as_ptr(base), bytes);
    munmap(as_ptr(base), bytes);
  }
}

std::size_t CpuMemory::committed_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return committed_bytes_;
}

Result<void*> CpuMemory::allocate(std::size_t bytes) {
  if (bytes == 0) return invalid_argument("allocate of 0 bytes");
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > capacity_bytes_ - committed_bytes_) {
    return out_of_memory("allocate of " + std::to_string(bytes) +
                         " bytes: " + std::to_string(committed_bytes_) + " of " +
                         std::to_string(capacity_bytes_) + " bytes of device capacity committed");
  }
  // Rounding to whole OS pages gives 4 KiB alignment, past the 512 bytes kernels rely on.
  const std::size_t mapped_bytes = round_up(bytes, os_page_bytes());
  void* ptr = backed() ? mmap(nullptr, mapped_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                       : mmap(nullptr, mapped_bytes, PROT_NONE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ptr == MAP_FAILED) return syscall_error("mmap", mapped_bytes, errno);
  allocations_.emplace(as_int(ptr), Allocation{bytes, mapped_bytes});
  committed_bytes_ += bytes;
  return ptr;
}

Status CpuMemory::free(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = allocations_.find(as_int(ptr));
  if (it == allocations_.end()) {
    return invalid_argument("free of " + address_string(ptr) +
                            ": not a live allocation of this device");
  }
  if (munmap(ptr, it->second.mapped_bytes) != 0) {
    return syscall_error("munmap", it->second.mapped_bytes, errno);
  }
  committed_bytes_ -= it->second.bytes;
  allocations_.erase(it);
  return ok_status();
}

Result<void*> CpuMemory::reserve_range(std::size_t bytes) {
  if (bytes == 0 || bytes % page_bytes_ != 0) {
    return invalid_argument("reserve_range of " + std::to_string(bytes) +
                            " bytes: not a positive multiple of page_bytes " +
                            std::to_string(page_bytes_));
  }
  // mmap aligns to OS pages only: over-reserve by one page and trim both ends to page_bytes_.
  const std::size_t over_bytes = bytes + page_bytes_;
  void* raw =
      mmap(nullptr, over_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return syscall_error("mmap (reserve)", over_bytes, errno);
  const std::uintptr_t raw_base = as_int(raw);
  const std::uintptr_t base = round_up(raw_base, page_bytes_);
  const std::size_t head_bytes = base - raw_base;
  const std::size_t tail_bytes = over_bytes - head_bytes - bytes;
  if (head_bytes > 0 && munmap(raw, head_bytes) != 0) {
    return syscall_error("munmap (reserve head)", head_bytes, errno);
  }
  if (tail_bytes > 0 && munmap(as_ptr(base + bytes), tail_bytes) != 0) {
    return syscall_error("munmap (reserve tail)", tail_bytes, errno);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ranges_.emplace(base, Range{bytes, std::vector<bool>(bytes / page_bytes_, false), 0});
  return as_ptr(base);
}

Status CpuMemory::release_range(void* base, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranges_.find(as_int(base));
  if (it == ranges_.end() || it->second.bytes != bytes) {
    return invalid_argument("release_range of " + region_string(base, bytes) +
                            ": not a range reserve_range returned");
  }
  if (it->second.mapped_pages != 0) {
    return failed_precondition("release_range of " + region_string(base, bytes) + ": " +
                               std::to_string(it->second.mapped_pages) + " pages still mapped");
  }
  if (munmap(base, bytes) != 0) return syscall_error("munmap (release)", bytes, errno);
  ranges_.erase(it);
  return ok_status();
}

Result<CpuMemory::PageSpan> CpuMemory::find_pages(const char* call, void* addr, std::size_t bytes) {
  const std::uintptr_t a = as_int(addr);
  if (bytes == 0 || a % page_bytes_ != 0 || bytes % page_bytes_ != 0) {
    return invalid_argument(std::string(call) + " of " + region_string(addr, bytes) +
                            ": address and size must be non-zero multiples of page_bytes " +
                            std::to_string(page_bytes_));
  }
  auto it = ranges_.upper_bound(a);
  if (it != ranges_.begin()) --it;
  if (it == ranges_.end() || a < it->first || !fits_address_space(a, bytes) ||
      a + bytes > it->first + it->second.bytes) {
    return invalid_argument(std::string(call) + " of " + region_string(addr, bytes) +
                            ": not inside a reserved range of this device");
  }
  return PageSpan{&it->second, (a - it->first) / page_bytes_, bytes / page_bytes_};
}

Status CpuMemory::map_pages(void* addr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  EBB_ASSIGN_OR_RETURN(PageSpan span, find_pages("map_pages", addr, bytes));
  for (std::size_t p = span.first_page; p < span.first_page + span.page_count; ++p) {
    if (span.range->mapped[p]) {
      return failed_precondition(
          "map_pages of " + region_string(addr, bytes) + ": page at " +
          address_string(static_cast<char*>(addr) + (p - span.first_page) * page_bytes_) +
          " is already mapped");
    }
  }
  if (bytes > capacity_bytes_ - committed_bytes_) {
    return out_of_memory("map_pages of " + region_string(addr, bytes) + ": " +
                         std::to_string(committed_bytes_) + " of " +
                         std::to_string(capacity_bytes_) + " bytes of device capacity committed");
  }
  if (backed() && mprotect(addr, bytes, PROT_READ | PROT_WRITE) != 0) {
    return syscall_error("mprotect (map_pages)", bytes, errno);
  }
  for (std::size_t p = span.first_page; p < span.first_page + span.page_count; ++p) {
    span.range->mapped[p] = true;
  }
  span.range->mapped_pages += span.page_count;
  committed_bytes_ += bytes;
  return ok_status();
}

Status CpuMemory::unmap_pages(void* addr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  EBB_ASSIGN_OR_RETURN(PageSpan span, find_pages("unmap_pages", addr, bytes));
  for (std::size_t p = span.first_page; p < span.first_page + span.page_count; ++p) {
    if (!span.range->mapped[p]) {
      return failed_precondition(
          "unmap_pages of " + region_string(addr, bytes) + ": page at " +
          address_string(static_cast<char*>(addr) + (p - span.first_page) * page_bytes_) +
          " is not mapped");
    }
  }
  // MADV_DONTNEED drops the backing pages now, so the memory really goes back to the OS.
  if (backed() && madvise(addr, bytes, MADV_DONTNEED) != 0) {
    return syscall_error("madvise (unmap_pages)", bytes, errno);
  }
  if (backed() && mprotect(addr, bytes, PROT_NONE) != 0) {
    return syscall_error("mprotect (unmap_pages)", bytes, errno);
  }
  for (std::size_t p = span.first_page; p < span.first_page + span.page_count; ++p) {
    span.range->mapped[p] = false;
  }
  span.range->mapped_pages -= span.page_count;
  committed_bytes_ -= bytes;
  return ok_status();
}

Result<void*> CpuMemory::allocate_pinned_host(std::size_t bytes) {
  if (bytes == 0) return invalid_argument("allocate_pinned_host of 0 bytes");
  const std::size_t mapped_bytes = round_up(bytes, os_page_bytes());
  // Address space only (the sim backend): the host tier of a simulated machine holds no values
  // either, so that a 7B model's optimizer state on the host reserves no memory here.
  void* ptr = backed() ? mmap(nullptr, mapped_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                       : mmap(nullptr, mapped_bytes, PROT_NONE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ptr == MAP_FAILED) return syscall_error("mmap (pinned host)", mapped_bytes, errno);
  if (backed() && lock_pages(ptr, mapped_bytes) != 0) {
    const int err = errno;
    munmap(ptr, mapped_bytes);
    return internal_error("mlock of " + std::to_string(mapped_bytes) +
                          " bytes of pinned host memory failed: " + std::strerror(err) +
                          " (RLIMIT_MEMLOCK, `ulimit -l`, caps how much a process may lock)");
  }
  std::lock_guard<std::mutex> lock(mu_);
  pinned_.emplace(as_int(ptr), mapped_bytes);
  return ptr;
}

Status CpuMemory::free_pinned_host(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pinned_.find(as_int(ptr));
  if (it == pinned_.end()) {
    return invalid_argument("free_pinned_host of " + address_string(ptr) +
                            ": not live pinned host memory of this device");
  }
  if (backed() && unlock_pages(ptr, it->second) != 0) {
    return syscall_error("munlock", it->second, errno);
  }
  if (munmap(ptr, it->second) != 0) return syscall_error("munmap (pinned host)", it->second, errno);
  pinned_.erase(it);
  return ok_status();
}

Status CpuMemory::register_host_memory(void* ptr, std::size_t bytes) {
  if (ptr == nullptr || bytes == 0) {
    return invalid_argument("register_host_memory of " + region_string(ptr, bytes) +
                            ": null pointer or 0 bytes");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (registered_.contains(as_int(ptr))) {
    return invalid_argument("register_host_memory of " + region_string(ptr, bytes) +
                            ": already registered");
  }
  if (backed() && lock_pages(ptr, bytes) != 0) {
    return internal_error("mlock of " + region_string(ptr, bytes) +
                          " (register_host_memory) failed: " + std::strerror(errno) +
                          " (RLIMIT_MEMLOCK, `ulimit -l`, caps how much a process may lock)");
  }
  registered_.emplace(as_int(ptr), bytes);
  return ok_status();
}

Status CpuMemory::unregister_host_memory(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = registered_.find(as_int(ptr));
  if (it == registered_.end()) {
    return invalid_argument("unregister_host_memory of " + address_string(ptr) +
                            ": not registered with this device");
  }
  if (backed() && unlock_pages(ptr, it->second) != 0)
    return syscall_error("munlock", it->second, errno);
  registered_.erase(it);
  return ok_status();
}

Status CpuMemory::check_device_range(const void* ptr, std::size_t bytes) const {
  if (bytes == 0) return ok_status();  // touches nothing
  const std::uintptr_t a = as_int(ptr);
  std::lock_guard<std::mutex> lock(mu_);
  if (fits_address_space(a, bytes)) {
    auto alloc = allocations_.upper_bound(a);
    if (alloc != allocations_.begin()) {
      --alloc;
      if (a >= alloc->first && a + bytes <= alloc->first + alloc->second.bytes) return ok_status();
    }
    auto range = ranges_.upper_bound(a);
    if (range != ranges_.begin()) {
      --range;
      const Range& r = range->second;
      if (a >= range->first && a + bytes <= range->first + r.bytes) {
        const std::size_t first = (a - range->first) / page_bytes_;
        const std::size_t last = (a + bytes - 1 - range->first) / page_bytes_;
        bool all_mapped = true;
        for (std::size_t p = first; p <= last && all_mapped; ++p) all_mapped = r.mapped[p];
        if (all_mapped) return ok_status();
      }
    }
  }
  return invalid_argument(region_string(ptr, bytes) +
                          " is not inside a live allocation or mapped pages of this device");
}

}  // namespace ebb
