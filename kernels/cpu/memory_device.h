// MemoryDevice: the memory half of the cpu and sim backends' Devices, served by one CpuMemory,
// and the option checks both make. The two backends keep device memory the same way (the sim
// backend keeps no bytes behind it) and differ in their streams and clocks.
//
// Ownership: owns the CpuMemory; a derived device declares its streams after it, so they go
// first. Thread safety: thread-safe (CpuMemory is).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/cpu/cpu_memory.h"
#include "kernels/device.h"

namespace ebb {

class MemoryDevice : public Device {
 public:
  std::size_t capacity_bytes() const override { return memory_.capacity_bytes(); }
  std::size_t committed_bytes() const override { return memory_.committed_bytes(); }

  Result<void*> allocate(std::size_t bytes) override { return memory_.allocate(bytes); }
  Status free(void* ptr) override { return memory_.free(ptr); }

  std::size_t page_bytes() const override { return memory_.page_bytes(); }
  Result<void*> reserve_range(std::size_t bytes) override { return memory_.reserve_range(bytes); }
  Status release_range(void* base, std::size_t bytes) override {
    return memory_.release_range(base, bytes);
  }
  Status map_pages(void* addr, std::size_t bytes) override {
    return memory_.map_pages(addr, bytes);
  }
  Status unmap_pages(void* addr, std::size_t bytes) override {
    return memory_.unmap_pages(addr, bytes);
  }

  Result<void*> allocate_pinned_host(std::size_t bytes) override {
    return memory_.allocate_pinned_host(bytes);
  }
  Status free_pinned_host(void* ptr) override { return memory_.free_pinned_host(ptr); }
  Status register_host_memory(void* ptr, std::size_t bytes) override {
    return memory_.register_host_memory(ptr, bytes);
  }
  Status unregister_host_memory(void* ptr) override { return memory_.unregister_host_memory(ptr); }

 protected:
  MemoryDevice(const DeviceOptions& options, MemoryBacking backing)
      : memory_(options.capacity_bytes, options.page_bytes, backing) {}

  CpuMemory memory_;
};

// Checks what a memory-backed device takes from its options: a non-zero capacity, a valid page
// size and link models without negative (or NaN) bandwidth or latency. `backend` names the
// device in the message ("cpu", "sim").
Status check_memory_device_options(const DeviceOptions& options, std::string_view backend);

// Checks a copy's arguments before it is queued: non-null pointers, and each device side inside
// a live allocation or mapped pages of `memory`. REQUIRES: bytes > 0. The message names the
// copy, its size and the stream ("copy_async (host-to-device, 4096 bytes) on cpu stream 1").
Status check_copy_arguments(const CpuMemory& memory, void* dst, const void* src, std::size_t bytes,
                            CopyKind kind, std::string_view backend, std::uint32_t stream_id);

// "1.00 GiB": a capacity in the largest unit that keeps it at least 1.
std::string capacity_string(std::size_t bytes);

}  // namespace ebb
