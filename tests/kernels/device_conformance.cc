#include "tests/kernels/device_conformance.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <utility>

namespace ebb {

std::string device_factory_name(const ::testing::TestParamInfo<DeviceFactory>& info) {
  return info.param.name;
}

void PrintTo(const DeviceFactory& factory, std::ostream* os) { *os << factory.name; }

std::vector<std::uint8_t> test_pattern(std::size_t bytes, std::uint32_t seed) {
  std::vector<std::uint8_t> out(bytes);
  std::uint32_t x = seed * 2654435761u + 12345u;
  for (std::size_t i = 0; i < bytes; ++i) {
    x = x * 1664525u + 1013904223u;  // an LCG: cheap, and no two seeds agree for long
    out[i] = static_cast<std::uint8_t>(x >> 24);
  }
  return out;
}

void DeviceConformance::SetUp() {
  Result<std::unique_ptr<Device>> device = GetParam().create();
  if (!device.ok() && device.status().code() == StatusCode::kUnavailable) {
    GTEST_SKIP() << GetParam().name << ": " << device.status().message();
  }
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  device_ = std::move(device).value();
}

std::vector<std::uint8_t> DeviceConformance::read_device(Stream& stream, const void* src,
                                                         std::size_t bytes) {
  std::vector<std::uint8_t> out(bytes);
  EXPECT_TRUE(stream.copy_async(out.data(), src, bytes, CopyKind::kDeviceToHost).ok());
  EXPECT_TRUE(stream.synchronize().ok());
  return out;
}

void DeviceConformance::write_device(Stream& stream, void* dst,
                                     const std::vector<std::uint8_t>& data) {
  EXPECT_TRUE(stream.copy_async(dst, data.data(), data.size(), CopyKind::kHostToDevice).ok());
  EXPECT_TRUE(stream.synchronize().ok());
}

namespace {

char* bytes_at(void* ptr, std::size_t offset) { return static_cast<char*>(ptr) + offset; }

// --- Identity and streams -----------------------------------------------------------------

TEST_P(DeviceConformance, ReportsCapacityNameAndPageSize) {
  EXPECT_FALSE(device_->name().empty());
  EXPECT_GT(device_->capacity_bytes(), 0u);
  EXPECT_EQ(device_->committed_bytes(), 0u);
  const std::size_t page = device_->page_bytes();
  EXPECT_GT(page, 0u);
  EXPECT_EQ(page & (page - 1), 0u) << "page_bytes " << page << " is not a power of two";
}

TEST_P(DeviceConformance, StreamIdsAreUniqueAmongLiveStreams) {
  std::set<std::uint32_t> ids = {device_->default_stream().id()};
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 4; ++i) {
    EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> stream, device_->create_stream());
    EXPECT_TRUE(ids.insert(stream->id()).second) << "id " << stream->id() << " repeated";
    streams.push_back(std::move(stream));
  }
}

// --- Allocation ---------------------------------------------------------------------------

TEST_P(DeviceConformance, AllocateZeroBytesIsInvalid) {
  Result<void*> ptr = device_->allocate(0);
  ASSERT_FALSE(ptr.ok());
  EXPECT_EQ(ptr.status().code(), StatusCode::kInvalidArgument) << ptr.status().to_string();
}

TEST_P(DeviceConformance, AllocateOverCapacityIsOutOfMemory) {
  Result<void*> ptr = device_->allocate(device_->capacity_bytes() + 1);
  ASSERT_FALSE(ptr.ok());
  EXPECT_EQ(ptr.status().code(), StatusCode::kOutOfMemory) << ptr.status().to_string();
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

TEST_P(DeviceConformance, AllocateUpToCapacityThenOutOfMemory) {
  const std::size_t half = device_->capacity_bytes() / 2;
  EBB_ASSERT_OK_AND_ASSIGN(void* first, device_->allocate(half));
  EXPECT_EQ(device_->committed_bytes(), half);
  EBB_ASSERT_OK_AND_ASSIGN(
      void* rest, device_->allocate(device_->capacity_bytes() - device_->committed_bytes()));
  EXPECT_EQ(device_->committed_bytes(), device_->capacity_bytes());
  Result<void*> more = device_->allocate(1);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().code(), StatusCode::kOutOfMemory) << more.status().to_string();
  EBB_EXPECT_OK(device_->free(first));
  EBB_EXPECT_OK(device_->free(rest));
  EXPECT_EQ(device_->committed_bytes(), 0u);
  // What was freed can be handed out again.
  EBB_ASSERT_OK_AND_ASSIGN(void* again, device_->allocate(half));
  EBB_EXPECT_OK(device_->free(again));
}

