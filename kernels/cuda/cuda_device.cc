// CudaDevice: the cuda backend of Device, over the CUDA runtime (whole allocations, pinned host
// memory, streams, events) and the driver's virtual memory management (CudaVirtualMemory).
//
// Capacity is accounted here, before CUDA is asked: committed bytes (cudaMalloc'ed plus mapped)
// never pass capacity_bytes(), which is DeviceOptions::capacity_bytes or, when that is 0, the
// GPU's free memory at creation. Every call first makes this GPU current on the calling thread.
// free() waits for the device (cudaFree does); unmap_pages() does not (cuMemUnmap does not): its
// caller must know that no queued work still uses the pages.
//
// Ownership: owns the default stream, the allocations and mappings it hands out (it releases
// what is left at destruction, and says so on stderr), and the pinned host buffers.
// Thread safety: thread-safe; committed bytes are an atomic, the allocation tables have a mutex,
// and CudaVirtualMemory guards its own.
#include "kernels/cuda/cuda_device.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>

#include "kernels/cuda/cuda_call.h"
#include "kernels/cuda/cuda_driver.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/cuda_virtual_memory.h"

namespace ebb {
namespace {

std::string hex(const void* ptr) {
  char text[32];
  std::snprintf(text, sizeof(text), "%p", ptr);
  return text;
}

class CudaDevice final : public Device {
 public:
  static Result<std::unique_ptr<Device>> create(const DeviceOptions& options);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  DeviceKind kind() const override { return DeviceKind::kCuda; }
  std::string name() const override { return name_; }
  std::size_t capacity_bytes() const override { return capacity_bytes_; }
  std::size_t committed_bytes() const override {
    return committed_bytes_.load(std::memory_order_relaxed);
  }

  Result<void*> allocate(std::size_t bytes) override;
  Status free(void* ptr) override;

  std::size_t page_bytes() const override { return vm_->page_bytes(); }
  Result<void*> reserve_range(std::size_t bytes) override { return vm_->reserve(bytes); }
  Status release_range(void* base, std::size_t bytes) override;
  Status map_pages(void* addr, std::size_t bytes) override;
  Status unmap_pages(void* addr, std::size_t bytes) override;

  Result<void*> allocate_pinned_host(std::size_t bytes) override;
  Status free_pinned_host(void* ptr) override;
  Status register_host_memory(void* ptr, std::size_t bytes) override;
  Status unregister_host_memory(void* ptr) override;

  Stream& default_stream() override { return *default_stream_; }
  Result<std::unique_ptr<Stream>> create_stream() override;
  Result<std::unique_ptr<Event>> create_event() override;
  Status synchronize() override;

 private:
  CudaDevice(int ordinal, std::string name, std::size_t capacity_bytes,
             std::unique_ptr<CudaVirtualMemory> vm)
      : ordinal_(ordinal),
        name_(std::move(name)),
        capacity_bytes_(capacity_bytes),
        vm_(std::move(vm)) {}

  // Adds `bytes` to committed bytes, or kOutOfMemory naming `call`, the request, what is
  // committed and the capacity.
  Status commit(const char* call, std::size_t bytes);
  void uncommit(std::size_t bytes) { committed_bytes_.fetch_sub(bytes, std::memory_order_relaxed); }

  const int ordinal_;
  const std::string name_;
  const std::size_t capacity_bytes_;
  std::atomic<std::size_t> committed_bytes_{0};
  std::atomic<std::uint32_t> next_stream_id_{1};  // 0 is the default stream
  const std::unique_ptr<CudaVirtualMemory> vm_;
  std::unique_ptr<CudaStream> default_stream_;  // set once by create()

  std::mutex mu_;
  std::unordered_map<void*, std::size_t> allocations_;  // cudaMalloc'ed, with their sizes
  std::unordered_map<void*, std::size_t> pinned_;       // cudaHostAlloc'ed, with their sizes
  std::unordered_map<void*, std::size_t> registered_;   // cudaHostRegister'ed, with their sizes
};

Result<std::unique_ptr<Device>> CudaDevice::create(const DeviceOptions& options) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return unavailable(std::string("no usable CUDA driver: cudaGetDeviceCount failed: ") +
                       cudaGetErrorName(error) + ": " + cudaGetErrorString(error));
  }
  if (count == 0) return unavailable("no CUDA device: cudaGetDeviceCount reports 0 GPUs");
  if (options.ordinal < 0 || options.ordinal >= count) {
    return unavailable("CUDA device ordinal " + std::to_string(options.ordinal) +
                       " is out of range: " + std::to_string(count) + " GPUs are visible");
  }
  const int ordinal = options.ordinal;
  EBB_RETURN_IF_ERROR(use_device(ordinal));
  // Creates the primary context now, so that the driver calls below find it current.
  EBB_RETURN_IF_ERROR(cuda_status(cudaFree(nullptr), {"cudaFree(nullptr) (context creation)"}));

