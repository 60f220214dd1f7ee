// DriverApi: the CUDA driver functions the cuda backend uses (virtual memory management and
// error strings), reached through the runtime's entry-point query rather than by linking
// libcuda.
//
// Why not link CUDA::cuda_driver: a binary with libcuda.so.1 among its needed libraries does not
// start at all on a machine without the NVIDIA driver, and ebb's binaries (tests, benchmarks,
// the CLI) must start everywhere and report the GPU as unavailable. The statically linked
// runtime opens the driver itself when it is present; cudaGetDriverEntryPointByVersion then
// hands out its functions at the ABI of CUDA 12.0 (the typedefs below are those versions).
//
// Thread safety: loaded once, thread-safely, on first use; read-only afterwards.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include "kernels/status.h"

namespace ebb {

struct DriverApi {
  PFN_cuGetErrorName_v6000 cuGetErrorName = nullptr;
  PFN_cuGetErrorString_v6000 cuGetErrorString = nullptr;
  PFN_cuDeviceGet_v2000 cuDeviceGet = nullptr;
  PFN_cuDeviceGetAttribute_v2000 cuDeviceGetAttribute = nullptr;
  PFN_cuMemGetAllocationGranularity_v10020 cuMemGetAllocationGranularity = nullptr;
  PFN_cuMemAddressReserve_v10020 cuMemAddressReserve = nullptr;
  PFN_cuMemAddressFree_v10020 cuMemAddressFree = nullptr;
  PFN_cuMemCreate_v10020 cuMemCreate = nullptr;
  PFN_cuMemRelease_v10020 cuMemRelease = nullptr;
  PFN_cuMemMap_v10020 cuMemMap = nullptr;
  PFN_cuMemUnmap_v10020 cuMemUnmap = nullptr;
  PFN_cuMemSetAccess_v10020 cuMemSetAccess = nullptr;

  // The table, loaded on the first call. kUnavailable (naming the function) when the runtime
  // cannot reach the driver or the driver lacks a function.
  static Result<const DriverApi*> get();
  // The table if get() has already succeeded, else nullptr; never loads. For error messages.
  static const DriverApi* loaded();
};

}  // namespace ebb
