// The sim backend: the memory rules every backend shares (written out here, because the
// conformance suite checks data by copying it back, and sim copies move no bytes), memory that
// is address space only, and the virtual clock: launch costs, stream concurrency, event joins,
// link contention, event timing and when the host sees work complete.
#include "kernels/sim/sim_device.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_device.h"
#include "tests/kernels/device_conformance.h"

namespace ebb {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr std::size_t kGB = 1'000'000'000;  // links are quoted in decimal units

char* byte_ptr(void* ptr, std::size_t offset) { return static_cast<char*>(ptr) + offset; }

DeviceOptions sim_options(std::size_t capacity_bytes = 64 * kMiB) {
  DeviceOptions options;
  options.kind = DeviceKind::kSim;
  options.capacity_bytes = capacity_bytes;
  return options;
}

// A device whose links carry 10 GB/s after 5 us of latency each way.
DeviceOptions linked_options(std::size_t capacity_bytes = 8 * kGiB) {
  DeviceOptions options = sim_options(capacity_bytes);
  options.host_to_device = LinkModel{10e9, microseconds(5)};
  options.device_to_host = LinkModel{10e9, microseconds(5)};
  return options;
}

class SimDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { make(sim_options()); }

  void make(const DeviceOptions& options) {
    Result<std::unique_ptr<Device>> device = create_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
  }

  // The device's virtual clock.
  nanoseconds now() {
    Result<nanoseconds> t = simulated_time(*device_);
    EXPECT_TRUE(t.ok()) << t.status().to_string();
    return t.ok() ? *t : nanoseconds(-1);
  }

  std::unique_ptr<Device> device_;
};

// The process's peak resident set, in bytes.
std::size_t max_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::size_t>(usage.ru_maxrss) * kKiB;
}

Kernel noop() {
  return [](const LaunchContext&) {};
}

// --- Identity and options -----------------------------------------------------------------

TEST_F(SimDeviceTest, NameKindAndCapacity) {
  make(linked_options(80 * kGiB));
  EXPECT_EQ(device_->kind(), DeviceKind::kSim);
  EXPECT_EQ(device_kind_name(DeviceKind::kSim), "sim");
  EXPECT_EQ(device_->name(), "sim (80.00 GiB, h2d 10.0 GB/s + 5.0 us, d2h 10.0 GB/s + 5.0 us)");
  EXPECT_EQ(device_->capacity_bytes(), 80 * kGiB);
  EXPECT_EQ(device_->committed_bytes(), 0u);
  make(sim_options());
  EXPECT_EQ(device_->name(), "sim (64.00 MiB, h2d unthrottled, d2h unthrottled)");
}

TEST(SimDeviceOptions, BadOptionsAreInvalid) {
  DeviceOptions zero = sim_options(0);
  EXPECT_EQ(create_device(zero).status().code(), StatusCode::kInvalidArgument);
  DeviceOptions odd_page = sim_options();
  odd_page.page_bytes = 3000;
  EXPECT_EQ(create_device(odd_page).status().code(), StatusCode::kInvalidArgument);
  DeviceOptions negative = sim_options();
  negative.device_to_host.bytes_per_second = -1;
  EXPECT_EQ(create_device(negative).status().code(), StatusCode::kInvalidArgument);
}

TEST(SimDeviceOptions, SimulatedTimeOfAnotherKindIsInvalid) {
  DeviceOptions options;
  options.capacity_bytes = 64 * kMiB;
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Device> cpu, create_cpu_device(options));
  EXPECT_EQ(simulated_time(*cpu).status().code(), StatusCode::kInvalidArgument);
}

TEST(SimDeviceOptions, HostWorkOnAnotherKindIsInvalid) {
  DeviceOptions options;
  options.capacity_bytes = 64 * kMiB;
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Device> cpu, create_cpu_device(options));
  EXPECT_EQ(simulate_host_work(*cpu, std::chrono::milliseconds(1)).code(),
            StatusCode::kInvalidArgument);
}

TEST(SimDeviceOptions, CostedLaunchOnCpuRunsTheKernel) {
  DeviceOptions options;
  options.capacity_bytes = 64 * kMiB;
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Device> cpu, create_cpu_device(options));
  bool ran = false;
  EBB_ASSERT_OK(
      cpu->default_stream().launch([&ran](const LaunchContext&) { ran = true; }, milliseconds(1)));
  EBB_ASSERT_OK(cpu->default_stream().synchronize());
  EXPECT_TRUE(ran) << "cpu ignores the cost and runs the kernel";
}

