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

Status check_copy_arguments(const CpuMemory& memory, void* dst, const void* src, std::size_t bytes,
                            CopyKind kind, std::string_view backend, std::uint32_t stream_id) {
  auto what = [&] {  // built only on failure: copies are frequent
    return "copy_async (" + std::string(copy_kind_name(kind)) + ", " + std::to_string(bytes) +
           " bytes) on " + std::string(backend) + " stream " + std::to_string(stream_id);
  };
  if (dst == nullptr || src == nullptr) {
    return invalid_argument(what() + ": " + (dst == nullptr ? "dst" : "src") + " is null");
  }
  const bool dst_on_device = kind == CopyKind::kHostToDevice || kind == CopyKind::kDeviceToDevice;
  const bool src_on_device = kind == CopyKind::kDeviceToHost || kind == CopyKind::kDeviceToDevice;
  if (dst_on_device) {
    if (Status s = memory.check_device_range(dst, bytes); !s.ok()) {
      return invalid_argument(what() + ": dst " + s.message());
    }
  }
  if (src_on_device) {
    if (Status s = memory.check_device_range(src, bytes); !s.ok()) {
      return invalid_argument(what() + ": src " + s.message());
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