TEST_P(DeviceConformance, AllocationsAreAlignedAndDistinct) {
  std::vector<void*> ptrs;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{511}, std::size_t{4097}, kMiB + 3}) {
    EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device_->allocate(bytes));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(ptr) % 256, 0u) << bytes << " bytes at " << ptr;
    ptrs.push_back(ptr);
  }
  EXPECT_EQ(std::set<void*>(ptrs.begin(), ptrs.end()).size(), ptrs.size());
  for (void* ptr : ptrs) EBB_EXPECT_OK(device_->free(ptr));
}

TEST_P(DeviceConformance, FreeOfForeignPointerIsInvalid) {
  int on_stack = 0;
  EXPECT_EQ(device_->free(&on_stack).code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device_->allocate(4096));
  EXPECT_EQ(device_->free(bytes_at(ptr, 512)).code(), StatusCode::kInvalidArgument)
      << "an interior pointer is not an allocation";
  EBB_EXPECT_OK(device_->free(ptr));
}

TEST_P(DeviceConformance, DoubleFreeIsInvalid) {
  EBB_ASSERT_OK_AND_ASSIGN(void* ptr, device_->allocate(4096));
  EBB_ASSERT_OK(device_->free(ptr));
  const Status again = device_->free(ptr);
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument) << again.to_string();
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

// --- Copies and memsets -------------------------------------------------------------------

// Every kind of copy, at sizes that are not multiples of anything and at odd offsets: host ->
// device -> device -> host -> host, each leg landing at a different offset, with guard bytes
// around the host destinations that must survive.
TEST_P(DeviceConformance, CopiesOfEveryKindAtOddSizesAndOffsets) {
  Stream& stream = device_->default_stream();
  constexpr std::size_t kSlack = 1024;
  constexpr std::uint8_t kGuard = 0xEE;
  std::uint32_t seed = 1;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{511}, std::size_t{4097}, 3 * kMiB + 17}) {
    for (std::size_t offset : {std::size_t{0}, std::size_t{1}, std::size_t{513}}) {
      SCOPED_TRACE(::testing::Message() << bytes << " bytes at offset " << offset);
      const std::size_t other_offset = (offset * 7 + 3) % kSlack;
      const std::vector<std::uint8_t> source = test_pattern(bytes + kSlack, seed++);
      EBB_ASSERT_OK_AND_ASSIGN(void* d1, device_->allocate(bytes + kSlack));
      EBB_ASSERT_OK_AND_ASSIGN(void* d2, device_->allocate(bytes + kSlack));
      std::vector<std::uint8_t> h1(bytes + kSlack, kGuard);
      std::vector<std::uint8_t> h2(bytes + kSlack, kGuard);

      EBB_ASSERT_OK(stream.copy_async(bytes_at(d1, offset), source.data() + offset, bytes,
                                      CopyKind::kHostToDevice));
      EBB_ASSERT_OK(stream.copy_async(bytes_at(d2, other_offset), bytes_at(d1, offset), bytes,
                                      CopyKind::kDeviceToDevice));
      EBB_ASSERT_OK(stream.copy_async(h1.data() + offset, bytes_at(d2, other_offset), bytes,
                                      CopyKind::kDeviceToHost));
      EBB_ASSERT_OK(stream.copy_async(h2.data() + other_offset, h1.data() + offset, bytes,
                                      CopyKind::kHostToHost));
      EBB_ASSERT_OK(stream.synchronize());

      const auto want = source.begin() + static_cast<std::ptrdiff_t>(offset);
      EXPECT_TRUE(std::equal(want, want + static_cast<std::ptrdiff_t>(bytes),
                             h1.begin() + static_cast<std::ptrdiff_t>(offset)));
      EXPECT_TRUE(std::equal(want, want + static_cast<std::ptrdiff_t>(bytes),
                             h2.begin() + static_cast<std::ptrdiff_t>(other_offset)));
      for (std::size_t i = 0; i < h1.size(); ++i) {
        if (i < offset || i >= offset + bytes) {
          ASSERT_EQ(h1[i], kGuard) << "h1 byte " << i;
        }
        if (i < other_offset || i >= other_offset + bytes) {
          ASSERT_EQ(h2[i], kGuard) << "h2 byte " << i;
        }
      }
      EBB_EXPECT_OK(device_->free(d1));
      EBB_EXPECT_OK(device_->free(d2));
    }
  }
}

