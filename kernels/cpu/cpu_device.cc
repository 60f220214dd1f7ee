#include "kernels/cpu/cpu_device.h"

#include <atomic>
#include <string>

#include "kernels/cpu/cpu_event.h"
#include "kernels/cpu/cpu_memory.h"
#include "kernels/cpu/cpu_stream.h"
#include "kernels/cpu/memory_device.h"

namespace ebb {
namespace {

// The cpu backend: a simulated accelerator whose device memory is host memory of a fixed
// capacity (CpuMemory) and whose streams are worker threads (CpuStream). Copies between host and
// device are throttled to the modelled links of DeviceOptions, so that overlap and prefetch
// timing can be observed without a GPU.
//
// The default stream is an ordinary stream with id 0: like a CUDA stream created with
// cudaStreamNonBlocking, it does not synchronize implicitly with the other streams.
//
// Ownership: owns its memory, its default stream and the links. Streams and events handed out
// must be destroyed before it (checked for streams); memory left allocated is released.
//
// Thread safety: thread-safe.
class CpuDevice final : public MemoryDevice {
 public:
  explicit CpuDevice(const DeviceOptions& options)
      : MemoryDevice(options, MemoryBacking::kHostMemory),
        host_to_device_(options.host_to_device),
        device_to_host_(options.device_to_host),
        default_stream_(std::make_unique<CpuStream>(0, this, memory_, host_to_device_,
                                                    device_to_host_, streams_)) {}

  ~CpuDevice() override {
    default_stream_.reset();
    EBB_CHECK(streams_.size() == 0, std::to_string(streams_.size()) + " streams of " + name() +
                                        " outlive it; destroy them before the device");
  }

  DeviceKind kind() const override { return DeviceKind::kCpu; }
  std::string name() const override {
    return "cpu (" + capacity_string(memory_.capacity_bytes()) + " simulated)";
  }
  Stream& default_stream() override { return *default_stream_; }
  Result<std::unique_ptr<Stream>> create_stream() override {
    return std::unique_ptr<Stream>(std::make_unique<CpuStream>(
        next_stream_id_.fetch_add(1), this, memory_, host_to_device_, device_to_host_, streams_));
  }
  Result<std::unique_ptr<Event>> create_event() override {
    return std::unique_ptr<Event>(std::make_unique<CpuEvent>(this));
  }
  // Drains every live stream; returns the first sticky kernel error among them, which it
  // clears (an error is returned once, by whichever synchronize sees it first).
  Status synchronize() override { return streams_.synchronize_all(); }

 private:
  // Declaration order is destruction order in reverse: streams go before what they use (and
  // the base's memory outlives every member).
  CpuLink host_to_device_;
  CpuLink device_to_host_;
  StreamSet streams_;
  std::atomic<std::uint32_t> next_stream_id_{1};  // 0 is the default stream
  std::unique_ptr<CpuStream> default_stream_;
};

}  // namespace

Result<std::unique_ptr<Device>> create_cpu_device(const DeviceOptions& options) {
  EBB_RETURN_IF_ERROR(check_memory_device_options(options, "cpu"));
  return std::unique_ptr<Device>(std::make_unique<CpuDevice>(options));
}

}  // namespace ebb
