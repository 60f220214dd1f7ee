// Unit tests of the caching allocator's rules, on the cpu device.
#include "allocator/caching_allocator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/support/forwarding_device.h"

namespace ebb {
namespace {

using ::testing::HasSubstr;

class CachingAllocatorTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    DeviceOptions options;
    options.capacity_bytes = 256 * kMiB;
    auto device = create_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
  }

  std::unique_ptr<CachingAllocator> make(std::size_t budget_bytes) {
    CachingAllocatorOptions options;
    options.budget_bytes = budget_bytes;
    options.expandable_segments = GetParam();
    auto allocator = CachingAllocator::create(*device_, options);
    EXPECT_TRUE(allocator.ok()) << allocator.status().to_string();
    return std::move(allocator).value();
  }

  void* alloc(CachingAllocator& a, std::size_t bytes) { return alloc(a, bytes, stream()); }
  void* alloc(CachingAllocator& a, std::size_t bytes, Stream& s) {
    auto p = a.allocate(bytes, s);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    return p.ok() ? *p : nullptr;
  }
  Stream& stream() { return device_->default_stream(); }

  std::unique_ptr<Device> device_;
};

TEST_P(CachingAllocatorTest, RoundsTo512BytesAndAligns) {
  auto a = make(64 * kMiB);
  void* p = alloc(*a, 1);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 512, 0u);
  EXPECT_EQ(*a->block_bytes(p), 512u);
  void* q = alloc(*a, 513);
  EXPECT_EQ(*a->block_bytes(q), 1024u);
  EXPECT_EQ(a->stats().all.requested_bytes.current, 514);
  EXPECT_EQ(a->stats().all.allocated_bytes.current, 1536);
  ASSERT_TRUE(a->free(p).ok());
  ASSERT_TRUE(a->free(q).ok());
}

TEST_P(CachingAllocatorTest, FreedBlockIsServedAgainFromTheCache) {
  auto a = make(64 * kMiB);
  void* p = alloc(*a, 4096);
  ASSERT_TRUE(a->free(p).ok());
  const AllocatorStats before = a->stats();
  void* q = alloc(*a, 4096);
  EXPECT_EQ(p, q);
  EXPECT_EQ(a->stats().num_device_alloc, before.num_device_alloc);
  EXPECT_EQ(a->stats().all.reserved_bytes.current, before.all.reserved_bytes.current);
  ASSERT_TRUE(a->free(q).ok());
}

TEST_P(CachingAllocatorTest, SmallAndLargeRequestsGoToTheirPools) {
  auto a = make(64 * kMiB);
  void* small = alloc(*a, kMiB);
  void* large = alloc(*a, kMiB + 1);
  const AllocatorStats s = a->stats();
  EXPECT_EQ(s.pool[static_cast<int>(PoolKind::kSmall)].allocated_bytes.current,
            static_cast<std::int64_t>(kMiB));
  EXPECT_EQ(s.pool[static_cast<int>(PoolKind::kLarge)].allocated_bytes.current,
            static_cast<std::int64_t>(kMiB + 512));
  ASSERT_TRUE(a->free(small).ok());
  ASSERT_TRUE(a->free(large).ok());
}

TEST_P(CachingAllocatorTest, NeighboursCoalesceOnFree) {
  auto a = make(64 * kMiB);
  void* p1 = alloc(*a, 64 * kKiB);
  void* p2 = alloc(*a, 64 * kKiB);
  void* guard = alloc(*a, 64 * kKiB);
  ASSERT_EQ(static_cast<char*>(p2), static_cast<char*>(p1) + 64 * kKiB);
  ASSERT_TRUE(a->free(p1).ok());
  ASSERT_TRUE(a->free(p2).ok());
  const std::int64_t device_allocs = a->stats().num_device_alloc;
  void* both = alloc(*a, 128 * kKiB);
  EXPECT_EQ(both, p1);  // the two freed neighbours merged into one block
  EXPECT_EQ(a->stats().num_device_alloc, device_allocs);
  ASSERT_TRUE(a->free(both).ok());
  ASSERT_TRUE(a->free(guard).ok());
}

