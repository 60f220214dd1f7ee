// The cpu backend: the shared conformance suite, then what only the cpu backend promises (kernels
// run in stream order on a worker thread, modelled link timing, messages, option checks).
#include "kernels/cpu/cpu_device.h"

#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <future>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/kernels/device_conformance.h"

namespace ebb {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kCapacity = 64 * kMiB;

DeviceFactory cpu_factory(std::string name, DeviceOptions options) {
  return DeviceFactory{std::move(name), [options] { return create_cpu_device(options); }};
}

DeviceOptions cpu_options() {
  DeviceOptions options;
  options.capacity_bytes = kCapacity;
  return options;
}

DeviceOptions throttled_options() {
  DeviceOptions options = cpu_options();
  options.host_to_device = LinkModel{20e9, std::chrono::microseconds(5)};
  options.device_to_host = LinkModel{20e9, std::chrono::microseconds(5)};
  return options;
}

DeviceOptions small_page_options() {
  DeviceOptions options = cpu_options();
  options.page_bytes = 64 * kKiB;
  return options;
}

INSTANTIATE_TEST_SUITE_P(Cpu, DeviceConformance,
                         ::testing::Values(cpu_factory("cpu", cpu_options()),
                                           cpu_factory("cpu_throttled", throttled_options()),
                                           cpu_factory("cpu_64k_pages", small_page_options())),
                         device_factory_name);

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

class CpuDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { make(cpu_options()); }
  void make(const DeviceOptions& options) {
    device_.reset();
    Result<std::unique_ptr<Device>> device = create_cpu_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
  }

  std::unique_ptr<Device> device_;
};

// A gate kernels can block on until the test opens it. It opens itself when destroyed, so that
// a test that fails early does not leave a stream blocked forever; kernels hold their own waiter.
class Gate {
 public:
  ~Gate() { open(); }
  void open() {
    std::call_once(opened_, [this] { promise_.set_value(); });
  }
  // What a kernel captures (by value) and waits on.
  std::shared_future<void> waiter() const { return future_; }

 private:
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
  std::once_flag opened_;
};

// --- Creation and identity ----------------------------------------------------------------

TEST(CpuDeviceCreate, InvalidOptionsFail) {
  for (std::size_t page_bytes :
       {std::size_t{0}, std::size_t{1000}, std::size_t{2048}, 3 * kMiB, 2 * kMiB + 4096}) {
    DeviceOptions options = cpu_options();
    options.page_bytes = page_bytes;
    Result<std::unique_ptr<Device>> device = create_cpu_device(options);
    ASSERT_FALSE(device.ok()) << "page_bytes " << page_bytes;
    EXPECT_EQ(device.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(device.status().message().find(std::to_string(page_bytes)), std::string::npos)
        << device.status().message();
  }
  DeviceOptions no_capacity = cpu_options();
  no_capacity.capacity_bytes = 0;
  EXPECT_EQ(create_cpu_device(no_capacity).status().code(), StatusCode::kInvalidArgument);
  DeviceOptions negative_link = cpu_options();
  negative_link.device_to_host.bytes_per_second = -1;
  EXPECT_EQ(create_cpu_device(negative_link).status().code(), StatusCode::kInvalidArgument);
}

TEST(CpuDeviceCreate, CreateDeviceDispatchesToCpu) {
  Result<std::unique_ptr<Device>> device = create_device(cpu_options());
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  EXPECT_EQ((*device)->kind(), DeviceKind::kCpu);
  EXPECT_EQ((*device)->name(), "cpu (64.00 MiB simulated)");
  EXPECT_EQ((*device)->page_bytes(), 2 * kMiB);
  Result<std::unique_ptr<Device>> big = create_cpu_device(DeviceOptions{});
  ASSERT_TRUE(big.ok()) << big.status().to_string();
  EXPECT_EQ((*big)->name(), "cpu (1.00 GiB simulated)");
}

TEST_F(CpuDeviceTest, DefaultStreamIsZeroAndCreatedStreamsCountUp) {
  EXPECT_EQ(device_->default_stream().id(), 0u);
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> first, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> second, device_->create_stream());
  EXPECT_EQ(first->id(), 1u);
  EXPECT_EQ(second->id(), 2u);
}

