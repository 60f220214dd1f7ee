// cuda_status(): turns a CUDA runtime or driver result into a Status that names the call, the
// size and address involved, and CUDA's own words for the error, e.g.
//   "cudaMalloc(268435456 bytes) failed: cudaErrorMemoryAllocation: out of memory".
//
// Every CUDA call in kernels/cuda goes through it, so that each failure a caller sees reads the
// same way. Out-of-memory results become kOutOfMemory, every other failure kInternal. The
// success path is inline and builds no string.
//
// Internal to kernels/cuda/: it includes CUDA headers, which nothing above kernels/ may see.
//
// Thread safety: thread-safe.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/status.h"

namespace ebb {

// What a failed call was doing, for the message.
struct CudaCall {
  const char* name;               // the CUDA function, e.g. "cudaMalloc"
  std::size_t bytes = 0;          // the size involved; 0 when none
  const void* address = nullptr;  // the pointer involved; nullptr when none
};

// The slow halves: build the message. A runtime failure also clears the thread's last-error
// slot, so that a later cudaGetLastError() (after a kernel launch) does not report it again.
Status cuda_failure(cudaError_t error, const CudaCall& call);
Status cuda_failure(CUresult result, const CudaCall& call);

inline Status cuda_status(cudaError_t error, const CudaCall& call) {
  if (error == cudaSuccess) [[likely]]
    return Status();
  return cuda_failure(error, call);
}

inline Status cuda_status(CUresult result, const CudaCall& call) {
  if (result == CUDA_SUCCESS) [[likely]]
    return Status();
  return cuda_failure(result, call);
}

// Makes GPU `ordinal` current on the calling thread (and leaves it current): every entry point
// of the backend starts with it, since the runtime's current device is per thread.
inline Status use_device(int ordinal) {
  return cuda_status(cudaSetDevice(ordinal), {"cudaSetDevice"});
}

}  // namespace ebb