TEST_P(CachingAllocatorTest, StatsFollowPyTorchsVocabulary) {
  auto a = make(64 * kMiB);
  void* p = alloc(*a, 4096);
  AllocatorStats s = a->stats();
  // Either way one 2 MiB unit of memory backs the block (a small segment, or one page).
  EXPECT_EQ(s.all.reserved_bytes.current, static_cast<std::int64_t>(2 * kMiB));
  EXPECT_EQ(s.all.allocated_bytes.current, 4096);
  EXPECT_EQ(s.all.active_bytes.current, 4096);
  EXPECT_EQ(s.all.inactive_split_bytes.current, static_cast<std::int64_t>(2 * kMiB - 4096));
  EXPECT_EQ(s.all.allocation.current, 1);
  EXPECT_EQ(s.all.segment.current, 1);
  ASSERT_TRUE(a->free(p).ok());
  s = a->stats();
  EXPECT_EQ(s.all.allocated_bytes.current, 0);
  EXPECT_EQ(s.all.allocated_bytes.peak, 4096);
  EXPECT_EQ(s.all.allocated_bytes.allocated, 4096);
  EXPECT_EQ(s.all.allocated_bytes.freed, 4096);
  EXPECT_EQ(s.all.inactive_split_bytes.current, 0);  // no live block: cached, not split
  a->reset_peak_stats();
  EXPECT_EQ(a->stats().all.allocated_bytes.peak, 0);
}

TEST_P(CachingAllocatorTest, BestFitPicksTheSmallestBlockThatFits) {
  auto a = make(64 * kMiB);
  void* big = alloc(*a, 96 * kKiB);
  void* g1 = alloc(*a, 512);
  void* small = alloc(*a, 40 * kKiB);
  void* g2 = alloc(*a, 512);
  ASSERT_TRUE(a->free(big).ok());
  ASSERT_TRUE(a->free(small).ok());
  void* p = alloc(*a, 36 * kKiB);
  EXPECT_EQ(p, small);
  for (void* q : {p, g1, g2}) ASSERT_TRUE(a->free(q).ok());
}

TEST_P(CachingAllocatorTest, ReservedNeverPassesTheBudgetAndOomReportsState) {
  auto a = make(16 * kMiB);
  std::vector<void*> held;
  Status failure;
  for (int i = 0; i < 100; ++i) {
    auto p = a->allocate(3 * kMiB, stream(), "activation");
    if (!p.ok()) {
      failure = p.status();
      break;
    }
    held.push_back(*p);
  }
  ASSERT_EQ(failure.code(), StatusCode::kOutOfMemory);
  EXPECT_THAT(failure.message(), HasSubstr("3145728 bytes"));
  EXPECT_THAT(failure.message(), HasSubstr("'activation'"));
  EXPECT_THAT(failure.message(), HasSubstr("budget of 16777216 bytes"));
  EXPECT_THAT(failure.message(), HasSubstr("Live:"));
  EXPECT_THAT(failure.message(), HasSubstr("cached"));
  EXPECT_THAT(failure.message(), HasSubstr("largest free block"));
  const AllocatorStats s = a->stats();
  EXPECT_LE(s.all.reserved_bytes.peak, static_cast<std::int64_t>(16 * kMiB));
  EXPECT_EQ(s.num_ooms, 1);
  EXPECT_GE(held.size(), 4u);
  for (void* p : held) ASSERT_TRUE(a->free(p).ok());
}

