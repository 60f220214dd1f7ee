#include "kernels/cuda/cuda_call.h"

#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_driver.h"

namespace ebb {
namespace {

// "cuMemMap(0x7f0000000000, 2097152 bytes)".
std::string describe(const CudaCall& call) {
  std::string text = call.name;
  text += '(';
  if (call.address != nullptr) {
    char address[32];
    std::snprintf(address, sizeof(address), "%p", call.address);
    text += address;
    if (call.bytes != 0) text += ", ";
  }
  if (call.bytes != 0) text += std::to_string(call.bytes) + " bytes";
  text += ')';
  return text;
}

}  // namespace

Status cuda_failure(cudaError_t error, const CudaCall& call) {
  // Clears the per-thread last error (a sticky error, one that broke the context, stays and is
  // reported by every later call, which is what the caller needs to see).
  (void)cudaGetLastError();
  std::string message =
      describe(call) + " failed: " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error);
  if (error == cudaErrorMemoryAllocation) return out_of_memory(std::move(message));
  return internal_error(std::move(message));
}

Status cuda_failure(CUresult result, const CudaCall& call) {
  const char* name = nullptr;
  const char* words = nullptr;
  if (const DriverApi* driver = DriverApi::loaded()) {
    driver->cuGetErrorName(result, &name);
    driver->cuGetErrorString(result, &words);
  }
  std::string message = describe(call) + " failed: ";
  message += name != nullptr ? name : "CUresult " + std::to_string(static_cast<int>(result));
  message += ": ";
  message += words != nullptr ? words : "(no description: the driver table is not loaded)";
  if (result == CUDA_ERROR_OUT_OF_MEMORY) return out_of_memory(std::move(message));
  return internal_error(std::move(message));
}

}  // namespace ebb
