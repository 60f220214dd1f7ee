// Measures the host link of a device at start-up, for the planner's HardwareModel when no
// hardware profile (profiles/hw/) is given: pinned host <-> device copies of a few sizes on one
// stream, timed with the device's events, so that a throttled cpu device, a GPU's PCIe or
// NVLink-C2C link and a sim device's modelled link are all measured the same way.
//
// Thread safety: uses its own stream and buffers; the device may be shared.
#pragma once

#include "engine/schema/plan.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

// Bandwidth each way from 8 MiB copies (the median of a few), latency from 4 KiB copies; duplex
// is assumed (the directions are measured apart). Takes about 30 copies of each size; the
// buffers (8 MiB of device memory, 8 MiB pinned) are returned before it does. Errors from the
// device are returned as they are.
Result<HardwareModel> measure_host_link(Device& device);

}  // namespace ebb
