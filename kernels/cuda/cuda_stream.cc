#include "kernels/cuda/cuda_stream.h"

#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_call.h"

namespace ebb {
namespace {

cudaMemcpyKind native_copy_kind(CopyKind kind) {
  switch (kind) {
    case CopyKind::kHostToDevice:
      return cudaMemcpyHostToDevice;
    case CopyKind::kDeviceToHost:
      return cudaMemcpyDeviceToHost;
    case CopyKind::kDeviceToDevice:
      return cudaMemcpyDeviceToDevice;
    case CopyKind::kHostToHost:
      return cudaMemcpyHostToHost;
  }
  return cudaMemcpyDefault;
}

// Destructors cannot return a Status; a failure there means the context is already broken.
void report_destroy_failure(cudaError_t error, const char* call) {
  if (error == cudaSuccess || error == cudaErrorCudartUnloading) return;
  std::fprintf(stderr, "ebb: %s\n", cuda_failure(error, {call}).to_string().c_str());
}

}  // namespace

Result<CudaEvent*> as_own_event(Event& event, const void* owner, const char* call) {
  auto* cuda_event = dynamic_cast<CudaEvent*>(&event);
  if (cuda_event == nullptr) {
    return invalid_argument(std::string(call) + ": the event belongs to another backend");
  }
  if (cuda_event->owner() != owner) {
    return invalid_argument(std::string(call) + ": the event belongs to another Device");
  }
  return cuda_event;
}

// --- CudaEvent -----------------------------------------------------------------------------

Result<std::unique_ptr<CudaEvent>> CudaEvent::create(const void* owner, int ordinal) {
  EBB_RETURN_IF_ERROR(use_device(ordinal));
  cudaEvent_t event = nullptr;
  EBB_RETURN_IF_ERROR(
      cuda_status(cudaEventCreateWithFlags(&event, cudaEventDefault), {"cudaEventCreate"}));
  return std::unique_ptr<CudaEvent>(new CudaEvent(owner, ordinal, event));
}

CudaEvent::~CudaEvent() {
  (void)cudaSetDevice(ordinal_);
  report_destroy_failure(cudaEventDestroy(event_), "cudaEventDestroy");
}

Result<bool> CudaEvent::query() {
  cudaError_t error = cudaEventQuery(event_);
  if (error == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error to report later
    return false;
  }
  EBB_RETURN_IF_ERROR(cuda_status(error, {"cudaEventQuery", 0, event_}));
  return true;
}

Status CudaEvent::synchronize() {
  return cuda_status(cudaEventSynchronize(event_), {"cudaEventSynchronize", 0, event_});
}

Result<double> CudaEvent::elapsed_ms_since(Event& start) {
  EBB_ASSIGN_OR_RETURN(CudaEvent * begin, as_own_event(start, owner_, "elapsed_ms_since"));
  if (!begin->recorded() || !recorded()) {
    return failed_precondition(std::string("elapsed_ms_since: the ") +
                               (begin->recorded() ? "end" : "start") + " event was never recorded");
  }
  float ms = 0;
  cudaError_t error = cudaEventElapsedTime(&ms, begin->event_, event_);
  if (error == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return failed_precondition("elapsed_ms_since: an event has not completed yet");
  }
  EBB_RETURN_IF_ERROR(cuda_status(error, {"cudaEventElapsedTime", 0, event_}));
  return static_cast<double>(ms);
}

// --- CudaStream ----------------------------------------------------------------------------

Result<std::unique_ptr<CudaStream>> CudaStream::create(const void* owner, int ordinal,
                                                       std::uint32_t id) {
  EBB_RETURN_IF_ERROR(use_device(ordinal));
  cudaStream_t stream = nullptr;
  EBB_RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                  {"cudaStreamCreateWithFlags"}));
  return std::unique_ptr<CudaStream>(new CudaStream(owner, ordinal, id, stream));
}

CudaStream::~CudaStream() {
  (void)cudaSetDevice(ordinal_);
  // Work still queued completes; CUDA frees the stream afterwards.
  report_destroy_failure(cudaStreamDestroy(stream_), "cudaStreamDestroy");
}

Status CudaStream::copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) {
  if (bytes == 0) return Status();
  if (dst == nullptr || src == nullptr) {
    return invalid_argument("copy_async(" + std::to_string(bytes) + " bytes, " +
                            std::string(copy_kind_name(kind)) + ") on stream " +
                            std::to_string(id_) + ": null " + (dst == nullptr ? "dst" : "src"));
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  return cuda_status(cudaMemcpyAsync(dst, src, bytes, native_copy_kind(kind), stream_),
                     {"cudaMemcpyAsync", bytes, dst});
}

Status CudaStream::memset_async(void* dst, std::uint8_t value, std::size_t bytes) {
  if (bytes == 0) return Status();
  if (dst == nullptr) {
    return invalid_argument("memset_async(" + std::to_string(bytes) + " bytes) on stream " +
                            std::to_string(id_) + ": null dst");
  }
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  return cuda_status(cudaMemsetAsync(dst, value, bytes, stream_), {"cudaMemsetAsync", bytes, dst});
}

Status CudaStream::launch(Kernel kernel) {
  if (!kernel) return invalid_argument("launch on stream " + std::to_string(id_) + ": no kernel");
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  kernel(LaunchContext{DeviceKind::kCuda, static_cast<void*>(stream_)});
  return cuda_status(cudaGetLastError(), {"kernel launch (cudaGetLastError)"});
}

Status CudaStream::record(Event& event) {
  EBB_ASSIGN_OR_RETURN(CudaEvent * cuda_event, as_own_event(event, owner_, "record"));
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  EBB_RETURN_IF_ERROR(cuda_status(cudaEventRecord(cuda_event->native(), stream_),
                                  {"cudaEventRecord", 0, cuda_event->native()}));
  cuda_event->mark_recorded();
  return Status();
}

Status CudaStream::wait(Event& event) {
  EBB_ASSIGN_OR_RETURN(CudaEvent * cuda_event, as_own_event(event, owner_, "wait"));
  EBB_RETURN_IF_ERROR(use_device(ordinal_));
  // A never-recorded event imposes no wait, in CUDA as in the interface.
  return cuda_status(cudaStreamWaitEvent(stream_, cuda_event->native(), 0),
                     {"cudaStreamWaitEvent", 0, cuda_event->native()});
}

Status CudaStream::synchronize() {
  return cuda_status(cudaStreamSynchronize(stream_), {"cudaStreamSynchronize", 0, stream_});
}

Result<bool> CudaStream::query() {
  cudaError_t error = cudaStreamQuery(stream_);
  if (error == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  EBB_RETURN_IF_ERROR(cuda_status(error, {"cudaStreamQuery", 0, stream_}));
  return true;
}

}  // namespace ebb
