// Tests of the cuda backend: the shared DeviceConformance suite on a cuda device, and what is
// particular to cuda (error messages that name the CUDA call and size, the driver's page
// granularity, the native stream handed to kernels, page-granular unmapping of mapped runs).
// Every test skips itself where no GPU is visible, so the binary runs everywhere.
#include "kernels/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/device.h"
#include "tests/kernels/device_conformance.h"

namespace ebb {
namespace {

constexpr std::size_t kTestCapacityBytes = 64 * kMiB;

Result<std::unique_ptr<Device>> create_test_device() {
  DeviceOptions options;
  options.kind = DeviceKind::kCuda;
  options.capacity_bytes = kTestCapacityBytes;
  return create_device(options);
}

INSTANTIATE_TEST_SUITE_P(Cuda, DeviceConformance,
                         ::testing::Values(DeviceFactory{"cuda", create_test_device}),
                         device_factory_name);

// Holds a stream's later work back by `ms` milliseconds: a host function that sleeps, queued on
// the stream through launch(). Lets a test see work still pending without a device kernel.
Status delay_stream(Stream& stream, int ms) {
  static constexpr auto sleep_ms = [](void* arg) {
    std::this_thread::sleep_for(std::chrono::milliseconds(reinterpret_cast<std::intptr_t>(arg)));
  };
  return stream.launch([ms](const LaunchContext& context) {
    (void)cudaLaunchHostFunc(static_cast<cudaStream_t>(context.native_stream), sleep_ms,
                             reinterpret_cast<void*>(static_cast<std::intptr_t>(ms)));
  });
}

class CudaDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) {
      GTEST_SKIP() << "no CUDA GPU is visible: " << create_test_device().status().message();
    }
    EBB_ASSERT_OK_AND_ASSIGN(device_, create_test_device());
  }

  std::unique_ptr<Device> device_;
};

class ForeignEvent : public Event {
 public:
  Result<bool> query() override { return true; }
  Status synchronize() override { return Status(); }
  Result<double> elapsed_ms_since(Event&) override { return 0.0; }
};

TEST_F(CudaDeviceTest, NameGivesOrdinalModelAndArchitecture) {
  const std::string name = device_->name();
  EXPECT_EQ(name.rfind("cuda:0 ", 0), 0u) << name;
  EXPECT_NE(name.find("(sm_"), std::string::npos) << name;
  EXPECT_EQ(device_->kind(), DeviceKind::kCuda);
}

TEST_F(CudaDeviceTest, OrdinalOutOfRangeIsUnavailable) {
  DeviceOptions options;
  options.kind = DeviceKind::kCuda;
  options.ordinal = cuda_device_count();
  auto device = create_device(options);
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(device.status().message().find("out of range"), std::string::npos)
      << device.status().to_string();
}

TEST_F(CudaDeviceTest, PageBytesIsThePowerOfTwoGranularity) {
  const std::size_t page = device_->page_bytes();
  EXPECT_GE(page, 64 * kKiB);
  EXPECT_EQ(page & (page - 1), 0u) << page;
}

TEST_F(CudaDeviceTest, AllocateBeyondCapacityNamesRequestCommittedAndCapacity) {
  EBB_ASSERT_OK_AND_ASSIGN(void* held, device_->allocate(8 * kMiB));
  auto result = device_->allocate(kTestCapacityBytes);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kOutOfMemory);
  const std::string& message = result.status().message();
  EXPECT_NE(message.find("allocate"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(kTestCapacityBytes)), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(8 * kMiB)), std::string::npos) << message;
  EBB_EXPECT_OK(device_->free(held));
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