TEST_P(DeviceConformance, MemsetWritesExactlyItsBytes) {
  Stream& stream = device_->default_stream();
  constexpr std::size_t kBytes = 8192;
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kBytes));
  EBB_ASSERT_OK(stream.memset_async(d, 0x11, kBytes));
  EBB_ASSERT_OK(stream.memset_async(bytes_at(d, 513), 0xAB, 4097));
  EBB_ASSERT_OK(stream.memset_async(d, 0x00, 1));
  const std::vector<std::uint8_t> got = read_device(stream, d, kBytes);
  for (std::size_t i = 0; i < kBytes; ++i) {
    const std::uint8_t want = i == 0 ? 0x00 : (i >= 513 && i < 513 + 4097) ? 0xAB : 0x11;
    ASSERT_EQ(got[i], want) << "byte " << i;
  }
  EBB_EXPECT_OK(device_->free(d));
}

TEST_P(DeviceConformance, ZeroByteCopiesAndMemsetsSucceed) {
  Stream& stream = device_->default_stream();
  EBB_EXPECT_OK(stream.copy_async(nullptr, nullptr, 0, CopyKind::kHostToDevice));
  EBB_EXPECT_OK(stream.copy_async(nullptr, nullptr, 0, CopyKind::kDeviceToHost));
  EBB_EXPECT_OK(stream.memset_async(nullptr, 0, 0));
  EBB_EXPECT_OK(stream.synchronize());
}

TEST_P(DeviceConformance, NullPointersAreInvalid) {
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(4096));
  std::vector<std::uint8_t> host(4096);
  EXPECT_EQ(stream.copy_async(nullptr, host.data(), 16, CopyKind::kHostToDevice).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.copy_async(d, nullptr, 16, CopyKind::kHostToDevice).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.copy_async(host.data(), nullptr, 16, CopyKind::kDeviceToHost).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.copy_async(nullptr, d, 16, CopyKind::kDeviceToDevice).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.memset_async(nullptr, 0, 16).code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(stream.synchronize());
  EBB_EXPECT_OK(device_->free(d));
}

// --- Ordering -----------------------------------------------------------------------------