TEST_P(CachingAllocatorTest, BadRequestsAreRejectedWithTheReason) {
  auto a = make(16 * kMiB);
  auto zero = a->allocate(0, stream(), "x");
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("zero-byte"));
  auto huge = a->allocate(17 * kMiB, stream());
  EXPECT_EQ(huge.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.status().message(), HasSubstr("larger than the whole budget"));

  int on_stack = 0;
  Status foreign = a->free(&on_stack);
  EXPECT_EQ(foreign.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(foreign.message(), HasSubstr("never handed out"));
  EXPECT_EQ(a->free(nullptr).code(), StatusCode::kInvalidArgument);

  void* p = alloc(*a, 4096);
  void* keep = alloc(*a, 4096);
  ASSERT_TRUE(a->free(p).ok());
  Status twice = a->free(p);
  EXPECT_EQ(twice.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.message(), HasSubstr("not a live allocation"));
  Status inside = a->free(static_cast<char*>(keep) + 512);
  EXPECT_EQ(inside.code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(a->free(keep).ok());
  EXPECT_EQ(a->stats().all.allocation.current, 0);
}

TEST_P(CachingAllocatorTest, BudgetMustFitTheDeviceAndTheSmallestAllocation) {
  CachingAllocatorOptions options;
  options.expandable_segments = GetParam();
  options.budget_bytes = 512 * kMiB;
  auto too_big = CachingAllocator::create(*device_, options);
  EXPECT_EQ(too_big.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("exceeds the capacity"));
  options.budget_bytes = 256;
  auto too_small = CachingAllocator::create(*device_, options);
  EXPECT_EQ(too_small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(too_small.status().message(), HasSubstr("below the smallest allocation"));
}

TEST_P(CachingAllocatorTest, EmptyCacheReturnsEveryCachedByte) {
  auto a = make(64 * kMiB);
  std::vector<void*> ps;
  for (std::size_t bytes : {512 * kKiB, 3 * kMiB, 12 * kMiB, 4 * kKiB})
    ps.push_back(alloc(*a, bytes));
  for (void* p : ps) ASSERT_TRUE(a->free(p).ok());
  EXPECT_GT(a->stats().all.reserved_bytes.current, 0);
  ASSERT_TRUE(a->empty_cache().ok());
  EXPECT_EQ(a->stats().all.reserved_bytes.current, 0);
  EXPECT_EQ(device_->committed_bytes(), 0u);
  void* again = alloc(*a, 3 * kMiB);  // still usable afterwards
  ASSERT_TRUE(a->free(again).ok());
}

TEST_P(CachingAllocatorTest, MemoryHoldsDataAcrossReuse) {
  auto a = make(64 * kMiB);
  const std::size_t bytes = 5 * kMiB + 123;
  void* p = alloc(*a, bytes);
  std::vector<std::uint8_t> in(bytes), out(bytes);
  for (std::size_t i = 0; i < bytes; ++i) in[i] = static_cast<std::uint8_t>(i * 131 + 7);
  ASSERT_TRUE(stream().copy_async(p, in.data(), bytes, CopyKind::kHostToDevice).ok());
  ASSERT_TRUE(stream().copy_async(out.data(), p, bytes, CopyKind::kDeviceToHost).ok());
  ASSERT_TRUE(stream().synchronize().ok());
  EXPECT_EQ(in, out);
  ASSERT_TRUE(a->free(p).ok());
}

TEST_P(CachingAllocatorTest, BlockFreedOnABusyStreamIsNotGivenToAnotherUntilItIsPast) {
  auto a = make(64 * kMiB);
  auto other = device_->create_stream();
  ASSERT_TRUE(other.ok());
  Stream& s = stream();
  Stream& t = **other;
  // Keep s busy so that its free is not yet complete on the device.
  std::atomic<bool> release{false};
  ASSERT_TRUE(s.launch([&](const LaunchContext&) {
                 while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
               }).ok());
  void* p = alloc(*a, 64 * kKiB, s);
  void* guard = alloc(*a, 64 * kKiB, s);  // keeps p's segment in use through empty_cache below
  ASSERT_TRUE(a->free(p).ok());
  // Same stream: reusable at once, stream order makes it safe.
  void* same = alloc(*a, 64 * kKiB, s);
  EXPECT_EQ(same, p);
  ASSERT_TRUE(a->free(same).ok());
  // Another stream: not until an event shows s is past the free.
  void* elsewhere = alloc(*a, 64 * kKiB, t);
  EXPECT_NE(elsewhere, p);
  release = true;
  ASSERT_TRUE(s.synchronize().ok());
  // Now s has passed: once the allocator observes that (empty_cache waits for the streams; p's
  // segment stays, `guard` lives in it), p's block serves t too, as the best fit it is.
  ASSERT_TRUE(a->empty_cache().ok());
  void* later = alloc(*a, 64 * kKiB, t);
  EXPECT_EQ(later, p) << "the block freed on s was not reused on t after s had passed";
  ASSERT_TRUE(a->free(later).ok());
  ASSERT_TRUE(a->free(elsewhere).ok());
  ASSERT_TRUE(a->free(guard).ok());
}

TEST_P(CachingAllocatorTest, FreeOnTheLastUseStreamDefersReuseElsewhere) {
  auto a = make(64 * kMiB);
  auto copy = device_->create_stream();
  ASSERT_TRUE(copy.ok());
  std::atomic<bool> release{false};
  ASSERT_TRUE((*copy)
                  ->launch([&](const LaunchContext&) {
                    while (!release.load())
                      std::this_thread::sleep_for(std::chrono::milliseconds(1));
                  })
                  .ok());
  void* p = alloc(*a, 64 * kKiB);
  ASSERT_TRUE(a->free(p, **copy).ok());  // last used by a copy still queued on `copy`
  void* q = alloc(*a, 64 * kKiB);        // on the default stream
  EXPECT_NE(q, p);
  release = true;
  ASSERT_TRUE((*copy)->synchronize().ok());
  ASSERT_TRUE(a->free(q).ok());
}

TEST_P(CachingAllocatorTest, EvictionCallbackMakesRoom) {
  auto a = make(8 * kMiB);
  std::vector<void*> held;
  for (int i = 0; i < 3; ++i) held.push_back(alloc(*a, 2 * kMiB));
  int calls = 0;
  a->set_eviction_callback([&](std::size_t needed, Stream&) -> std::size_t {
    ++calls;
    EXPECT_GE(needed, 3 * kMiB);
    if (held.empty()) return 0;
    void* victim = held.back();
    held.pop_back();
    EXPECT_TRUE(a->free(victim).ok());
    return 2 * kMiB;
  });
  auto p = a->allocate(3 * kMiB, stream());
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_GE(calls, 1);
  EXPECT_GE(a->stats().num_evictions, 1);
  EXPECT_LE(a->stats().all.reserved_bytes.peak, static_cast<std::int64_t>(8 * kMiB));
  ASSERT_TRUE(a->free(*p).ok());
  for (void* q : held) ASSERT_TRUE(a->free(q).ok());
}

TEST_P(CachingAllocatorTest, EvictionThatFreesNothingEndsInOutOfMemory) {
  auto a = make(4 * kMiB);
  void* p = alloc(*a, 3 * kMiB);
  a->set_eviction_callback([](std::size_t, Stream&) -> std::size_t { return 0; });
  auto q = a->allocate(3 * kMiB, stream());
  EXPECT_EQ(q.status().code(), StatusCode::kOutOfMemory);
  ASSERT_TRUE(a->free(p).ok());
}

TEST_P(CachingAllocatorTest, EvictionThatClaimsProgressButFreesNothingEnds) {
  auto a = make(4 * kMiB);
  void* p = alloc(*a, 3 * kMiB);
  int calls = 0;
  a->set_eviction_callback([&](std::size_t, Stream&) -> std::size_t {
    ++calls;
    return 1 * kMiB;  // a lie: nothing was freed
  });
  auto q = a->allocate(3 * kMiB, stream());
  EXPECT_EQ(q.status().code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(a->free(p).ok());
}

TEST_P(CachingAllocatorTest, TraceRecordsEveryAllocAndFree) {
  auto a = make(64 * kMiB);
  AllocTraceBuffer trace;
  a->set_trace_sink(&trace);
  auto p = a->allocate(1000, stream(), "weights");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(a->free(*p).ok());
  a->set_trace_sink(nullptr);
  std::vector<AllocEvent> events = trace.take();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].op, AllocEvent::Op::kAlloc);
  EXPECT_EQ(events[0].bytes, 1000u);
  EXPECT_EQ(events[0].tag, "weights");
  EXPECT_EQ(events[0].stream, stream().id());
  EXPECT_EQ(events[1].op, AllocEvent::Op::kFree);
  EXPECT_EQ(events[1].id, events[0].id);
  EXPECT_GE(events[1].t_ns, events[0].t_ns);
}

TEST_P(CachingAllocatorTest, SnapshotTilesSegmentsWithoutOverlap) {
  auto a = make(64 * kMiB);
  std::vector<void*> ps;
  for (std::size_t bytes : {700u, 5000u, 2 * 1024 * 1024u, 9000u}) ps.push_back(alloc(*a, bytes));
  ASSERT_TRUE(a->free(ps[1]).ok());
  std::vector<BlockSnapshot> blocks = a->snapshot();
  std::size_t live = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (i > 0) {
      EXPECT_LE(blocks[i - 1].address + blocks[i - 1].bytes, blocks[i].address);
    }
    live += blocks[i].allocated ? 1 : 0;
  }
  EXPECT_EQ(live, 3u);
  for (void* p : {ps[0], ps[2], ps[3]}) ASSERT_TRUE(a->free(p).ok());
}

