#include "kernels/cpu/cpu_device.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "kernels/cpu/cpu_event.h"
#include "kernels/cpu/cpu_memory.h"
#include "kernels/cpu/cpu_stream.h"

namespace ebb {
namespace {

// "1.00 GiB": the capacity in the largest unit that keeps it at least 1.
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
class CpuDevice final : public Device {
 public:
  explicit CpuDevice(const DeviceOptions& options)
      : memory_(options.capacity_bytes, options.page_bytes),
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
  std::size_t capacity_bytes() const override { return memory_.capacity_bytes(); }
  std::size_t committed_bytes() const override { return memory_.committed_bytes(); }

  Result<void*> allocate(std::size_t bytes) override { return memory_.allocate(bytes); }
  Status free(void* ptr) override { return memory_.free(ptr); }

  std::size_t page_bytes() const override { return memory_.page_bytes(); }
  Result<void*> reserve_range(std::size_t bytes) override { return memory_.reserve_range(bytes); }
  Status release_range(void* base, std::size_t bytes) override {
    return memory_.release_range(base, bytes);
  }
  Status map_pages(void* addr, std::size_t bytes) override {
    return memory_.map_pages(addr, bytes);
  }
  Status unmap_pages(void* addr, std::size_t bytes) override {
    return memory_.unmap_pages(addr, bytes);
  }

  Result<void*> allocate_pinned_host(std::size_t bytes) override {
    return memory_.allocate_pinned_host(bytes);
  }
  Status free_pinned_host(void* ptr) override { return memory_.free_pinned_host(ptr); }

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
  // Declaration order is destruction order in reverse: streams go before what they use.
  CpuMemory memory_;
  CpuLink host_to_device_;
  CpuLink device_to_host_;
  StreamSet streams_;
  std::atomic<std::uint32_t> next_stream_id_{1};  // 0 is the default stream
  std::unique_ptr<CpuStream> default_stream_;
};

}  // namespace

Result<std::unique_ptr<Device>> create_cpu_device(const DeviceOptions& options) {
  if (options.capacity_bytes == 0) return invalid_argument("cpu device of capacity 0 bytes");
  EBB_RETURN_IF_ERROR(CpuMemory::check_page_bytes(options.page_bytes));
  for (const LinkModel* link : {&options.host_to_device, &options.device_to_host}) {
    if (!(link->bytes_per_second >= 0) || link->latency.count() < 0) {  // NaN fails too
      return invalid_argument("cpu device link model with negative bandwidth or latency");
    }
  }
  return std::unique_ptr<Device>(std::make_unique<CpuDevice>(options));
}

}  // namespace ebb
