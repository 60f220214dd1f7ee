#include "engine/planner/hardware_probe.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "kernels/optim.h"
#include "kernels/statistics.h"

namespace ebb {
namespace {

constexpr std::size_t kLargeCopyBytes = 8 * kMiB;
constexpr std::size_t kSmallCopyBytes = 4 * kKiB;
constexpr int kRepetitions = 7;

// The median time of `kRepetitions` copies of `bytes` in direction `kind`, in seconds.
Result<double> median_copy_seconds(Stream& stream, Event& start, Event& end, void* device_ptr,
                                   void* host_ptr, std::size_t bytes, CopyKind kind) {
  std::vector<double> seconds;
  for (int i = 0; i < kRepetitions; ++i) {
    EBB_RETURN_IF_ERROR(stream.record(start));
    if (kind == CopyKind::kHostToDevice) {
      EBB_RETURN_IF_ERROR(stream.copy_async(device_ptr, host_ptr, bytes, kind));
    } else {
      EBB_RETURN_IF_ERROR(stream.copy_async(host_ptr, device_ptr, bytes, kind));
    }
    EBB_RETURN_IF_ERROR(stream.record(end));
    EBB_RETURN_IF_ERROR(end.synchronize());
    EBB_ASSIGN_OR_RETURN(double ms, end.elapsed_ms_since(start));
    seconds.push_back(ms * 1e-3);
  }
  return median(std::move(seconds));
}

// The optimizer probes' step: AdamW over fp32 parameters (no master) of kOptimizerElements.
constexpr std::int64_t kOptimizerElements = std::int64_t{4} << 20;
constexpr double kOptimizerStateBytes = 12.0 * kOptimizerElements;  // parameter, m, v

void probe_step(const LaunchContext& ctx, float* param, float* m, float* v, const float* grad) {
  optim::AdamWStep step;
  optim::adamw(ctx, nn::FloatType::kF32, param, nullptr, m, v, nn::FloatType::kF32, grad,
               kOptimizerElements, step);
}

}  // namespace

Result<double> measure_device_optimizer_bytes_per_s(Device& device) {
  const auto bytes = static_cast<std::size_t>(kOptimizerElements) * sizeof(float);
  EBB_ASSIGN_OR_RETURN(void* base, device.allocate(4 * bytes));
  auto* param = static_cast<float*>(base);
  float* m = param + kOptimizerElements;
  float* v = m + kOptimizerElements;
  const float* grad = v + kOptimizerElements;
  Result<double> seconds = [&]() -> Result<double> {
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Stream> stream, device.create_stream());
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Event> start, device.create_event());
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Event> end, device.create_event());
    EBB_RETURN_IF_ERROR(stream->memset_async(base, 0, 4 * bytes));
    std::vector<double> times;
    for (int i = 0; i < kRepetitions; ++i) {
      EBB_RETURN_IF_ERROR(stream->record(*start));
      EBB_RETURN_IF_ERROR(
          stream->launch([=](const LaunchContext& ctx) { probe_step(ctx, param, m, v, grad); }));
      EBB_RETURN_IF_ERROR(stream->record(*end));
      EBB_RETURN_IF_ERROR(end->synchronize());
      EBB_ASSIGN_OR_RETURN(double ms, end->elapsed_ms_since(*start));
      times.push_back(ms * 1e-3);
    }
    return median(std::move(times));
  }();
  (void)device.free(base);
  if (!seconds.ok()) return seconds.status();
  return kOptimizerStateBytes / std::max(*seconds, 1e-9);
}

double measure_host_optimizer_bytes_per_s() {
  std::vector<float> buffers(4 * static_cast<std::size_t>(kOptimizerElements), 0.0F);
  float* param = buffers.data();
  float* m = param + kOptimizerElements;
  float* v = m + kOptimizerElements;
  const float* grad = v + kOptimizerElements;
  const LaunchContext cpu{.kind = DeviceKind::kCpu, .native_stream = nullptr};
  std::vector<double> times;
  for (int i = 0; i < kRepetitions; ++i) {
    const auto start = std::chrono::steady_clock::now();
    probe_step(cpu, param, m, v, grad);
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return kOptimizerStateBytes / std::max(median(std::move(times)), 1e-9);
}

Result<HardwareModel> measure_host_link(Device& device) {
  EBB_ASSIGN_OR_RETURN(void* device_ptr, device.allocate(kLargeCopyBytes));
  Result<void*> host = device.allocate_pinned_host(kLargeCopyBytes);
  if (!host.ok()) {
    (void)device.free(device_ptr);
    return host.status();
  }
  HardwareModel model;
  model.name = "measured on " + device.name();
  model.duplex = true;
  model.page_bytes = device.page_bytes();
  Status status = [&]() -> Status {
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Stream> stream, device.create_stream());
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Event> start, device.create_event());
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Event> end, device.create_event());
    EBB_RETURN_IF_ERROR(stream->memset_async(device_ptr, 0, kLargeCopyBytes));
    double latency_s = 0;
    for (CopyKind kind : {CopyKind::kHostToDevice, CopyKind::kDeviceToHost}) {
      EBB_ASSIGN_OR_RETURN(double small, median_copy_seconds(*stream, *start, *end, device_ptr,
                                                             *host, kSmallCopyBytes, kind));
      EBB_ASSIGN_OR_RETURN(double large, median_copy_seconds(*stream, *start, *end, device_ptr,
                                                             *host, kLargeCopyBytes, kind));
      // Bandwidth from the difference, so that the per-copy latency does not count against it.
      const double bytes_per_s =
          static_cast<double>(kLargeCopyBytes - kSmallCopyBytes) / std::max(large - small, 1e-9);
      if (kind == CopyKind::kHostToDevice) {
        model.host_to_device_bytes_per_s = bytes_per_s;
      } else {
        model.device_to_host_bytes_per_s = bytes_per_s;
      }
      latency_s = std::max(latency_s, small);
    }
    model.link_latency = std::chrono::nanoseconds(static_cast<std::int64_t>(latency_s * 1e9));
    return stream->synchronize();
  }();
  (void)device.free_pinned_host(*host);
  (void)device.free(device_ptr);
  EBB_RETURN_IF_ERROR(status);
  return model;
}

}  // namespace ebb