// Many small ops on one stream whose end state is right only if each ran after the one before:
// every memset of `a` must land before the copy that snapshots it, and not after.
TEST_P(DeviceConformance, SmallOpsOnOneStreamRunInOrder) {
  Stream& stream = device_->default_stream();
  constexpr std::size_t kRounds = 256;
  constexpr std::size_t kSnapshot = 64;
  EBB_ASSERT_OK_AND_ASSIGN(void* a, device_->allocate(4096));
  EBB_ASSERT_OK_AND_ASSIGN(void* b, device_->allocate(kRounds * kSnapshot));
  for (std::size_t i = 0; i < kRounds; ++i) {
    EBB_ASSERT_OK(stream.memset_async(a, static_cast<std::uint8_t>(i), 4096));
    EBB_ASSERT_OK(
        stream.copy_async(bytes_at(b, i * kSnapshot), a, kSnapshot, CopyKind::kDeviceToDevice));
  }
  EBB_ASSERT_OK(stream.memset_async(a, 1, 4096));
  EBB_ASSERT_OK(stream.memset_async(a, 2, 4096));
  const std::vector<std::uint8_t> snapshots = read_device(stream, b, kRounds * kSnapshot);
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    ASSERT_EQ(snapshots[i], static_cast<std::uint8_t>(i / kSnapshot)) << "byte " << i;
  }
  const std::vector<std::uint8_t> last = read_device(stream, a, 4096);
  EXPECT_EQ(std::count(last.begin(), last.end(), 2), 4096);
  EBB_EXPECT_OK(device_->free(a));
  EBB_EXPECT_OK(device_->free(b));
}

// A small memset enqueued after a big copy must land after it, not be overwritten by it.
TEST_P(DeviceConformance, SmallOpAfterBigCopyLandsLast) {
  Stream& stream = device_->default_stream();
  constexpr std::size_t kBytes = 8 * kMiB;
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 7);
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kBytes));
  EBB_ASSERT_OK(stream.copy_async(d, source.data(), kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(stream.memset_async(d, 0, 100));
  const std::vector<std::uint8_t> got = read_device(stream, d, kBytes);
  EXPECT_EQ(std::count(got.begin(), got.begin() + 100, 0), 100);
  EXPECT_TRUE(std::equal(got.begin() + 100, got.end(), source.begin() + 100));
  EBB_EXPECT_OK(device_->free(d));
}

// Enqueues on `stream` enough device-to-device traffic to keep it busy for a while, ending with
// `buf` holding what it held before.
void enqueue_busy_work(Stream& stream, void* buf, void* scratch, std::size_t bytes) {
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(stream.copy_async(scratch, buf, bytes, CopyKind::kDeviceToDevice).ok());
    ASSERT_TRUE(stream.copy_async(buf, scratch, bytes, CopyKind::kDeviceToDevice).ok());
  }
}

