// Device: the one interface everything above kernels/ uses to reach an accelerator.
//
// A Device has a fixed memory capacity, hands out raw memory (whole allocations, like
// cudaMalloc, and page-granular virtual memory for expandable segments), pinned host memory,
// in-order Streams and Events. Two real backends implement it: cpu (kernels/cpu: device memory
// is host memory of a fixed capacity, each stream a worker thread) and cuda (kernels/cuda). A
// third, sim (kernels/sim), simulates one: its memory is address space only, closures are
// accounted rather than run, and its clock is virtual, advanced by each launch's cost and by
// modelled copy links.
// The CUDA semantics are the reference: every backend behaves as CUDA does for ordering
// within a stream, cross-stream waits through events, and event timing.
//
// Ownership: a Device owns its default stream. Streams and Events created from it are owned by
// the caller and must be destroyed before the Device. Memory from allocate/map_pages must be
// returned before the Device is destroyed (a backend may release what is left, but says so).
//
// Thread safety: Device, Stream and Event methods are thread-safe.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "kernels/status.h"

namespace ebb {

inline constexpr std::size_t kKiB = std::size_t{1} << 10;
inline constexpr std::size_t kMiB = std::size_t{1} << 20;
inline constexpr std::size_t kGiB = std::size_t{1} << 30;

enum class DeviceKind : std::uint8_t { kCpu, kCuda, kSim };
std::string_view device_kind_name(DeviceKind kind);

enum class CopyKind : std::uint8_t { kHostToDevice, kDeviceToHost, kDeviceToDevice, kHostToHost };
std::string_view copy_kind_name(CopyKind kind);

// A modelled copy link (cpu and sim backends): a copy of n bytes takes latency +
// n / bytes_per_second. bytes_per_second == 0 means unthrottled (on sim: no transfer time).
struct LinkModel {
  double bytes_per_second = 0;          // sustained bandwidth; 0 = as fast as memcpy
  std::chrono::nanoseconds latency{0};  // fixed cost per copy

  // latency + bytes / bytes_per_second, to the nearest nanosecond (no transfer time when
  // unthrottled).
  std::chrono::nanoseconds transfer_time(double bytes) const {
    const double ns = bytes_per_second > 0 ? bytes * 1e9 / bytes_per_second : 0.0;
    return latency + std::chrono::nanoseconds(std::llround(ns));
  }
};

class Event;

// What a kernel closure receives when it runs. On cpu the closure runs on the stream's worker
// thread in stream order and does the work itself; on cuda it runs on the calling thread and
// launches device work onto native_stream (a cudaStream_t). On sim it never runs.
struct LaunchContext {
  DeviceKind kind;
  void* native_stream;  // cudaStream_t on cuda; nullptr on cpu
};
using Kernel = std::function<void(const LaunchContext&)>;

// An in-order queue of device work. Work enqueued on one stream runs in enqueue order; work on
// different streams is unordered unless ordered by an Event.
class Stream {
 public:
  virtual ~Stream() = default;
  // Unique among the live streams of one Device; stable for the stream's life.
  virtual std::uint32_t id() const = 0;
  // REQUIRES: dst and src valid for `bytes` bytes on the sides `kind` names.
  virtual Status copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) = 0;
  virtual Status memset_async(void* dst, std::uint8_t value, std::size_t bytes) = 0;
  virtual Status launch(Kernel kernel) = 0;
  // launch(kernel) with the time the kernel is modelled to take. The sim backend does not run
  // the closure: it advances the stream's virtual timeline by `cost` (launch(kernel) there costs
  // nothing). cpu and cuda ignore `cost` and run the kernel as launch(kernel) does.
  // kInvalidArgument for a negative cost on sim.
  virtual Status launch(Kernel kernel, std::chrono::nanoseconds cost) {
    return launch(std::move(kernel));
  }
  // Captures the work enqueued so far; the event completes when that work has completed.
  virtual Status record(Event& event) = 0;
  // Work enqueued after this call starts only after `event`'s captured work has completed. A
  // never-recorded event imposes no wait (as in CUDA).
  virtual Status wait(Event& event) = 0;
  // Blocks the calling thread until all enqueued work has completed; returns the first error a
  // kernel or copy on this stream raised, if any.
  virtual Status synchronize() = 0;
  // True when all enqueued work has completed.
  virtual Result<bool> query() = 0;
};