// --- Memory -------------------------------------------------------------------------------

TEST_F(CpuDeviceTest, OutOfMemoryNamesRequestCommittedAndCapacity) {
  EBB_ASSERT_OK_AND_ASSIGN(void* held, device_->allocate(12345));
  Result<void*> ptr = device_->allocate(kCapacity);
  ASSERT_FALSE(ptr.ok());
  const std::string& message = ptr.status().message();
  EXPECT_NE(message.find(std::to_string(kCapacity) + " bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("12345"), std::string::npos) << message;
  EXPECT_NE(message.find("of " + std::to_string(kCapacity)), std::string::npos) << message;
  EBB_EXPECT_OK(device_->free(held));
}

TEST_F(CpuDeviceTest, FreeOfForeignPointerNamesIt) {
  int on_stack = 0;
  const Status status = device_->free(&on_stack);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  char want[32];
  std::snprintf(want, sizeof(want), "%p", static_cast<void*>(&on_stack));
  EXPECT_NE(status.message().find(want), std::string::npos) << status.message();
}

TEST_F(CpuDeviceTest, AllocationsAre512AlignedAndKernelsReachEveryByte) {
  constexpr std::size_t kBytes = 4097;
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kBytes));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(d) % 512, 0u);
  Stream& stream = device_->default_stream();
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 5);
  EBB_ASSERT_OK(stream.copy_async(d, source.data(), kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(stream.launch([d](const LaunchContext&) {
    auto* bytes = static_cast<std::uint8_t*>(d);
    for (std::size_t i = 0; i < kBytes; ++i) bytes[i] = static_cast<std::uint8_t>(bytes[i] + 1);
  }));
  std::vector<std::uint8_t> got(kBytes);
  EBB_ASSERT_OK(stream.copy_async(got.data(), d, kBytes, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK(stream.synchronize());
  for (std::size_t i = 0; i < kBytes; ++i) {
    ASSERT_EQ(got[i], static_cast<std::uint8_t>(source[i] + 1)) << "byte " << i;
  }
  EBB_EXPECT_OK(device_->free(d));
}

TEST_F(CpuDeviceTest, CopiesOutsideDeviceMemoryAreInvalid) {
  Stream& stream = device_->default_stream();
  std::vector<std::uint8_t> host(8192);
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(4096));
  EXPECT_EQ(stream.copy_async(d, host.data(), 4097, CopyKind::kHostToDevice).code(),
            StatusCode::kInvalidArgument)
      << "runs past the end of the allocation";
  EXPECT_EQ(stream.copy_async(host.data(), host.data() + 4096, 16, CopyKind::kDeviceToHost).code(),
            StatusCode::kInvalidArgument)
      << "host memory is not device memory";
  EBB_ASSERT_OK(device_->free(d));
  EXPECT_EQ(stream.copy_async(d, host.data(), 16, CopyKind::kHostToDevice).code(),
            StatusCode::kInvalidArgument)
      << "freed memory";
  EXPECT_EQ(stream.memset_async(d, 0, 16).code(), StatusCode::kInvalidArgument);

  const std::size_t page = device_->page_bytes();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(2 * page));
  EBB_ASSERT_OK(device_->map_pages(base, page));
  EBB_EXPECT_OK(stream.memset_async(base, 1, page));
  const Status unmapped = stream.memset_async(base, 1, page + 1);
  EXPECT_EQ(unmapped.code(), StatusCode::kInvalidArgument) << "runs into an unmapped page";
  EBB_EXPECT_OK(stream.synchronize());
  EBB_EXPECT_OK(device_->unmap_pages(base, page));
  EBB_EXPECT_OK(device_->release_range(base, 2 * page));
}

TEST_F(CpuDeviceTest, VirtualMemoryMisuseNamesTheAddress) {
  const std::size_t page = device_->page_bytes();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(page));
  EBB_ASSERT_OK(device_->map_pages(base, page));
  const Status twice = device_->map_pages(base, page);
  char want[32];
  std::snprintf(want, sizeof(want), "%p", base);
  EXPECT_NE(twice.message().find(want), std::string::npos) << twice.message();
  EXPECT_NE(twice.message().find(std::to_string(page)), std::string::npos) << twice.message();
  EBB_EXPECT_OK(device_->unmap_pages(base, page));
  EBB_EXPECT_OK(device_->release_range(base, page));
}