// A capacity above what the GPU has lets cudaMalloc itself fail: the Status is kOutOfMemory,
// names cudaMalloc and the size, and the device goes on working.
TEST_F(CudaDeviceTest, CudaMallocFailureNamesTheCallAndSize) {
  DeviceOptions options;
  options.kind = DeviceKind::kCuda;
  options.capacity_bytes = std::size_t{1} << 50;  // 1 PiB
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Device> device, create_device(options));
  const std::size_t too_much = std::size_t{1} << 45;  // 32 TiB
  auto result = device->allocate(too_much);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(result.status().message().find("cudaMalloc"), std::string::npos)
      << result.status().to_string();
  EXPECT_NE(result.status().message().find(std::to_string(too_much)), std::string::npos)
      << result.status().to_string();
  EXPECT_EQ(device->committed_bytes(), 0u);

  EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device->allocate(kMiB));
  EBB_EXPECT_OK(device->default_stream().memset_async(ptr, 1, kMiB));
  EBB_EXPECT_OK(device->default_stream().synchronize());
  EBB_EXPECT_OK(device->free(ptr));
}

TEST_F(CudaDeviceTest, MapPagesOfUnreservedAddressNamesCallAndSize) {
  const std::size_t page = device_->page_bytes();
  void* nowhere = reinterpret_cast<void*>(page * 4096);
  Status status = device_->map_pages(nowhere, page);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("map_pages"), std::string::npos) << status.to_string();
  EXPECT_NE(status.message().find(std::to_string(page)), std::string::npos) << status.to_string();
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