  cudaDeviceProp prop = {};
  EBB_RETURN_IF_ERROR(
      cuda_status(cudaGetDeviceProperties(&prop, ordinal), {"cudaGetDeviceProperties"}));
  std::string name = "cuda:" + std::to_string(ordinal) + " " + prop.name + " (sm_" +
                     std::to_string(prop.major) + std::to_string(prop.minor) + ")";

  std::size_t capacity_bytes = options.capacity_bytes;
  if (capacity_bytes == 0) {
    std::size_t free_bytes = 0;
    std::size_t total_bytes = 0;
    EBB_RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), {"cudaMemGetInfo"}));
    capacity_bytes = free_bytes;
  }

  EBB_ASSIGN_OR_RETURN(const DriverApi* driver, DriverApi::get());
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<CudaVirtualMemory> vm,
                       CudaVirtualMemory::create(ordinal, *driver));
  std::unique_ptr<CudaDevice> device(
      new CudaDevice(ordinal, std::move(name), capacity_bytes, std::move(vm)));
  EBB_ASSIGN_OR_RETURN(device->default_stream_, CudaStream::create(device.get(), ordinal, 0));
  return std::unique_ptr<Device>(std::move(device));
}

CudaDevice::~CudaDevice() {
  (void)cudaSetDevice(ordinal_);
  Status synced = synchronize();
  if (!synced.ok()) std::fprintf(stderr, "ebb: %s\n", synced.to_string().c_str());
  const CudaVirtualMemory::Holdings held = vm_->holdings();
  if (!allocations_.empty() || !pinned_.empty() || held.ranges != 0) {
    std::fprintf(stderr,
                 "ebb: %s destroyed while holding %zu allocations, %zu mapped pages in %zu "
                 "reserved ranges and %zu pinned host buffers (%zu bytes committed); releasing "
                 "them\n",
                 name_.c_str(), allocations_.size(), held.mapped_pages, held.ranges, pinned_.size(),
                 committed_bytes());
  }
  for (const auto& [ptr, bytes] : allocations_) {
    Status status = cuda_status(cudaFree(ptr), {"cudaFree", bytes, ptr});
    if (!status.ok()) std::fprintf(stderr, "ebb: %s\n", status.to_string().c_str());
  }
  for (const auto& [ptr, bytes] : pinned_) {
    Status status = cuda_status(cudaFreeHost(ptr), {"cudaFreeHost", bytes, ptr});
    if (!status.ok()) std::fprintf(stderr, "ebb: %s\n", status.to_string().c_str());
  }
  // Then the members: the default stream is destroyed, and vm_ releases what is mapped and
  // reserved.
}

Status CudaDevice::commit(const char* call, std::size_t bytes) {
  std::size_t committed = committed_bytes_.load(std::memory_order_relaxed);
  do {
    if (bytes > capacity_bytes_ - committed) {
      return out_of_memory(std::string(call) + "(" + std::to_string(bytes) + " bytes) on " + name_ +
                           ": " + std::to_string(committed) + " bytes are committed of " +
                           std::to_string(capacity_bytes_) + " bytes of capacity");
    }
  } while (!committed_bytes_.compare_exchange_weak(committed, committed + bytes,
                                                   std::memory_order_relaxed));
  return Status();
}

Result<void*> CudaDevice::allocate(std::size_t bytes) {
  if (bytes == 0) return invalid_argument("allocate(0 bytes) on " + name_);
  EBB_RETURN_IF_ERROR(commit("allocate", bytes));
  void* ptr = nullptr;
  Status status = use_device(ordinal_);
  if (status.ok()) status = cuda_status(cudaMalloc(&ptr, bytes), {"cudaMalloc", bytes});
  if (!status.ok()) {
    uncommit(bytes);
    return status;
  }
  std::lock_guard<std::mutex> lock(mu_);
  allocations_.emplace(ptr, bytes);
  return ptr;
}