// Whether any OS page of [ptr, ptr + bytes) is mapped in this process (mincore fails with ENOMEM
// on an unmapped page; a PROT_NONE reservation counts as mapped). Allocates nothing, so that it
// can run right after an unmap without anything new landing at the same address.
bool any_page_mapped(const void* ptr, std::size_t bytes) {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(ptr) / page * page;
  for (std::uintptr_t p = first; p < reinterpret_cast<std::uintptr_t>(ptr) + bytes; p += page) {
    unsigned char resident = 0;
    if (mincore(reinterpret_cast<void*>(p), page, &resident) == 0) return true;
  }
  return false;
}

TEST_F(CpuDeviceTest, DestroyingTheDeviceReleasesWhatIsLeft) {
  EBB_ASSERT_OK_AND_ASSIGN(void* block, device_->allocate(kMiB));
  const std::size_t range_bytes = 2 * device_->page_bytes();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(range_bytes));
  EBB_ASSERT_OK(device_->map_pages(base, device_->page_bytes()));
  EBB_ASSERT_OK_AND_ASSIGN(void* pinned, device_->allocate_pinned_host(4096));
  struct Region {
    const char* what;
    const void* ptr;
    std::size_t bytes;
  };
  const Region regions[] = {{"the allocation", block, kMiB},
                            {"the reserved range", base, range_bytes},
                            {"the pinned host memory", pinned, 4096}};
  for (const Region& r : regions) ASSERT_TRUE(any_page_mapped(r.ptr, r.bytes)) << r.what;
  device_.reset();
  bool left[std::size(regions)];
  for (std::size_t i = 0; i < std::size(regions); ++i) {
    left[i] = any_page_mapped(regions[i].ptr, regions[i].bytes);
  }
  for (std::size_t i = 0; i < std::size(regions); ++i) {
    EXPECT_FALSE(left[i]) << regions[i].what << " is still mapped after the device is gone";
  }
}

// Clears CAP_IPC_LOCK from this process's capability sets: with it (root has it) mlock ignores
// RLIMIT_MEMLOCK. False when the sets cannot be read or written.
bool drop_ipc_lock_capability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  const std::uint32_t bit = std::uint32_t{1} << (CAP_IPC_LOCK % 32);
  data[CAP_IPC_LOCK / 32].effective &= ~bit;
  data[CAP_IPC_LOCK / 32].permitted &= ~bit;
  data[CAP_IPC_LOCK / 32].inheritable &= ~bit;
  return syscall(SYS_capset, &header, data) == 0;
}

// The death test's child: drops CAP_IPC_LOCK, lowers RLIMIT_MEMLOCK to 64 KiB (in the child only),
// asks for 4 MiB of pinned memory and reports through its exit code (0: the expected kInternal
// error; 1: the memory was locked anyway; 2: another error; 3: the setup failed) and stderr (the
// error's text).
[[noreturn]] void allocate_pinned_under_a_low_memlock_limit(Device& device) {
  rlimit limit{};
  if (!drop_ipc_lock_capability() || getrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    std::fprintf(stderr, "cannot drop CAP_IPC_LOCK or read RLIMIT_MEMLOCK\n");
    _exit(3);
  }
  limit.rlim_cur = std::min<rlim_t>(64 * kKiB, limit.rlim_max);
  limit.rlim_max = limit.rlim_cur;
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    std::fprintf(stderr, "cannot lower RLIMIT_MEMLOCK\n");
    _exit(3);
  }
  Result<void*> pinned = device.allocate_pinned_host(4 * kMiB);
  if (pinned.ok()) {
    std::fprintf(stderr, "locked 4 MiB under a 64 KiB RLIMIT_MEMLOCK\n");
    _exit(1);
  }
  std::fprintf(stderr, "%s\n", pinned.status().to_string().c_str());
  _exit(pinned.status().code() == StatusCode::kInternal ? 0 : 2);
}

