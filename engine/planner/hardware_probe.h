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

// The optimizer step's speed, for placing its state (engine/planner/state_placement.h): bytes of
// state (an fp32 parameter and AdamW's two moments, 12 B per element) updated per second by
// AdamW over 4 Mi elements, the median of a few steps. On `device`, as its own kernels run it
// (buffers of 64 MiB on the device, returned before it does); on the host, by the cpu kernels
// over pageable memory, as a host placement's step runs.
Result<double> measure_device_optimizer_bytes_per_s(Device& device);
double measure_host_optimizer_bytes_per_s();

}  // namespace ebb