class Event {
 public:
  virtual ~Event() = default;
  // True when the captured work has completed (true for a never-recorded event).
  virtual Result<bool> query() = 0;
  // Blocks the calling thread until the captured work has completed.
  virtual Status synchronize() = 0;
  // Milliseconds from `start` to this event. REQUIRES: both recorded with timing and completed.
  virtual Result<double> elapsed_ms_since(Event& start) = 0;
};

class Device {
 public:
  virtual ~Device() = default;

  virtual DeviceKind kind() const = 0;
  virtual std::string name() const = 0;
  // Bytes of device memory this device may hand out, in total.
  virtual std::size_t capacity_bytes() const = 0;
  // Bytes handed out now: whole allocations plus mapped pages.
  virtual std::size_t committed_bytes() const = 0;

  // Whole allocations (cudaMalloc). Fails with kInvalidArgument for 0 bytes and kOutOfMemory
  // when committed_bytes() + bytes would pass capacity_bytes().
  virtual Result<void*> allocate(std::size_t bytes) = 0;
  // REQUIRES nothing: a pointer that allocate() did not return is kInvalidArgument.
  virtual Status free(void* ptr) = 0;

  // Virtual memory, for expandable segments. page_bytes() is the mapping granularity.
  virtual std::size_t page_bytes() const = 0;
  // Reserves address space only (counts nothing against capacity). bytes: multiple of pages.
  virtual Result<void*> reserve_range(std::size_t bytes) = 0;
  // REQUIRES: no page of the range is mapped.
  virtual Status release_range(void* base, std::size_t bytes) = 0;
  // Backs [addr, addr+bytes) of a reserved range with memory, readable and writable by
  // kernels and copies. addr and bytes page-aligned. Counts against capacity.
  virtual Status map_pages(void* addr, std::size_t bytes) = 0;
  // Returns the memory behind [addr, addr+bytes). Does not wait for the device: REQUIRES those
  // pages are mapped and no queued work still uses them (cuMemUnmap, like munmap, does not
  // order itself after running kernels).
  virtual Status unmap_pages(void* addr, std::size_t bytes) = 0;

  // Page-locked host memory usable by async copies (cudaHostAlloc; mlock on cpu).
  virtual Result<void*> allocate_pinned_host(std::size_t bytes) = 0;
  virtual Status free_pinned_host(void* ptr) = 0;
  // Makes existing host memory (an anonymous mmap that io_uring has registered, say) usable by
  // async copies as pinned memory is: cudaHostRegister on cuda, mlock on cpu, nothing on sim.
  // Memory that io_uring registers cannot come from cudaHostAlloc on older kernels, hence this.
  // REQUIRES: [ptr, ptr + bytes) stays mapped until unregister_host_memory(ptr).
  // kInvalidArgument for a null pointer, 0 bytes or a base already registered.
  virtual Status register_host_memory(void* ptr, std::size_t bytes) = 0;
  // kInvalidArgument for a pointer that register_host_memory did not take.
  virtual Status unregister_host_memory(void* ptr) = 0;

  virtual Stream& default_stream() = 0;
  virtual Result<std::unique_ptr<Stream>> create_stream() = 0;
  virtual Result<std::unique_ptr<Event>> create_event() = 0;
  // Blocks until all work on all streams of this device has completed.
  virtual Status synchronize() = 0;
};

struct DeviceOptions {
  DeviceKind kind = DeviceKind::kCpu;
  // cpu, sim: the simulated device memory size. cuda: 0 means the free memory at creation; a
  // non-zero value caps what this Device hands out.
  std::size_t capacity_bytes = std::size_t{1} << 30;  // 1 GiB
  // cpu, sim: mapping granularity for map_pages (cuda reports the driver's, usually 2 MiB).
  std::size_t page_bytes = std::size_t{2} << 20;  // 2 MiB
  // cpu, sim: the modelled links; unthrottled by default.
  LinkModel host_to_device;
  LinkModel device_to_host;
  // cuda: which GPU.
  int ordinal = 0;
};

// Creates a device of options.kind. kUnavailable when the backend was not compiled in or no
// such device is present.
Result<std::unique_ptr<Device>> create_device(const DeviceOptions& options);

// True when the CUDA backend was compiled in and at least one GPU is visible.
bool cuda_device_present();

}  // namespace ebb
