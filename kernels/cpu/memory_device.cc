#include "kernels/cpu/memory_device.h"

#include <cstdio>

namespace ebb {

Status check_memory_device_options(const DeviceOptions& options, std::string_view backend) {
  if (options.capacity_bytes == 0) {
    return invalid_argument(std::string(backend) + " device of capacity 0 bytes");
  }
  EBB_RETURN_IF_ERROR(CpuMemory::check_page_bytes(options.page_bytes));
  for (const LinkModel* link : {&options.host_to_device, &options.device_to_host}) {
    if (!(link->bytes_per_second >= 0) || link->latency.count() < 0) {  // NaN fails too
      return invalid_argument(std::string(backend) +
                              " device link model with negative bandwidth or latency");
    }
  }
  return ok_status();
}

std::string capacity_string(std::size_t bytes) {
  const char* unit = "bytes";
  double value = static_cast<double>(bytes);
  if (bytes >= kGiB) {
    unit = "GiB";
    value /= static_cast<double>(kGiB);
  } else if (bytes >= kMiB) {
    unit = "MiB";
    value /= static_cast<double>(kMiB);
  } else if (bytes >= kKiB) {
    unit = "KiB";
    value /= static_cast<double>(kKiB);
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f %s", value, unit);
  return buf;
}

}  // namespace ebb