// --- Memory rules, as the cpu backend's -----------------------------------------------------

TEST_F(SimDeviceTest, AllocationRules) {
  EXPECT_EQ(device_->allocate(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->allocate(device_->capacity_bytes() + 1).status().code(),
            StatusCode::kOutOfMemory);
  EBB_ASSERT_OK_AND_ASSIGN(void* half, device_->allocate(device_->capacity_bytes() / 2));
  EBB_ASSERT_OK_AND_ASSIGN(void* rest, device_->allocate(device_->capacity_bytes() / 2));
  EXPECT_EQ(device_->committed_bytes(), device_->capacity_bytes());
  EXPECT_EQ(device_->allocate(1).status().code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(half) % 256, 0u);

  int on_stack = 0;
  EXPECT_EQ(device_->free(&on_stack).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->free(byte_ptr(half, 512)).code(), StatusCode::kInvalidArgument)
      << "an interior pointer is not an allocation";
  EBB_ASSERT_OK(device_->free(half));
  const Status again = device_->free(half);
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument) << again.to_string();
  EBB_ASSERT_OK(device_->free(rest));
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

TEST_F(SimDeviceTest, VirtualMemoryRules) {
  const std::size_t page = device_->page_bytes();
  EXPECT_EQ(device_->reserve_range(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->reserve_range(page + 1).status().code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(4 * page));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(base) % page, 0u);
  EXPECT_EQ(device_->committed_bytes(), 0u);

  EBB_ASSERT_OK(device_->map_pages(byte_ptr(base, page), 2 * page));
  EXPECT_EQ(device_->committed_bytes(), 2 * page);
  EXPECT_EQ(device_->map_pages(byte_ptr(base, 2 * page), page).code(),
            StatusCode::kFailedPrecondition)
      << "a page cannot be mapped twice";
  EXPECT_EQ(device_->map_pages(base, 2 * page).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(device_->unmap_pages(base, page).code(), StatusCode::kFailedPrecondition)
      << "an unmapped page cannot be unmapped";
  EXPECT_EQ(device_->release_range(base, 4 * page).code(), StatusCode::kFailedPrecondition)
      << "a range with mapped pages cannot be released";
  EXPECT_EQ(device_->map_pages(byte_ptr(base, 4096), page).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(base, page / 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(byte_ptr(base, 3 * page), 2 * page).code(),
            StatusCode::kInvalidArgument)
      << "a span that runs past the end of the range";
  int on_stack = 0;
  EXPECT_EQ(device_->map_pages(&on_stack, page).code(), StatusCode::kInvalidArgument);

  EBB_ASSERT_OK(device_->unmap_pages(byte_ptr(base, page), 2 * page));
  EXPECT_EQ(device_->committed_bytes(), 0u);
  EBB_ASSERT_OK(device_->release_range(base, 4 * page));
  EXPECT_EQ(device_->release_range(base, 4 * page).code(), StatusCode::kInvalidArgument);
}

TEST_F(SimDeviceTest, MappedPagesAndAllocationsShareTheCapacity) {
  const std::size_t page = device_->page_bytes();
  const std::size_t pages = device_->capacity_bytes() / page;
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range((pages + 1) * page));
  EBB_ASSERT_OK(device_->map_pages(base, pages * page));
  EXPECT_EQ(device_->map_pages(byte_ptr(base, pages * page), page).code(),
            StatusCode::kOutOfMemory);
  EXPECT_EQ(device_->allocate(page).status().code(), StatusCode::kOutOfMemory);
  EBB_ASSERT_OK(device_->unmap_pages(base, pages * page));
  EBB_ASSERT_OK(device_->release_range(base, (pages + 1) * page));
}

// The simulated machine's host memory holds no values either: address space only, so that a
// 7B model's optimizer state on the host (84 GB and more) reserves nothing here, and touching it
// faults.
TEST_F(SimDeviceTest, PinnedHostMemoryIsAddressSpaceOnly) {
  EXPECT_EQ(device_->allocate_pinned_host(0).status().code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(void* pinned, device_->allocate_pinned_host(kMiB + 3));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pinned) % 4096, 0u);
  EXPECT_DEATH(static_cast<volatile char*>(pinned)[kMiB + 2] = 7, "");
  EXPECT_EQ(device_->committed_bytes(), 0u);
  const std::size_t rss_before = max_rss_bytes();
  // 100 GiB: more than a 7B model's 84 GB of state (1 TiB is past what ThreadSanitizer leaves an
  // application of its address space).
  EBB_ASSERT_OK_AND_ASSIGN(void* huge, device_->allocate_pinned_host(100 * kGiB));
  EXPECT_LT(max_rss_bytes() - rss_before, 64 * kMiB) << "100 GiB of host memory must not be backed";
  EBB_ASSERT_OK(device_->free_pinned_host(huge));
  EBB_ASSERT_OK(device_->free_pinned_host(pinned));
  EXPECT_EQ(device_->free_pinned_host(pinned).code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(4096));
  EXPECT_EQ(device_->free_pinned_host(d).code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(device_->free(d));
}

TEST_F(SimDeviceTest, EightyGibibytesOfDeviceMemoryUseNoRam) {
  make(sim_options(80 * kGiB));
  const std::size_t rss_before = max_rss_bytes();
  std::vector<void*> pieces;
  for (int i = 0; i < 30; ++i) {  // 30 GiB of whole allocations
    EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device_->allocate(kGiB));
    pieces.push_back(ptr);
  }
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(40 * kGiB));
  for (std::size_t gib = 0; gib < 30; ++gib) {  // and 30 GiB of mapped pages
    EBB_ASSERT_OK(device_->map_pages(byte_ptr(base, gib * kGiB), kGiB));
  }
  EXPECT_EQ(device_->committed_bytes(), 60 * kGiB);
  EBB_ASSERT_OK(device_->default_stream().memset_async(pieces[0], 0, kGiB));
  EBB_ASSERT_OK(
      device_->default_stream().copy_async(pieces[1], base, kGiB, CopyKind::kDeviceToDevice));
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_LT(max_rss_bytes() - rss_before, 64 * kMiB) << "device memory must not be backed";
  EXPECT_EQ(device_->allocate(21 * kGiB).status().code(), StatusCode::kOutOfMemory);
  EBB_ASSERT_OK(device_->unmap_pages(base, 30 * kGiB));
  EBB_ASSERT_OK(device_->release_range(base, 40 * kGiB));
  for (void* ptr : pieces) EBB_ASSERT_OK(device_->free(ptr));
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

TEST_F(SimDeviceTest, HostAccessToDeviceMemoryFaults) {
  EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device_->allocate(4096));
  EXPECT_DEATH(*static_cast<volatile char*>(ptr) = 1, "");
  EBB_EXPECT_OK(device_->free(ptr));
}