// Read-after-write across streams: B waits on A's event, then must see A's last write.
TEST_P(DeviceConformance, WaitOrdersReadAfterWriteAcrossStreams) {
  constexpr std::size_t kBytes = 8 * kMiB;
  EBB_ASSERT_OK_AND_ASSIGN(void* buf, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(void* scratch, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> written, device_->create_event());
  for (std::uint32_t round = 0; round < 3; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    const std::vector<std::uint8_t> source = test_pattern(kBytes, 100 + round);
    EBB_ASSERT_OK(a->memset_async(buf, 0, kBytes));
    enqueue_busy_work(*a, buf, scratch, kBytes);
    EBB_ASSERT_OK(a->copy_async(buf, source.data(), kBytes, CopyKind::kHostToDevice));
    EBB_ASSERT_OK(a->record(*written));
    EBB_ASSERT_OK(b->wait(*written));
    std::vector<std::uint8_t> got(kBytes);
    EBB_ASSERT_OK(b->copy_async(got.data(), buf, kBytes, CopyKind::kDeviceToHost));
    EBB_ASSERT_OK(b->synchronize());
    EXPECT_TRUE(got == source) << "stream b read before stream a's write landed";
    EBB_ASSERT_OK(a->synchronize());
  }
  EBB_EXPECT_OK(device_->free(buf));
  EBB_EXPECT_OK(device_->free(scratch));
}

// Write-after-read across streams: B overwrites `buf` only after A has finished reading it.
TEST_P(DeviceConformance, WaitOrdersWriteAfterReadAcrossStreams) {
  constexpr std::size_t kBytes = 8 * kMiB;
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 9);
  EBB_ASSERT_OK_AND_ASSIGN(void* buf, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(void* scratch, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(void* copy, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> read_done, device_->create_event());
  write_device(*a, buf, source);
  enqueue_busy_work(*a, buf, scratch, kBytes);
  EBB_ASSERT_OK(a->copy_async(copy, buf, kBytes, CopyKind::kDeviceToDevice));
  EBB_ASSERT_OK(a->record(*read_done));
  EBB_ASSERT_OK(b->wait(*read_done));
  EBB_ASSERT_OK(b->memset_async(buf, 0xFF, kBytes));
  EBB_ASSERT_OK(b->synchronize());
  EXPECT_TRUE(read_device(*a, copy, kBytes) == source) << "stream b wrote before a had read";
  EBB_EXPECT_OK(device_->free(buf));
  EBB_EXPECT_OK(device_->free(scratch));
  EBB_EXPECT_OK(device_->free(copy));
}

TEST_P(DeviceConformance, DeviceSynchronizeDrainsEveryStream) {
  constexpr std::size_t kBytes = 4 * kMiB;
  // Unordered streams must not touch the same bytes: each gets its own buffers.
  std::vector<void*> buffers;
  for (int i = 0; i < 5; ++i) {
    EBB_ASSERT_OK_AND_ASSIGN(void* buffer, device_->allocate(kBytes));
    buffers.push_back(buffer);
  }
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> a, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> b, device_->create_stream());
  enqueue_busy_work(*a, buffers[0], buffers[1], kBytes);
  EBB_ASSERT_OK(b->memset_async(buffers[2], 1, kBytes));
  enqueue_busy_work(device_->default_stream(), buffers[3], buffers[4], kBytes);
  EBB_ASSERT_OK(device_->synchronize());
  for (Stream* stream : {a.get(), b.get(), &device_->default_stream()}) {
    EBB_ASSERT_OK_AND_ASSIGN(bool drained, stream->query());
    EXPECT_TRUE(drained) << "stream " << stream->id();
  }
  for (void* buffer : buffers) EBB_EXPECT_OK(device_->free(buffer));
}

// --- Events -------------------------------------------------------------------------------

TEST_P(DeviceConformance, NeverRecordedEventIsCompleteAndImposesNoWait) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> event, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(bool done, event->query());
  EXPECT_TRUE(done);
  EBB_EXPECT_OK(event->synchronize());
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK(stream.wait(*event));
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(4096));
  EBB_ASSERT_OK(stream.memset_async(d, 5, 4096));
  const std::vector<std::uint8_t> got = read_device(stream, d, 4096);
  EXPECT_EQ(std::count(got.begin(), got.end(), 5), 4096);
  EBB_EXPECT_OK(device_->free(d));
}

TEST_P(DeviceConformance, ElapsedTimeNeedsTwoRecordedEvents) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());
  Result<double> none = end->elapsed_ms_since(*start);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition) << none.status().to_string();
  EBB_ASSERT_OK(device_->default_stream().record(*start));
  EBB_ASSERT_OK(device_->default_stream().synchronize());
  Result<double> half = end->elapsed_ms_since(*start);
  ASSERT_FALSE(half.ok());
  EXPECT_EQ(half.status().code(), StatusCode::kFailedPrecondition) << half.status().to_string();
}