// In a child process, so that it runs as root too (the limit and the capability are the child's
// alone). The threadsafe style re-runs this test in a fresh process rather than forking this
// one, whose device already has a worker thread.
TEST_F(CpuDeviceTest, PinnedHostFailureNamesTheMemlockLimit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(allocate_pinned_under_a_low_memlock_limit(*device_), ::testing::ExitedWithCode(0),
              "mlock of 4194304 bytes of pinned host memory failed: .*RLIMIT_MEMLOCK");
}

// --- Kernels ------------------------------------------------------------------------------

TEST_F(CpuDeviceTest, KernelsRunInOrderOnTheWorker) {
  Stream& stream = device_->default_stream();
  std::vector<int> order;
  std::vector<std::thread::id> threads;
  bool context_ok = true;
  for (int i = 0; i < 1000; ++i) {
    EBB_ASSERT_OK(stream.launch([&, i](const LaunchContext& ctx) {
      context_ok = context_ok && ctx.kind == DeviceKind::kCpu && ctx.native_stream == nullptr;
      order.push_back(i);
      threads.push_back(std::this_thread::get_id());
    }));
  }
  EBB_ASSERT_OK(stream.synchronize());
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(order[i], i);
  EXPECT_TRUE(context_ok);
  EXPECT_NE(threads.front(), std::this_thread::get_id());
  EXPECT_EQ(std::count(threads.begin(), threads.end(), threads.front()), 1000);
}

TEST_F(CpuDeviceTest, ThrowingKernelErrorIsReturnedOnceAndLaterWorkRuns) {
  Stream& stream = device_->default_stream();
  bool later_ran = false;
  EBB_ASSERT_OK(stream.launch([](const LaunchContext&) { throw std::runtime_error("boom 3"); }));
  EBB_ASSERT_OK(stream.launch([](const LaunchContext&) { throw std::runtime_error("second"); }));
  EBB_ASSERT_OK(stream.launch([&](const LaunchContext&) { later_ran = true; }));
  const Status status = stream.synchronize();
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_NE(status.message().find("boom 3"), std::string::npos) << "the first error is kept";
  EXPECT_TRUE(later_ran);
  EBB_EXPECT_OK(stream.synchronize());

  EBB_ASSERT_OK(stream.launch([](const LaunchContext&) { throw 7; }));
  EXPECT_EQ(device_->synchronize().code(), StatusCode::kInternal);
  EBB_EXPECT_OK(device_->synchronize());
  EXPECT_EQ(stream.launch(Kernel()).code(), StatusCode::kInvalidArgument);
}

TEST_F(CpuDeviceTest, StreamDestructionDrainsItsQueue) {
  std::atomic<int> ran{0};
  {
    EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> stream, device_->create_stream());
    EBB_ASSERT_OK(stream->launch([&](const LaunchContext&) {
      std::this_thread::sleep_for(milliseconds(20));
      ++ran;
    }));
    EBB_ASSERT_OK(stream->launch([&](const LaunchContext&) { ++ran; }));
  }
  EXPECT_EQ(ran.load(), 2);
}

// --- Events across streams ----------------------------------------------------------------

TEST_F(CpuDeviceTest, WaitBlocksTheWaitingStreamUntilTheEvent) {
  int value = 0;  // plain int: the event is the only thing ordering the two kernels
  int seen = -1;
  double seen_after_ms = 0;
  // Declared after what the kernels touch, so that a failing test drains them first.
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> written, device_->create_event());
  const Clock::time_point start = Clock::now();
  EBB_ASSERT_OK(a->launch([&](const LaunchContext&) {
    std::this_thread::sleep_for(milliseconds(50));
    value = 42;
  }));
  EBB_ASSERT_OK(a->record(*written));
  EBB_ASSERT_OK(b->wait(*written));
  EBB_ASSERT_OK(b->launch([&](const LaunchContext&) {
    seen = value;
    seen_after_ms = ms_since(start);
  }));
  EBB_ASSERT_OK(b->synchronize());
  EXPECT_EQ(seen, 42);
  EXPECT_GE(seen_after_ms, 50.0);
}

