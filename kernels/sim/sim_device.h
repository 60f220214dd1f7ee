// The sim backend: a simulated device for workloads far larger than this machine.
//
// Device memory is address space only (CpuMemory with MemoryBacking::kAddressSpaceOnly): the
// capacity can pass the machine's RAM, allocation and page mapping follow the cpu backend's
// rules and errors exactly, and any host access to device memory faults. Nothing is computed or
// copied: a kernel closure is accounted, never run, and a copy moves no bytes. Instead each
// device has a virtual clock (see SimClock in kernels/sim/sim_stream.h): a launch occupies its
// stream for the cost given to Stream::launch(kernel, cost), a host<->device copy occupies its
// stream and its direction's link for latency + bytes / bandwidth, and the host-visible time
// advances only when the host waits (a synchronize). So the engine and allocator run on it
// unchanged, and simulated_time() reads what the workload would take on the modelled device.
#pragma once

#include <chrono>
#include <memory>

#include "kernels/device.h"

namespace ebb {

// A sim device built from options (capacity_bytes, page_bytes, host_to_device, device_to_host;
// kind and ordinal are ignored). kInvalidArgument for a zero capacity, a bad page size or a
// negative link model, as create_cpu_device.
Result<std::unique_ptr<Device>> create_sim_device(const DeviceOptions& options);

// The virtual host-visible time of a sim device: how long the work the host has waited for took
// since the device was created. kInvalidArgument when `device` is not a sim device.
Result<std::chrono::nanoseconds> simulated_time(Device& device);

// The host works for `duration` (a modelled CPU step of the optimizer, say): the host-visible
// time advances by it, so that work the host enqueues afterwards starts no earlier; streams keep
// running meanwhile. kInvalidArgument when `device` is not a sim device or `duration` < 0.
Status simulate_host_work(Device& device, std::chrono::nanoseconds duration);

}  // namespace ebb