TEST_P(DeviceConformance, EventsRecordQuerySynchronizeAndTime) {
  constexpr std::size_t kBytes = 8 * kMiB;
  EBB_ASSERT_OK_AND_ASSIGN(void* buf, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(void* scratch, device_->allocate(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> stream, device_->create_stream());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> start, device_->create_event());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> end, device_->create_event());
  for (int round = 0; round < 2; ++round) {  // the second round re-records both events
    const auto host_start = std::chrono::steady_clock::now();
    EBB_ASSERT_OK(stream->record(*start));
    enqueue_busy_work(*stream, buf, scratch, kBytes);
    EBB_ASSERT_OK(stream->record(*end));
    EBB_ASSERT_OK(end->synchronize());
    const double host_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host_start)
            .count();
    EBB_ASSERT_OK_AND_ASSIGN(bool end_done, end->query());
    EBB_ASSERT_OK_AND_ASSIGN(bool start_done, start->query());
    EXPECT_TRUE(end_done);
    EXPECT_TRUE(start_done) << "an event recorded earlier on the same stream completes first";
    EBB_ASSERT_OK_AND_ASSIGN(bool drained, stream->query());
    EXPECT_TRUE(drained) << "nothing was enqueued after the completed event";
    EBB_ASSERT_OK_AND_ASSIGN(double elapsed_ms, end->elapsed_ms_since(*start));
    // 16 copies of 8 MiB ran between the events, and both were recorded and completed while the
    // host watched (0.01 ms: CUDA's event timer resolution is 0.5 us).
    EXPECT_GT(elapsed_ms, 0.0);
    EXPECT_LE(elapsed_ms, host_ms + 0.01) << "longer than the host waited for both events";
    EBB_ASSERT_OK_AND_ASSIGN(double zero_ms, end->elapsed_ms_since(*end));
    EXPECT_EQ(zero_ms, 0.0);
  }
  EBB_EXPECT_OK(device_->free(buf));
  EBB_EXPECT_OK(device_->free(scratch));
}

TEST_P(DeviceConformance, EventOfAnotherDeviceIsInvalid) {
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Device> other, GetParam().create());
  EBB_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Event> foreign, other->create_event());
  EXPECT_EQ(device_->default_stream().record(*foreign).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->default_stream().wait(*foreign).code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(device_->default_stream().synchronize());
}

// --- Virtual memory -----------------------------------------------------------------------

TEST_P(DeviceConformance, ReserveMapCopyUnmapRelease) {
  const std::size_t page = device_->page_bytes();
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(4 * page));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(base) % page, 0u);
  EXPECT_EQ(device_->committed_bytes(), 0u) << "reserving address space commits nothing";

  // Pages 1 and 2, mapped one at a time, must behave as one contiguous region.
  EBB_ASSERT_OK(device_->map_pages(bytes_at(base, page), page));
  EBB_ASSERT_OK(device_->map_pages(bytes_at(base, 2 * page), page));
  EXPECT_EQ(device_->committed_bytes(), 2 * page);
  const std::vector<std::uint8_t> source = test_pattern(page + 4097, 3);
  void* spanning = bytes_at(base, 2 * page - 4097);
  write_device(stream, spanning, source);
  EXPECT_TRUE(read_device(stream, spanning, source.size()) == source);

  EXPECT_EQ(device_->map_pages(bytes_at(base, page), page).code(), StatusCode::kFailedPrecondition)
      << "a page cannot be mapped twice";
  EXPECT_EQ(device_->map_pages(base, 2 * page).code(), StatusCode::kFailedPrecondition)
      << "a span that overlaps a mapped page cannot be mapped";
  EXPECT_EQ(device_->unmap_pages(base, page).code(), StatusCode::kFailedPrecondition)
      << "an unmapped page cannot be unmapped";
  EXPECT_EQ(device_->release_range(base, 4 * page).code(), StatusCode::kFailedPrecondition)
      << "a range with mapped pages cannot be released";
  EXPECT_EQ(device_->committed_bytes(), 2 * page);

  EBB_ASSERT_OK(device_->unmap_pages(bytes_at(base, page), 2 * page));
  EXPECT_EQ(device_->committed_bytes(), 0u);
  EBB_ASSERT_OK(device_->release_range(base, 4 * page));
  EXPECT_EQ(device_->release_range(base, 4 * page).code(), StatusCode::kInvalidArgument)
      << "a released range cannot be released again";
}

