#include "kernels/sim/sim_device.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

#include "kernels/cpu/cpu_memory.h"
#include "kernels/cpu/memory_device.h"
#include "kernels/sim/sim_stream.h"

namespace ebb {
namespace {

// "h2d 25.0 GB/s", "h2d 25.0 GB/s + 5.0 us", "h2d unthrottled".
std::string link_string(const char* direction, const LinkModel& link) {
  char buf[96];
  const double latency_us = std::chrono::duration<double, std::micro>(link.latency).count();
  if (link.bytes_per_second > 0) {
    std::snprintf(buf, sizeof(buf), "%s %.1f GB/s", direction, link.bytes_per_second / 1e9);
  } else {
    std::snprintf(buf, sizeof(buf), "%s unthrottled", direction);
  }
  std::string text = buf;
  if (latency_us > 0) {
    std::snprintf(buf, sizeof(buf), " + %.1f us", latency_us);
    text += buf;
  }
  return text;
}

// The sim backend (see sim_device.h): CpuMemory without bytes behind it for memory, SimClock
// for time. The default stream is an ordinary stream with id 0, as on cpu.
//
// Ownership: owns its memory, its clock and its default stream. Streams and events handed out
// must be destroyed before it (checked for streams); memory left allocated is released.
//
// Thread safety: thread-safe.
class SimDevice final : public MemoryDevice {
 public:
  explicit SimDevice(const DeviceOptions& options)
      : MemoryDevice(options, MemoryBacking::kAddressSpaceOnly),
        clock_(options.host_to_device, options.device_to_host),
        name_("sim (" + capacity_string(options.capacity_bytes) + ", " +
              link_string("h2d", options.host_to_device) + ", " +
              link_string("d2h", options.device_to_host) + ")"),
        default_stream_(std::make_unique<SimStream>(0, this, memory_, clock_)) {}

  ~SimDevice() override {
    default_stream_.reset();
    EBB_CHECK(clock_.stream_count() == 0, std::to_string(clock_.stream_count()) + " streams of " +
                                              name_ +
                                              " outlive it; destroy them before the device");
  }

  DeviceKind kind() const override { return DeviceKind::kSim; }
  std::string name() const override { return name_; }
  Stream& default_stream() override { return *default_stream_; }
  Result<std::unique_ptr<Stream>> create_stream() override {
    return std::unique_ptr<Stream>(
        std::make_unique<SimStream>(next_stream_id_.fetch_add(1), this, memory_, clock_));
  }
  Result<std::unique_ptr<Event>> create_event() override {
    return std::unique_ptr<Event>(std::make_unique<SimEvent>(this, clock_));
  }
  Status synchronize() override {
    clock_.synchronize_all();
    return ok_status();
  }

  std::chrono::nanoseconds now() const { return clock_.now(); }
  void host_work(std::chrono::nanoseconds duration) { clock_.advance(duration); }

 private:
  // Declaration order is destruction order in reverse: streams go before what they use (and
  // the base's memory outlives every member).
  SimClock clock_;
  const std::string name_;
  std::atomic<std::uint32_t> next_stream_id_{1};  // 0 is the default stream
  std::unique_ptr<SimStream> default_stream_;
};

}  // namespace

Result<std::unique_ptr<Device>> create_sim_device(const DeviceOptions& options) {
  EBB_RETURN_IF_ERROR(check_memory_device_options(options, "sim"));
  return std::unique_ptr<Device>(std::make_unique<SimDevice>(options));
}

Result<std::chrono::nanoseconds> simulated_time(Device& device) {
  auto* sim = dynamic_cast<SimDevice*>(&device);
  if (sim == nullptr) {
    return invalid_argument("simulated_time of " + device.name() + ": not a sim device");
  }
  return sim->now();
}

Status simulate_host_work(Device& device, std::chrono::nanoseconds duration) {
  auto* sim = dynamic_cast<SimDevice*>(&device);
  if (sim == nullptr) {
    return invalid_argument("simulate_host_work on " + device.name() + ": not a sim device");
  }
  if (duration < std::chrono::nanoseconds::zero()) {
    return invalid_argument("simulate_host_work of " + std::to_string(duration.count()) +
                            " ns: negative");
  }
  sim->host_work(duration);
  return ok_status();
}

}  // namespace ebb
