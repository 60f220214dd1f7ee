// CudaStream and CudaEvent: the cuda backend's Stream and Event, thin wrappers over a
// cudaStream_t (non-blocking: never implicitly ordered with the legacy NULL stream) and a
// cudaEvent_t (timing enabled).
//
// Each object remembers the Device that made it (`owner`, an identity only, never dereferenced),
// so that an event of another Device, even another cuda Device on the same GPU, is refused as the
// interface requires rather than silently accepted by CUDA.
//
// Internal to kernels/cuda/. Ownership: each object owns its CUDA handle and destroys it; the
// CudaDevice that made it must outlive it. Thread safety: thread-safe (CUDA's stream and event
// calls are; the only state kept here is an atomic flag).
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "kernels/device.h"

namespace ebb {

class CudaEvent final : public Event {
 public:
  static Result<std::unique_ptr<CudaEvent>> create(const void* owner, int ordinal);
  ~CudaEvent() override;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  Result<bool> query() override;
  Status synchronize() override;
  // kFailedPrecondition when either event was never recorded or has not completed;
  // kInvalidArgument when `start` is not an event of the same Device.
  Result<double> elapsed_ms_since(Event& start) override;

  cudaEvent_t native() const { return event_; }
  const void* owner() const { return owner_; }
  // Called by CudaStream::record once cudaEventRecord has succeeded.
  void mark_recorded() { recorded_.store(true, std::memory_order_release); }
  bool recorded() const { return recorded_.load(std::memory_order_acquire); }

 private:
  CudaEvent(const void* owner, int ordinal, cudaEvent_t event)
      : owner_(owner), ordinal_(ordinal), event_(event) {}

  const void* const owner_;
  const int ordinal_;
  const cudaEvent_t event_;
  std::atomic<bool> recorded_{false};
};

class CudaStream final : public Stream {
 public:
  static Result<std::unique_ptr<CudaStream>> create(const void* owner, int ordinal,
                                                    std::uint32_t id);
  ~CudaStream() override;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  std::uint32_t id() const override { return id_; }
  Status copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) override;
  Status memset_async(void* dst, std::uint8_t value, std::size_t bytes) override;
  // Runs `kernel` on the calling thread with this stream as LaunchContext::native_stream, then
  // reports a launch error the closure left behind (cudaGetLastError).
  Status launch(Kernel kernel) override;
  Status record(Event& event) override;
  Status wait(Event& event) override;
  Status synchronize() override;
  Result<bool> query() override;

  cudaStream_t native() const { return stream_; }

 private:
  CudaStream(const void* owner, int ordinal, std::uint32_t id, cudaStream_t stream)
      : owner_(owner), ordinal_(ordinal), id_(id), stream_(stream) {}

  const void* const owner_;
  const int ordinal_;
  const std::uint32_t id_;
  const cudaStream_t stream_;
};

// The CudaEvent behind `event`, or kInvalidArgument naming `call` when it belongs to another
// backend or another Device than `owner`.
Result<CudaEvent*> as_own_event(Event& event, const void* owner, const char* call);

}  // namespace ebb
