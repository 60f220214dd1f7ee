// The cpu backend's factory. See kernels/cpu/cpu_device.cc for the backend itself.
#pragma once

#include <memory>

#include "kernels/device.h"

namespace ebb {

Result<std::unique_ptr<Device>> create_cpu_device(const DeviceOptions& options);

}  // namespace ebb