TEST_F(CpuDeviceTest, RecordingAgainDoesNotMoveAnEarlierWait) {
  std::atomic<bool> first_done{false};
  std::atomic<bool> b_saw_first{false};
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> event, device_->create_event());
  Gate gate;  // after the streams: destroyed, so opened, before they drain
  EBB_ASSERT_OK(a->launch([&](const LaunchContext&) { first_done = true; }));
  EBB_ASSERT_OK(a->record(*event));
  EBB_ASSERT_OK(b->wait(*event));  // captures the first record
  EBB_ASSERT_OK(a->launch([waiter = gate.waiter()](const LaunchContext&) { waiter.wait(); }));
  EBB_ASSERT_OK(a->record(*event));  // the second record waits behind the gate
  EBB_ASSERT_OK(b->launch([&](const LaunchContext&) { b_saw_first = first_done.load(); }));
  EBB_ASSERT_OK(b->synchronize());  // would hang if the wait had moved to the second record
  EXPECT_TRUE(b_saw_first);
  EBB_ASSERT_OK_AND_ASSIGN(bool done, event->query());
  EXPECT_FALSE(done) << "the event stands for its latest record, still behind the gate";
  gate.open();
  EBB_ASSERT_OK(event->synchronize());
  EBB_ASSERT_OK(a->synchronize());
}

TEST_F(CpuDeviceTest, ElapsedOfAnIncompleteEventIsFailedPrecondition) {
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());
  Gate gate;
  EBB_ASSERT_OK(stream.record(*start));
  EBB_ASSERT_OK(stream.launch([waiter = gate.waiter()](const LaunchContext&) {
    waiter.wait();
    std::this_thread::sleep_for(milliseconds(30));
  }));
  EBB_ASSERT_OK(stream.record(*end));
  EBB_ASSERT_OK_AND_ASSIGN(bool done, end->query());
  EXPECT_FALSE(done);
  EXPECT_EQ(end->elapsed_ms_since(*start).status().code(), StatusCode::kFailedPrecondition);
  gate.open();
  EBB_ASSERT_OK(end->synchronize());
  EBB_ASSERT_OK_AND_ASSIGN(double elapsed_ms, end->elapsed_ms_since(*start));
  EXPECT_GE(elapsed_ms, 30.0) << "the stamps are taken when the worker reaches each record";
}

// An Event of no backend at all.
class ForeignEvent final : public Event {
 public:
  Result<bool> query() override { return true; }
  Status synchronize() override { return ok_status(); }
  Result<double> elapsed_ms_since(Event&) override { return 0.0; }
};

TEST_F(CpuDeviceTest, EventOfAnotherBackendIsInvalid) {
  ForeignEvent foreign;
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> own, device_->create_event());
  EXPECT_EQ(device_->default_stream().record(foreign).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->default_stream().wait(foreign).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(own->elapsed_ms_since(foreign).status().code(), StatusCode::kInvalidArgument);
}

// --- Modelled links -----------------------------------------------------------------------

