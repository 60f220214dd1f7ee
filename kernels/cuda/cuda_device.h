// The cuda backend's factory. Plain C++: no CUDA header leaks out of kernels/cuda/.
#pragma once

#include <memory>

#include "kernels/device.h"

namespace ebb {

Result<std::unique_ptr<Device>> create_cuda_device(const DeviceOptions& options);
// Number of visible GPUs; 0 when the driver is missing or reports none.
int cuda_device_count();

}  // namespace ebb