// --- Argument checks ------------------------------------------------------------------------

TEST_F(SimDeviceTest, BadArgumentsAreInvalid) {
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(4096));
  std::vector<std::uint8_t> host(16);
  EXPECT_EQ(stream.copy_async(nullptr, host.data(), 16, CopyKind::kHostToDevice).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.copy_async(host.data(), nullptr, 16, CopyKind::kDeviceToHost).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.memset_async(nullptr, 0, 16).code(), StatusCode::kInvalidArgument);
  const Status past_end = stream.copy_async(d, host.data(), 8192, CopyKind::kHostToDevice);
  EXPECT_EQ(past_end.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(past_end.message().find("sim stream 0"), std::string::npos) << past_end.message();
  EXPECT_EQ(stream.copy_async(host.data(), host.data(), 16, CopyKind::kDeviceToHost).code(),
            StatusCode::kInvalidArgument)
      << "host memory is not device memory";
  EXPECT_EQ(stream.launch(Kernel()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.launch(noop(), nanoseconds(-1)).code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(stream.copy_async(d, host.data(), 0, CopyKind::kHostToDevice));

  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Device> other, create_device(sim_options()));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> foreign, other->create_event());
  EXPECT_EQ(stream.record(*foreign).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.wait(*foreign).code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> mine, device_->create_event());
  EXPECT_EQ(mine->elapsed_ms_since(*foreign).status().code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(device_->free(d));
}

// --- The clock ----------------------------------------------------------------------------

TEST_F(SimDeviceTest, ClosuresAreNotRun) {
  bool ran = false;
  EBB_ASSERT_OK(device_->default_stream().launch([&ran](const LaunchContext&) { ran = true; }));
  EBB_ASSERT_OK(device_->default_stream().launch([&ran](const LaunchContext&) { ran = true; },
                                                 milliseconds(2)));
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_FALSE(ran);
  EXPECT_EQ(now(), milliseconds(2));
}

TEST_F(SimDeviceTest, ChainOfLaunchesSumsExactly) {
  Stream& stream = device_->default_stream();
  nanoseconds total(0);
  for (int i = 1; i <= 100; ++i) {
    EBB_ASSERT_OK(stream.launch(noop(), nanoseconds(i * 1'001)));
    total += nanoseconds(i * 1'001);
  }
  EBB_ASSERT_OK(stream.launch(noop()));  // costs nothing
  EXPECT_EQ(now(), nanoseconds(0)) << "the host has not waited yet";
  EBB_ASSERT_OK(stream.synchronize());
  EXPECT_EQ(now(), total);
}

TEST_F(SimDeviceTest, StreamsRunConcurrentlyUntilAWaitJoinsThem) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  EBB_ASSERT_OK(a->launch(noop(), milliseconds(3)));
  EBB_ASSERT_OK(b->launch(noop(), milliseconds(5)));
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_EQ(now(), milliseconds(5)) << "the maximum of the two, not their sum";

  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> b_done, device_->create_event());
  EBB_ASSERT_OK(a->launch(noop(), milliseconds(1)));  // 5 -> 6
  EBB_ASSERT_OK(b->launch(noop(), milliseconds(4)));  // 5 -> 9
  EBB_ASSERT_OK(b->record(*b_done));
  EBB_ASSERT_OK(a->wait(*b_done));
  EBB_ASSERT_OK(a->launch(noop(), milliseconds(2)));  // starts at 9, after b
  EBB_ASSERT_OK(a->synchronize());
  EXPECT_EQ(now(), milliseconds(11));
}

// The host busy for a while (a modelled CPU step): the host-visible time advances by it, and
// work enqueued afterwards starts no earlier; work already enqueued runs meanwhile.
TEST_F(SimDeviceTest, HostWorkAdvancesTheHostsClock) {
  EBB_ASSERT_OK(device_->default_stream().launch(noop(), milliseconds(4)));
  EBB_ASSERT_OK(simulate_host_work(*device_, milliseconds(3)));
  EXPECT_EQ(now(), milliseconds(3));
  EBB_ASSERT_OK(device_->default_stream().launch(noop(), milliseconds(1)));  // 4 -> 5
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_EQ(now(), milliseconds(5)) << "the stream ran while the host worked";
  EBB_ASSERT_OK(simulate_host_work(*device_, milliseconds(2)));
  EBB_ASSERT_OK(device_->default_stream().launch(noop(), milliseconds(1)));  // 7 -> 8
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_EQ(now(), milliseconds(8));
  EXPECT_EQ(simulate_host_work(*device_, milliseconds(-1)).code(), StatusCode::kInvalidArgument);
}

TEST_F(SimDeviceTest, WorkStartsNoEarlierThanTheHostEnqueuedIt) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> idle, device_->create_stream());
  EBB_ASSERT_OK(device_->default_stream().launch(noop(), milliseconds(10)));
  EBB_ASSERT_OK(device_->default_stream().synchronize());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());
  EBB_ASSERT_OK(idle->record(*start));
  EBB_ASSERT_OK(idle->launch(noop(), milliseconds(1)));
  EBB_ASSERT_OK(idle->record(*end));
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_EQ(now(), milliseconds(11));
  EBB_ASSERT_OK_AND_ASSIGN(double elapsed_ms, end->elapsed_ms_since(*start));
  EXPECT_DOUBLE_EQ(elapsed_ms, 1.0);
}

