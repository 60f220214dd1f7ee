#include "kernels/device.h"

#include "kernels/cpu/cpu_device.h"
#include "kernels/sim/sim_device.h"
#if EBB_HAVE_CUDA
#include "kernels/cuda/cuda_device.h"
#endif

namespace ebb {

std::string_view device_kind_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu:
      return "cpu";
    case DeviceKind::kCuda:
      return "cuda";
    case DeviceKind::kSim:
      return "sim";
  }
  return "unknown";
}

std::string_view copy_kind_name(CopyKind kind) {
  switch (kind) {
    case CopyKind::kHostToDevice:
      return "host-to-device";
    case CopyKind::kDeviceToHost:
      return "device-to-host";
    case CopyKind::kDeviceToDevice:
      return "device-to-device";
    case CopyKind::kHostToHost:
      return "host-to-host";
  }
  return "unknown";
}

Result<std::unique_ptr<Device>> create_device(const DeviceOptions& options) {
  switch (options.kind) {
    case DeviceKind::kCpu:
      return create_cpu_device(options);
    case DeviceKind::kCuda:
#if EBB_HAVE_CUDA
      return create_cuda_device(options);
#else
      return unavailable("the CUDA backend was not compiled in (configure with EBB_CUDA=ON)");
#endif
    case DeviceKind::kSim:
      return create_sim_device(options);
  }
  return invalid_argument("unknown device kind");
}

bool cuda_device_present() {
#if EBB_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

}  // namespace ebb