TEST_P(DeviceConformance, MapOutsideRangeOrUnalignedIsInvalid) {
  const std::size_t page = device_->page_bytes();
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range(2 * page));
  EXPECT_EQ(device_->map_pages(bytes_at(base, 2 * page), page).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(bytes_at(base, page), 2 * page).code(), StatusCode::kInvalidArgument)
      << "a span that runs past the end of the range";
  EXPECT_EQ(device_->map_pages(bytes_at(base, 4096), page).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(base, page / 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->map_pages(base, 0).code(), StatusCode::kInvalidArgument);
  int on_stack = 0;
  EXPECT_EQ(device_->map_pages(&on_stack, page).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->committed_bytes(), 0u);
  EXPECT_EQ(device_->reserve_range(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(device_->reserve_range(page + 1).status().code(), StatusCode::kInvalidArgument);
  EBB_EXPECT_OK(device_->release_range(base, 2 * page));
}

TEST_P(DeviceConformance, MappedPagesCountAgainstCapacity) {
  const std::size_t page = device_->page_bytes();
  const std::size_t capacity_pages = device_->capacity_bytes() / page;
  EBB_ASSERT_OK_AND_ASSIGN(void* base, device_->reserve_range((capacity_pages + 1) * page));
  EBB_ASSERT_OK(device_->map_pages(base, capacity_pages * page));
  EXPECT_EQ(device_->committed_bytes(), capacity_pages * page);
  const Status over = device_->map_pages(bytes_at(base, capacity_pages * page), page);
  EXPECT_EQ(over.code(), StatusCode::kOutOfMemory) << over.to_string();
  EXPECT_EQ(device_->allocate(page).status().code(), StatusCode::kOutOfMemory)
      << "whole allocations and mapped pages share one capacity";
  EBB_ASSERT_OK(device_->unmap_pages(base, capacity_pages * page));
  EBB_ASSERT_OK(device_->release_range(base, (capacity_pages + 1) * page));
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

// --- Pinned host memory -------------------------------------------------------------------

TEST_P(DeviceConformance, PinnedHostMemoryCopiesBothWays) {
  constexpr std::size_t kBytes = kMiB + 3;
  Stream& stream = device_->default_stream();
  EBB_ASSERT_OK_AND_ASSIGN(void* pinned_in, device_->allocate_pinned_host(kBytes));
  EBB_ASSERT_OK_AND_ASSIGN(void* pinned_out, device_->allocate_pinned_host(kBytes));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pinned_in) % 256, 0u);
  EXPECT_EQ(device_->committed_bytes(), 0u) << "pinned host memory is not device memory";
  const std::vector<std::uint8_t> source = test_pattern(kBytes, 11);
  std::copy(source.begin(), source.end(), static_cast<std::uint8_t*>(pinned_in));
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(kBytes));
  EBB_ASSERT_OK(stream.copy_async(d, pinned_in, kBytes, CopyKind::kHostToDevice));
  EBB_ASSERT_OK(stream.copy_async(pinned_out, d, kBytes, CopyKind::kDeviceToHost));
  EBB_ASSERT_OK(stream.synchronize());
  EXPECT_TRUE(std::equal(source.begin(), source.end(), static_cast<std::uint8_t*>(pinned_out)));
  EBB_EXPECT_OK(device_->free(d));
  EBB_EXPECT_OK(device_->free_pinned_host(pinned_in));
  EBB_EXPECT_OK(device_->free_pinned_host(pinned_out));
}

TEST_P(DeviceConformance, PinnedHostMisuseIsInvalid) {
  EXPECT_EQ(device_->allocate_pinned_host(0).status().code(), StatusCode::kInvalidArgument);
  int on_stack = 0;
  EXPECT_EQ(device_->free_pinned_host(&on_stack).code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(void* pinned, device_->allocate_pinned_host(4096));
  EBB_ASSERT_OK(device_->free_pinned_host(pinned));
  EXPECT_EQ(device_->free_pinned_host(pinned).code(), StatusCode::kInvalidArgument);
  EBB_ASSERT_OK_AND_ASSIGN(void* d, device_->allocate(4096));
  EXPECT_EQ(device_->free_pinned_host(d).code(), StatusCode::kInvalidArgument)
      << "device memory is not pinned host memory";
  EBB_EXPECT_OK(device_->free(d));
}

}  // namespace
}  // namespace ebb