TEST_P(CachingAllocatorTest, ThreadsAllocatingAtOnceNeverShareABlock) {
  auto a = make(128 * kMiB);
  constexpr int kThreads = 4;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int t = 0; t < kThreads; ++t) streams.push_back(std::move(device_->create_stream()).value());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Stream& s = *streams[t];
      std::vector<std::pair<void*, std::uint8_t>> held;
      for (int i = 0; i < 400; ++i) {
        const std::size_t bytes = 512 * (1 + (i * 7 + t * 13) % 200);
        auto p = a->allocate(bytes, s);
        if (!p.ok()) {
          failures++;
          continue;
        }
        const auto tag = static_cast<std::uint8_t>(t * 50 + i % 50);
        (void)s.memset_async(*p, tag, 512);
        held.emplace_back(*p, tag);
        if (held.size() > 8) {
          std::uint8_t first = 0;
          (void)s.copy_async(&first, held.front().first, 1, CopyKind::kDeviceToHost);
          (void)s.synchronize();
          if (first != held.front().second) failures++;
          if (!a->free(held.front().first).ok()) failures++;
          held.erase(held.begin());
        }
      }
      for (auto& [p, tag] : held) {
        if (!a->free(p).ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(a->stats().all.allocation.current, 0);
  EXPECT_EQ(a->stats().all.allocated_bytes.current, 0);
}

INSTANTIATE_TEST_SUITE_P(Segments, CachingAllocatorTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Expandable" : "Classic"; });

// Expandable segments: freed regions merge wherever they began, and physical pages move to
// where they are needed, so reserved follows live closely.
class ExpandableSegmentsTest : public CachingAllocatorTest {};

TEST_F(ExpandableSegmentsTest, ReservedIsWholePagesOfLiveBlocks) {
  CachingAllocatorOptions options;
  options.budget_bytes = 64 * kMiB;
  auto a = std::move(CachingAllocator::create(*device_, options)).value();
  void* p = alloc(*a, 3 * kMiB);
  EXPECT_EQ(a->stats().all.reserved_bytes.current, static_cast<std::int64_t>(4 * kMiB));
  ASSERT_TRUE(a->free(p).ok());
  void* q = alloc(*a, 5 * kMiB);
  EXPECT_EQ(a->stats().all.reserved_bytes.current, static_cast<std::int64_t>(6 * kMiB));
  ASSERT_TRUE(a->free(q).ok());
}

TEST_F(ExpandableSegmentsTest, TwoFreedAllocationsServeOneTwiceAsLarge) {
  CachingAllocatorOptions options;
  options.budget_bytes = 24 * kMiB;
  auto a = std::move(CachingAllocator::create(*device_, options)).value();
  void* p1 = alloc(*a, 10 * kMiB);
  void* p2 = alloc(*a, 10 * kMiB);
  ASSERT_TRUE(a->free(p1).ok());
  ASSERT_TRUE(a->free(p2).ok());
  void* both = alloc(*a, 20 * kMiB);
  EXPECT_EQ(a->stats().all.reserved_bytes.peak, static_cast<std::int64_t>(20 * kMiB));
  ASSERT_TRUE(a->free(both).ok());
}

TEST_F(ExpandableSegmentsTest, PagesMoveToWhereTheyAreNeeded) {
  CachingAllocatorOptions options;
  options.budget_bytes = 8 * kMiB;
  auto a = std::move(CachingAllocator::create(*device_, options)).value();
  // Fill the budget, free every other block, then ask for a block as large as the two holes
  // together: no free range that large is mapped, but the cached pages can be moved.
  std::vector<void*> ps;
  for (int i = 0; i < 4; ++i) ps.push_back(alloc(*a, 2 * kMiB));
  ASSERT_TRUE(a->free(ps[0]).ok());
  ASSERT_TRUE(a->free(ps[2]).ok());
  void* big = alloc(*a, 4 * kMiB);
  ASSERT_NE(big, nullptr);
  EXPECT_LE(a->stats().all.reserved_bytes.peak, static_cast<std::int64_t>(8 * kMiB));
  for (void* p : {ps[1], ps[3], big}) ASSERT_TRUE(a->free(p).ok());
}

// A device without virtual memory management, as some GPUs and drivers are.
class NoVirtualMemoryDevice final : public test_support::ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;
  Result<void*> reserve_range(std::size_t) override {
    return unavailable("virtual memory management is not supported (injected)");
  }
};

TEST(CachingAllocatorFallbackTest, WithoutVirtualMemoryClassicSegmentsServe) {
  NoVirtualMemoryDevice device(std::move(create_device(DeviceOptions{})).value());
  auto a = std::move(CachingAllocator::create(device, CachingAllocatorOptions{})).value();
  EXPECT_FALSE(a->options().expandable_segments);
  auto p = a->allocate(3 * kMiB, device.default_stream());
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(a->stats().num_device_alloc, 1);
  ASSERT_TRUE(a->free(*p).ok());
}

}  // namespace
}  // namespace ebb
