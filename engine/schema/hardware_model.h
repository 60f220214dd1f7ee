// HardwareModel: the machine a plan is made for, beside the profile's measured op times: the
// host link each way, its latency and whether it is duplex, the NVMe tier's bandwidth and the
// device's page size. Read from a hardware profile (profiles/hw/*.json, format in
// profiles/README.md), measured at start-up (engine/planner/hardware_probe.h), or made for a
// modelled link (engine/planner/simulator.h).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "kernels/status.h"

namespace ebb {

// The machine a plan is made for: compute comes from the profile's measured op times; the rest
// from here. Read from profiles/hw/NAME.json or measured at start-up.
struct HardwareModel {
  std::string name;                       // "h100-sxm", "cpu-modelled", "measured"
  double host_to_device_bytes_per_s = 0;  // 0: no host link (swap is not allowed)
  double device_to_host_bytes_per_s = 0;
  std::chrono::nanoseconds link_latency{0};  // per copy, each direction
  bool duplex = true;  // false: the two directions share one link and queue behind each other
  double nvme_read_bytes_per_s = 0;  // 0: no NVMe tier
  double nvme_write_bytes_per_s = 0;
  // The device's memory mapping granularity, which the allocator's expandable segments map
  // pages of (2 MiB on CUDA; the trainer's cpu device uses 64 KiB). 0: 2 MiB.
  std::size_t page_bytes = 0;

  bool has_host_link() const {
    return host_to_device_bytes_per_s > 0 && device_to_host_bytes_per_s > 0;
  }
  friend bool operator==(const HardwareModel&, const HardwareModel&) = default;
};

// JSON hardware profile (profiles/README.md, "The hardware profile format"). A missing field, a
// negative or non-finite bandwidth, or a swap-capable model with one direction at 0 is
// kInvalidArgument naming source_name and the field.
Result<HardwareModel> hardware_model_from_json(std::string_view text,
                                               const std::string& source_name);
std::string hardware_model_to_json(const HardwareModel& model);
Result<HardwareModel> read_hardware_model(const std::string& path);

}  // namespace ebb
