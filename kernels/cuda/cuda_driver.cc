#include "kernels/cuda/cuda_driver.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <string>

namespace ebb {
namespace {

// The driver ABI the typedefs in cuda_driver.h describe.
constexpr unsigned int kDriverAbiVersion = 12000;  // CUDA 12.0

template <typename Fn>
Status load_function(const char* symbol, Fn& fn) {
  void* address = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  cudaError_t error = cudaGetDriverEntryPointByVersion(symbol, &address, kDriverAbiVersion,
                                                       cudaEnableDefault, &found);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return unavailable(std::string("cudaGetDriverEntryPointByVersion(") + symbol +
                       ") failed: " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error));
  }
  if (found != cudaDriverEntryPointSuccess || address == nullptr) {
    return unavailable(std::string("the CUDA driver has no ") + symbol + " at the CUDA " +
                       std::to_string(kDriverAbiVersion / 1000) + "." +
                       std::to_string(kDriverAbiVersion % 1000 / 10) + " ABI (query result " +
                       std::to_string(static_cast<int>(found)) + ")");
  }
  fn = reinterpret_cast<Fn>(address);
  return Status();
}

Status load_all(DriverApi& api) {
  EBB_RETURN_IF_ERROR(load_function("cuGetErrorName", api.cuGetErrorName));
  EBB_RETURN_IF_ERROR(load_function("cuGetErrorString", api.cuGetErrorString));
  EBB_RETURN_IF_ERROR(load_function("cuDeviceGet", api.cuDeviceGet));
  EBB_RETURN_IF_ERROR(load_function("cuDeviceGetAttribute", api.cuDeviceGetAttribute));
  EBB_RETURN_IF_ERROR(
      load_function("cuMemGetAllocationGranularity", api.cuMemGetAllocationGranularity));
  EBB_RETURN_IF_ERROR(load_function("cuMemAddressReserve", api.cuMemAddressReserve));
  EBB_RETURN_IF_ERROR(load_function("cuMemAddressFree", api.cuMemAddressFree));
  EBB_RETURN_IF_ERROR(load_function("cuMemCreate", api.cuMemCreate));
  EBB_RETURN_IF_ERROR(load_function("cuMemRelease", api.cuMemRelease));
  EBB_RETURN_IF_ERROR(load_function("cuMemMap", api.cuMemMap));
  EBB_RETURN_IF_ERROR(load_function("cuMemUnmap", api.cuMemUnmap));
  EBB_RETURN_IF_ERROR(load_function("cuMemSetAccess", api.cuMemSetAccess));
  return Status();
}

struct LoadedTable {
  DriverApi api;
  Status status;
};

std::atomic<const DriverApi*> loaded_table{nullptr};

const LoadedTable& table() {
  static const LoadedTable* const kLoaded = [] {
    auto* t = new LoadedTable;  // never freed: error messages may need it during exit
    t->status = load_all(t->api);
    if (t->status.ok()) loaded_table.store(&t->api, std::memory_order_release);
    return t;
  }();
  return *kLoaded;
}

}  // namespace

Result<const DriverApi*> DriverApi::get() {
  const LoadedTable& t = table();
  if (!t.status.ok()) return t.status;
  return &t.api;
}

const DriverApi* DriverApi::loaded() { return loaded_table.load(std::memory_order_acquire); }

}  // namespace ebb