TEST_F(SimDeviceTest, CopiesOnOneLinkSerializeAndOppositeLinksOverlap) {
  make(linked_options());
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(2 * kGB));
  EBB_ASSERT_OK_AND_ASSIGN(void* host, device_->allocate_pinned_host(2 * kGB));  // never touched
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());

  EBB_ASSERT_OK(a->copy_async(d, host, kGB, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(b->copy_async(byte_ptr(d, kGB), byte_ptr(host, kGB), kGB, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(device_->synchronize());
  const nanoseconds one_copy = milliseconds(100) + microseconds(5);
  EXPECT_EQ(now(), 2 * one_copy) << "two copies on one link take turns";

  const nanoseconds start = now();
  EBB_ASSERT_OK(a->copy_async(d, host, kGB, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(b->copy_async(host, d, kGB, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK(a->copy_async(byte_ptr(d, kGB), d, kGB, CopyKind::kDeviceToDevice));
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_EQ(now() - start, one_copy)
      << "opposite directions overlap; a device-to-device copy costs nothing";
  EBB_EXPECT_OK(device_->free(d));
  EBB_EXPECT_OK(device_->free_pinned_host(host));
}

TEST_F(SimDeviceTest, ACopyWaitingOnAnEventDoesNotHoldTheLink) {
  make(linked_options());
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(2 * kGB));
  std::vector<std::uint8_t> host(1);  // never read: sim copies move no bytes
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> late, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> early, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> ready, device_->create_event());
  EBB_ASSERT_OK(device_->default_stream().launch(noop(), milliseconds(500)));
  EBB_ASSERT_OK(device_->default_stream().record(*ready));
  EBB_ASSERT_OK(late->wait(*ready));
  EBB_ASSERT_OK(late->copy_async(d, host.data(), kGB, CopyKind::kHostToDevice));  // 500..600 ms
  EBB_ASSERT_OK(early->copy_async(byte_ptr(d, kGB), host.data(), kGB, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(early->synchronize());
  EXPECT_EQ(now(), milliseconds(100) + microseconds(5))
      << "the link is free before the waiting copy starts";
  EBB_ASSERT_OK(late->synchronize());
  EXPECT_EQ(now(), milliseconds(600) + microseconds(5));
  EBB_EXPECT_OK(device_->free(d));
}

TEST_F(SimDeviceTest, EventTimeIsTheModelledTime) {
  make(linked_options());
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kMiB));
  EBB_ASSERT_OK_AND_ASSIGN(void* host, device_->allocate_pinned_host(kMiB));
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());
  EBB_ASSERT_OK(stream.record(*start));
  EBB_ASSERT_OK(stream.launch(noop(), microseconds(1500)));
  EBB_ASSERT_OK(stream.copy_async(d, host, 1'000'000, CopyKind::kHostToDevice));  // 100 + 5 us
  EBB_ASSERT_OK(stream.memset_async(d, 0, kMiB));                                 // free
  EBB_ASSERT_OK(stream.record(*end));

  Result<double> early = end->elapsed_ms_since(*start);
  EXPECT_EQ(early.status().code(), StatusCode::kFailedPrecondition)
      << "the end event has not completed before the host waits";
  EBB_ASSERT_OK_AND_ASSIGN(bool end_done, end->query());
  EBB_ASSERT_OK_AND_ASSIGN(bool stream_done, stream.query());
  EXPECT_FALSE(end_done);
  EXPECT_FALSE(stream_done);

  EBB_ASSERT_OK(end->synchronize());
  EXPECT_EQ(now(), microseconds(1605));
  EBB_ASSERT_OK_AND_ASSIGN(end_done, end->query());
  EBB_ASSERT_OK_AND_ASSIGN(stream_done, stream.query());
  EXPECT_TRUE(end_done);
  EXPECT_TRUE(stream_done) << "nothing was enqueued after the completed event";
  EBB_ASSERT_OK_AND_ASSIGN(double elapsed_ms, end->elapsed_ms_since(*start));
  EXPECT_DOUBLE_EQ(elapsed_ms, 1.605);
  EBB_EXPECT_OK(device_->free(d));
  EBB_EXPECT_OK(device_->free_pinned_host(host));
}

TEST_F(SimDeviceTest, NeverRecordedEventsAreCompleteAndImposeNoWait) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> never, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(bool done, never->query());
  EXPECT_TRUE(done);
  EBB_EXPECT_OK(never->synchronize());
  EBB_ASSERT_OK(device_->default_stream().wait(*never));
  EBB_ASSERT_OK(device_->default_stream().synchronize());
  EXPECT_EQ(now(), nanoseconds(0));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> recorded, device_->create_event());
  EXPECT_EQ(recorded->elapsed_ms_since(*never).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(SimDeviceTest, WorkOfADestroyedStreamStillCountsForDeviceSynchronize) {
  {
    EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> stream, device_->create_stream());
    EBB_ASSERT_OK(stream->launch(noop(), milliseconds(7)));
  }
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_EQ(now(), milliseconds(7));
}

}  // namespace
}  // namespace ebb