TEST_F(CpuDeviceTest, ThrottledCopiesTakeAtLeastTheModelledTime) {
  DeviceOptions options = cpu_options();
  options.host_to_device = LinkModel{400e6, std::chrono::nanoseconds(0)};
  options.device_to_host = LinkModel{0, milliseconds(30)};
  make(options);
  constexpr std::size_t kBytes = 8 * kMiB;  // 20.97 ms at 400 MB/s
  const double modelled_ms = kBytes / 400e6 * 1e3;
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 1);
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kBytes));
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());

  Clock::time_point t0 = Clock::now();
  EBB_ASSERT_OK(stream.record(*start));
  EBB_ASSERT_OK(stream.copy_async(d, source.data(), kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(stream.record(*end));
  EBB_ASSERT_OK(stream.synchronize());
  EXPECT_GE(ms_since(t0), modelled_ms);
  EBB_ASSERT_OK_AND_ASSIGN(double elapsed_ms, end->elapsed_ms_since(*start));
  EXPECT_GE(elapsed_ms, modelled_ms);

  std::uint8_t byte = 0;
  t0 = Clock::now();
  EBB_ASSERT_OK(stream.copy_async(&byte, d, 1, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK(stream.synchronize());
  EXPECT_GE(ms_since(t0), 30.0) << "a one-byte copy still pays the link latency";
  EXPECT_EQ(byte, source[0]);
  EBB_EXPECT_OK(device_->free(d));
}

TEST_F(CpuDeviceTest, CopiesInOneDirectionShareTheLink) {
  DeviceOptions options = cpu_options();
  options.host_to_device = LinkModel{400e6, std::chrono::nanoseconds(0)};
  make(options);
  constexpr std::size_t kBytes = 8 * kMiB;
  const double modelled_ms = kBytes / 400e6 * 1e3;
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 1);
  EBB_ASSERT_OK_AND_ASSIGN(void* d1, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(void* d2, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  const Clock::time_point t0 = Clock::now();
  EBB_ASSERT_OK(a->copy_async(d1, source.data(), kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(b->copy_async(d2, source.data(), kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(device_->synchronize());
  EXPECT_GE(ms_since(t0), 2 * modelled_ms) << "two copies on one link take turns";
  EBB_EXPECT_OK(device_->free(d1));
  EBB_EXPECT_OK(device_->free(d2));
}

TEST_F(CpuDeviceTest, KernelOnAnotherStreamRunsDuringAThrottledCopy) {
  DeviceOptions options = cpu_options();
  options.host_to_device = LinkModel{10e6, std::chrono::nanoseconds(0)};  // 8 MiB: ~840 ms
  make(options);
  constexpr std::size_t kBytes = 8 * kMiB;
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 1);
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> copied, device_->create_event());
  EBB_ASSERT_OK(a->copy_async(d, source.data(), kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(a->record(*copied));
  bool copy_done_when_kernel_ran = true;
  EBB_ASSERT_OK(b->launch(
      [&](const LaunchContext&) { copy_done_when_kernel_ran = copied->query().value(); }));
  EBB_ASSERT_OK(b->synchronize());
  EXPECT_FALSE(copy_done_when_kernel_ran) << "stream b waited for stream a's copy";
  EBB_ASSERT_OK(a->synchronize());
  EBB_EXPECT_OK(device_->free(d));
}

// --- Thread safety ------------------------------------------------------------------------

// Several threads use one device at once: each its own stream, allocating, copying and freeing,
// while another thread drains the whole device. Run under the sanitizers to catch races.
TEST_F(CpuDeviceTest, ConcurrentUseFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr std::size_t kBytes = 64 * kKiB;
  std::atomic<bool> stop{false};
  std::thread drainer([&] {
    while (!stop) ASSERT_TRUE(device_->synchronize().ok());
  });
  std::vector<std::thread> workers;
  workers.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      Result<std::unique_ptr<Stream>> stream = device_->create_stream();
      ASSERT_TRUE(stream.ok());
      Result<std::unique_ptr<Event>> event = device_->create_event();
      ASSERT_TRUE(event.ok());
      for (int i = 0; i < 50; ++i) {
        Result<void*> d = device_->allocate(kBytes);
        ASSERT_TRUE(d.ok()) << d.status().to_string();
        const auto value = static_cast<std::uint8_t>(t * 50 + i);
        ASSERT_TRUE((*stream)->memset_async(*d, value, kBytes).ok());
        ASSERT_TRUE((*stream)->record(**event).ok());
        ASSERT_TRUE(device_->default_stream().wait(**event).ok());
        std::vector<std::uint8_t> got(kBytes);
        ASSERT_TRUE((*stream)->copy_async(got.data(), *d, kBytes, CopyKind::kDeviceToHost).ok());
        ASSERT_TRUE((*stream)->synchronize().ok());
        ASSERT_EQ(std::count(got.begin(), got.end(), value), static_cast<long>(kBytes));
        ASSERT_TRUE(device_->free(*d).ok());
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  stop = true;
  drainer.join();
  EBB_EXPECT_OK(device_->synchronize());
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

}  // namespace
}  // namespace ebb