TEST_F(CudaDeviceTest, MapChecksAlignmentDoubleMapAndRelease) {
  const std::size_t page = device_->page_bytes();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(4 * page));
  auto* bytes = static_cast<std::uint8_t*>(base);
  EXPECT_EQ(device_->map_pages(bytes + 1, page).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(base, page + 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(base, 5 * page).code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK(device_->map_pages(base, 2 * page));
  EXPECT_EQ(device_->map_pages(bytes + page, 2 * page).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(device_->unmap_pages(bytes + page, 2 * page).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(device_->release_range(base, 4 * page).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(device_->committed_bytes(), 2 * page);
  EBB_EXPECT_OK(device_->unmap_pages(base, 2 * page));
  EBB_EXPECT_OK(device_->release_range(base, 4 * page));
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

// Pages mapped in one call can be unmapped one by one and mapped again, and hold data.
TEST_F(CudaDeviceTest, UnmapsAnyPageAlignedSubRangeOfAMappedRun) {
  const std::size_t page = device_->page_bytes();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(4 * page));
  auto* bytes = static_cast<std::uint8_t*>(base);
  EBB_ASSERT_OK(device_->map_pages(base, 4 * page));
  EBB_ASSERT_OK(device_->unmap_pages(bytes + page, 2 * page));
  EXPECT_EQ(device_->committed_bytes(), 2 * page);
  EBB_ASSERT_OK(device_->map_pages(bytes + page, page));

  Stream& stream = device_->default_stream();
  const std::vector<std::uint8_t> pattern = test_pattern(2 * page, 7);
  EBB_ASSERT_OK(stream.copy_async(base, pattern.data(), 2 * page, CopyKind::kHostToDevice));
  std::vector<std::uint8_t> back(2 * page);
  EBB_ASSERT_OK(stream.copy_async(back.data(), base, 2 * page, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK(stream.synchronize());
  EXPECT_TRUE(back == pattern);

  EBB_EXPECT_OK(device_->unmap_pages(base, 2 * page));
  EBB_EXPECT_OK(device_->unmap_pages(bytes + 3 * page, page));
  EBB_EXPECT_OK(device_->release_range(base, 4 * page));
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

TEST_F(CudaDeviceTest, LaunchPassesEachStreamsOwnNonNullNativeStream) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> other, device_->create_stream());
  LaunchContext seen_default{DeviceKind::kCpu, nullptr};
  LaunchContext seen_other{DeviceKind::kCpu, nullptr};
  EBB_ASSERT_OK(device_->default_stream().launch(
      [&](const LaunchContext& context) { seen_default = context; }));
  EBB_ASSERT_OK(other->launch([&](const LaunchContext& context) { seen_other = context; }));
  EXPECT_EQ(seen_default.kind, DeviceKind::kCuda);
  // Not the legacy NULL stream: the default stream is a created non-blocking stream.
  EXPECT_NE(seen_default.native_stream, nullptr);
  EXPECT_NE(seen_other.native_stream, nullptr);
  EXPECT_NE(seen_default.native_stream, seen_other.native_stream);
  EXPECT_EQ(device_->default_stream().id(), 0u);
  EXPECT_NE(other->id(), 0u);
}

TEST_F(CudaDeviceTest, QueryIsFalseWhileWorkIsPendingAndWaitOrdersStreams) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> producer, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> done, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(void* buffer, device_->allocate(kMiB));
  // Pinned, so that the copy into it is asynchronous: a copy into pageable memory returns only
  // once it has completed, which would hide whether the stream waited.
  EBB_ASSERT_OK_AND_ASSIGN(void* back, device_->allocate_pinned_host(kMiB));
  std::memset(back, 0, kMiB);
  Stream& consumer = device_->default_stream();

  EBB_ASSERT_OK(delay_stream(*producer, 200));
  EBB_ASSERT_OK(producer->memset_async(buffer, 0x5a, kMiB));
  EBB_ASSERT_OK(producer->record(*done));
  EBB_ASSERT_OK_AND_ASSIGN(bool producer_idle, producer->query());
  EBB_ASSERT_OK_AND_ASSIGN(bool event_done, done->query());
  EXPECT_FALSE(producer_idle);
  EXPECT_FALSE(event_done);

  EBB_ASSERT_OK(consumer.wait(*done));
  EBB_ASSERT_OK(consumer.copy_async(back, buffer, kMiB, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK_AND_ASSIGN(bool consumer_idle, consumer.query());
  EXPECT_FALSE(consumer_idle) << "the consumer should still be waiting for the producer";
  EBB_ASSERT_OK(consumer.synchronize());
  const auto* bytes = static_cast<const std::uint8_t*>(back);
  EXPECT_EQ(std::vector<std::uint8_t>(bytes, bytes + kMiB), std::vector<std::uint8_t>(kMiB, 0x5a));
  EBB_ASSERT_OK_AND_ASSIGN(event_done, done->query());
  EXPECT_TRUE(event_done);
  EBB_EXPECT_OK(device_->free(buffer));
  EBB_EXPECT_OK(device_->free_pinned_host(back));
}

TEST_F(CudaDeviceTest, ElapsedTimeCoversADelay) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());
  EXPECT_EQ(end->elapsed_ms_since(*start).status().code(), StatusCode::kFailedPrecondition);
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK(stream.record(*start));
  EBB_ASSERT_OK(delay_stream(stream, 50));
  EBB_ASSERT_OK(stream.record(*end));
  EBB_ASSERT_OK(end->synchronize());
  EBB_ASSERT_OK_AND_ASSIGN(double ms, end->elapsed_ms_since(*start));
  EXPECT_GE(ms, 45.0);
  EXPECT_LT(ms, 5000.0);
}

TEST_F(CudaDeviceTest, EventOfAnotherBackendIsInvalidArgument) {
  ForeignEvent foreign;
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> own, device_->create_event());
  EXPECT_EQ(device_->default_stream().record(foreign).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->default_stream().wait(foreign).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(own->elapsed_ms_since(foreign).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CudaDeviceTest, PinnedHostRoundTripAndForeignFree) {
  EBB_ASSERT_OK_AND_ASSIGN(void* pinned, device_->allocate_pinned_host(kMiB));
  EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device_->allocate(kMiB));
  std::memset(pinned, 0x3c, kMiB);
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK(stream.copy_async(ptr, pinned, kMiB, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(stream.synchronize());
  std::memset(pinned, 0, kMiB);
  EBB_ASSERT_OK(stream.copy_async(pinned, ptr, kMiB, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK(stream.synchronize());
  EXPECT_EQ(static_cast<std::uint8_t*>(pinned)[kMiB - 1], 0x3c);
  int on_stack = 0;
  EXPECT_EQ(device_->free_pinned_host(&on_stack).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->free(pinned).code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(device_->free(ptr));
  EBB_EXPECT_OK(device_->free_pinned_host(pinned));
  EXPECT_EQ(device_->free_pinned_host(pinned).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ebb