Status CudaDevice::free(void* ptr) {
  std::size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = allocations_.find(ptr);
    if (it == allocations_.end()) {
      return invalid_argument("free(" + hex(ptr) + ") on " + name_ +
                              ": not a live allocation of this device (foreign or freed twice)");
    }
    bytes = it->second;
    allocations_.erase(it);
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  // A failed cudaFree leaves the bytes committed: the memory may still be held.
  EBB_RETURN_IF_ERROR(cuda_status(cudaFree(ptr), {"cudaFree", bytes, ptr}));
  uncommit(bytes);
  return Status();
}

Status CudaDevice::release_range(void* base, std::size_t bytes) {
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  return vm_->release(base, bytes);
}

Status CudaDevice::map_pages(void* addr, std::size_t bytes) {
  // Argument errors first, so that a bad address is not reported as a full device.
  EBB_RETURN_IF_ERROR(vm_->check_map(addr, bytes));
  EBB_RETURN_IF_ERROR(commit("map_pages", bytes));
  Status status = vm_->map(addr, bytes);
  if (!status.ok()) uncommit(bytes);
  return status;
}

Status CudaDevice::unmap_pages(void* addr, std::size_t bytes) {
  // No device-wide wait here, unlike cudaFree and unlike PyTorch, which synchronizes before each
  // unmap: the caching allocator unmaps only pages of frees that an event shows the device has
  // passed, and unmaps page by page under memory pressure, where a wait would drain every stream
  // each time. The caller guarantees that no queued work still uses the pages.
  std::size_t unmapped_bytes = 0;
  Status status = vm_->unmap(addr, bytes, &unmapped_bytes);
  uncommit(unmapped_bytes);
  return status;
}

Result<void*> CudaDevice::allocate_pinned_host(std::size_t bytes) {
  if (bytes == 0) return invalid_argument("allocate_pinned_host(0 bytes) on " + name_);
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  void* ptr = nullptr;
  EBB_RETURN_IF_ERROR(
      cuda_status(cudaHostAlloc(&ptr, bytes, cudaHostAllocDefault), {"cudaHostAlloc", bytes}));
  std::lock_guard<std::mutex> lock(mu_);
  pinned_.emplace(ptr, bytes);
  return ptr;
}

Status CudaDevice::free_pinned_host(void* ptr) {
  std::size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pinned_.find(ptr);
    if (it == pinned_.end()) {
      return invalid_argument("free_pinned_host(" + hex(ptr) + ") on " + name_ +
                              ": not a live pinned buffer of this device (foreign or freed twice)");
    }
    bytes = it->second;
    pinned_.erase(it);
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  return cuda_status(cudaFreeHost(ptr), {"cudaFreeHost", bytes, ptr});
}

Status CudaDevice::register_host_memory(void* ptr, std::size_t bytes) {
  if (ptr == nullptr || bytes == 0) {
    return invalid_argument("register_host_memory(" + hex(ptr) + ", " + std::to_string(bytes) +
                            " bytes) on " + name_ + ": null pointer or 0 bytes");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!registered_.emplace(ptr, bytes).second) {
      return invalid_argument("register_host_memory(" + hex(ptr) + ") on " + name_ +
                              ": already registered");
    }
  }
  Status s = use_device(ordinal_);
  if (s.ok()) {
    s = cuda_status(cudaHostRegister(ptr, bytes, cudaHostRegisterDefault),
                    {"cudaHostRegister", bytes, ptr});
  }
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    registered_.erase(ptr);
  }
  return s;
}

Status CudaDevice::unregister_host_memory(void* ptr) {
  std::size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = registered_.find(ptr);
    if (it == registered_.end()) {
      return invalid_argument("unregister_host_memory(" + hex(ptr) + ") on " + name_ +
                              ": not registered with this device");
    }
    bytes = it->second;
    registered_.erase(it);
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  return cuda_status(cudaHostUnregister(ptr), {"cudaHostUnregister", bytes, ptr});
}

Result<std::unique_ptr<Stream>> CudaDevice::create_stream() {
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<CudaStream> stream,
                       CudaStream::create(this, ordinal_, next_stream_id_.fetch_add(1)));
  return std::unique_ptr<Stream>(std::move(stream));
}

Result<std::unique_ptr<Event>> CudaDevice::create_event() {
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<CudaEvent> event, CudaEvent::create(this, ordinal_));
  return std::unique_ptr<Event>(std::move(event));
}

Status CudaDevice::synchronize() {
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  return cuda_status(cudaDeviceSynchronize(), {"cudaDeviceSynchronize"});
}

}  // namespace

Result<std::unique_ptr<Device>> create_cuda_device(const DeviceOptions& options) {
  return CudaDevice::create(options);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace ebb
