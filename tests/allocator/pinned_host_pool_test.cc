#include "allocator/pinned_host_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/device.h"
#include "kernels/status.h"
#include "tests/support/forwarding_device.h"

namespace ebb {
namespace {

// Forwards everything to a real cpu device and records the pinned chunks the pool takes, so
// that a test can see what the pool asked the device for and that it gave everything back.
// Pinned allocations can be made to fail.
class PinnedCountingDevice final : public test_support::ForwardingDevice {
 public:
  using ForwardingDevice::ForwardingDevice;

  Result<void*> allocate_pinned_host(std::size_t bytes) override {
    if (fail_pinned) return out_of_memory("injected pinned allocation failure");
    Result<void*> ptr = inner().allocate_pinned_host(bytes);
    if (ptr.ok()) {
      live_chunks[*ptr] = bytes;
      requests.push_back(bytes);
    }
    return ptr;
  }
  Status free_pinned_host(void* ptr) override {
    live_chunks.erase(ptr);
    return inner().free_pinned_host(ptr);
  }

  std::map<void*, std::size_t> live_chunks;  // chunks the pool holds now
  std::vector<std::size_t> requests;         // sizes of every successful pinned allocation
  bool fail_pinned = false;
};

class PinnedHostPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<Device>> cpu = create_device(DeviceOptions{});
    ASSERT_TRUE(cpu.ok()) << cpu.status().to_string();
    device_ = std::make_unique<PinnedCountingDevice>(std::move(cpu).value());
  }

  std::unique_ptr<PinnedHostPool> make_pool(std::size_t capacity_bytes) {
    Result<std::unique_ptr<PinnedHostPool>> pool = PinnedHostPool::create(*device_, capacity_bytes);
    EXPECT_TRUE(pool.ok()) << pool.status().to_string();
    return pool.ok() ? std::move(pool).value() : nullptr;
  }

  // Allocates and fills the buffer, so that every test also shows the memory is writable.
  void* allocate(PinnedHostPool& pool, std::size_t bytes) {
    Result<void*> ptr = pool.allocate(bytes);
    EXPECT_TRUE(ptr.ok()) << "allocate(" << bytes << "): " << ptr.status().to_string();
    if (!ptr.ok()) return nullptr;
    std::memset(*ptr, 0xab, bytes);
    return *ptr;
  }

  std::unique_ptr<PinnedCountingDevice> device_;
};

TEST_F(PinnedHostPoolTest, CreateRejectsZeroCapacity) {
  Result<std::unique_ptr<PinnedHostPool>> pool = PinnedHostPool::create(*device_, 0);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PinnedHostPoolTest, ZeroBytesIsInvalid) {
  auto pool = make_pool(64 * kMiB);
  Result<void*> ptr = pool->allocate(0);
  ASSERT_FALSE(ptr.ok());
  EXPECT_EQ(ptr.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PinnedHostPoolTest, BuffersAreAlignedWritableAndRounded) {
  auto pool = make_pool(64 * kMiB);
  void* a = allocate(*pool, 1);
  void* b = allocate(*pool, 5000);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % kPinnedRoundBytes, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b) % kPinnedRoundBytes, 0u);
  PinnedHostPoolStats stats = pool->stats();
  EXPECT_EQ(stats.allocated_bytes, 4 * kKiB + 8 * kKiB);
  EXPECT_EQ(stats.allocations, 2);
  // Small requests share one minimum-size chunk.
  EXPECT_EQ(stats.chunks, 1);
  EXPECT_EQ(stats.reserved_bytes, kPinnedMinChunkBytes);
  EXPECT_EQ(stats.capacity_bytes, 64 * kMiB);
  EXPECT_TRUE(pool->free(a).ok());
  EXPECT_TRUE(pool->free(b).ok());
}

TEST_F(PinnedHostPoolTest, FreedBufferIsReusedFromCache) {
  auto pool = make_pool(64 * kMiB);
  void* a = allocate(*pool, 64 * kKiB);
  ASSERT_TRUE(pool->free(a).ok());
  void* b = allocate(*pool, 64 * kKiB);
  EXPECT_EQ(a, b);
  EXPECT_EQ(device_->requests.size(), 1u);
  EXPECT_EQ(pool->stats().chunks, 1);
  EXPECT_TRUE(pool->free(b).ok());
}

TEST_F(PinnedHostPoolTest, FreedNeighboursCoalesce) {
  auto pool = make_pool(64 * kMiB);
  // Four quarters of one 2 MiB chunk.
  const std::size_t quarter = kPinnedMinChunkBytes / 4;
  void* q[4];
  for (void*& p : q) p = allocate(*pool, quarter);
  ASSERT_EQ(device_->requests.size(), 1u);
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(static_cast<char*>(q[i]), static_cast<char*>(q[i - 1]) + quarter);
  }
  // Free the middle two, right one first, so the left one merges with a free right neighbour.
  ASSERT_TRUE(pool->free(q[2]).ok());
  ASSERT_TRUE(pool->free(q[1]).ok());
  void* both = allocate(*pool, 2 * quarter);
  EXPECT_EQ(both, q[1]);
  EXPECT_EQ(device_->requests.size(), 1u) << "the combined request took a new chunk";

  // Now free everything in an order that merges with a free left neighbour too.
  ASSERT_TRUE(pool->free(q[0]).ok());
  ASSERT_TRUE(pool->free(both).ok());
  ASSERT_TRUE(pool->free(q[3]).ok());
  void* whole = allocate(*pool, kPinnedMinChunkBytes);
  EXPECT_EQ(whole, q[0]);
  EXPECT_EQ(device_->requests.size(), 1u);
  EXPECT_TRUE(pool->free(whole).ok());
}

TEST_F(PinnedHostPoolTest, BestFitPicksTheSmallestFreeRangeThatFits) {
  auto pool = make_pool(64 * kMiB);
  void* big = allocate(*pool, 256 * kKiB);
  void* fence1 = allocate(*pool, 4 * kKiB);
  void* small = allocate(*pool, 64 * kKiB);
  void* fence2 = allocate(*pool, 4 * kKiB);
  ASSERT_TRUE(pool->free(big).ok());
  ASSERT_TRUE(pool->free(small).ok());
  EXPECT_EQ(allocate(*pool, 60 * kKiB), small);
  EXPECT_EQ(allocate(*pool, 200 * kKiB), big);
  EXPECT_EQ(device_->requests.size(), 1u);
  EXPECT_TRUE(pool->free(fence1).ok());
  EXPECT_TRUE(pool->free(fence2).ok());
}

TEST_F(PinnedHostPoolTest, LargeRequestIsRoundedTo4KiBNotToAPowerOfTwo) {
  auto pool = make_pool(64 * kMiB);
  void* p = allocate(*pool, 3 * kMiB + 4 * kKiB);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(device_->requests.size(), 1u);
  EXPECT_EQ(device_->requests[0], 3 * kMiB + 4 * kKiB);
  PinnedHostPoolStats stats = pool->stats();
  EXPECT_EQ(stats.reserved_bytes, 3 * kMiB + 4 * kKiB);
  EXPECT_EQ(stats.allocated_bytes, 3 * kMiB + 4 * kKiB);

  void* q = allocate(*pool, 3 * kMiB + 1);
  EXPECT_EQ(pool->stats().allocated_bytes, 2 * (3 * kMiB + 4 * kKiB));
  EXPECT_TRUE(pool->free(p).ok());
  EXPECT_TRUE(pool->free(q).ok());
}

TEST_F(PinnedHostPoolTest, MissPastCapacityFailsNamingTheFigures) {
  auto pool = make_pool(4 * kMiB);
  void* a = allocate(*pool, 3 * kMiB);
  Result<void*> b = pool->allocate(2 * kMiB);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kOutOfMemory);
  const std::string& message = b.status().message();
  EXPECT_NE(message.find("2097152 B"), std::string::npos) << message;  // request
  EXPECT_NE(message.find("held 3145728 B"), std::string::npos) << message;
  EXPECT_NE(message.find("cached (free) 0 B"), std::string::npos) << message;
  EXPECT_NE(message.find("capacity 4194304 B"), std::string::npos) << message;
  // The failure changed nothing.
  EXPECT_EQ(pool->stats().reserved_bytes, 3 * kMiB);
  EXPECT_TRUE(pool->free(a).ok());
}

TEST_F(PinnedHostPoolTest, RequestLargerThanCapacityFails) {
  auto pool = make_pool(4 * kMiB);
  Result<void*> p = pool->allocate(4 * kMiB + 1);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(p.status().message().find("capacity 4194304 B"), std::string::npos);
  Result<void*> huge = pool->allocate(~std::size_t{0});
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kOutOfMemory);
  EXPECT_TRUE(device_->requests.empty());
}

TEST_F(PinnedHostPoolTest, MissReleasesFreeChunksBeforeFailing) {
  auto pool = make_pool(4 * kMiB);
  void* a = allocate(*pool, 3 * kMiB);
  ASSERT_TRUE(pool->free(a).ok());
  EXPECT_EQ(pool->stats().reserved_bytes, 3 * kMiB);  // cached, not returned
  void* b = allocate(*pool, 4 * kMiB);
  ASSERT_NE(b, nullptr);
  PinnedHostPoolStats stats = pool->stats();
  EXPECT_EQ(stats.chunks, 1);
  EXPECT_EQ(stats.reserved_bytes, 4 * kMiB);
  EXPECT_EQ(stats.peak_reserved_bytes, 4 * kMiB);
  EXPECT_EQ(device_->live_chunks.size(), 1u);
  EXPECT_TRUE(pool->free(b).ok());
}

TEST_F(PinnedHostPoolTest, ChunksNeverPassTheCapacity) {
  // Below the minimum chunk size, a chunk takes only the headroom left.
  auto pool = make_pool(kMiB + 4 * kKiB);
  void* a = allocate(*pool, 4 * kKiB);
  void* b = allocate(*pool, 512 * kKiB);
  void* c = allocate(*pool, 512 * kKiB);
  EXPECT_EQ(pool->stats().reserved_bytes, kMiB + 4 * kKiB);
  EXPECT_EQ(device_->requests.size(), 1u);
  Result<void*> d = pool->allocate(1);
  EXPECT_FALSE(d.ok());
  for (void* p : {a, b, c}) EXPECT_TRUE(pool->free(p).ok());
}

TEST_F(PinnedHostPoolTest, ReleaseCachedReturnsOnlyChunksWithNoLiveBuffer) {
  auto pool = make_pool(64 * kMiB);
  void* a = allocate(*pool, 3 * kMiB);
  void* b = allocate(*pool, 3 * kMiB);
  void* small = allocate(*pool, 4 * kKiB);  // its own 2 MiB chunk, mostly free
  ASSERT_EQ(pool->stats().chunks, 3);
  ASSERT_TRUE(pool->free(a).ok());
  ASSERT_TRUE(pool->release_cached().ok());
  PinnedHostPoolStats stats = pool->stats();
  EXPECT_EQ(stats.chunks, 2);
  EXPECT_EQ(stats.reserved_bytes, 3 * kMiB + kPinnedMinChunkBytes);
  EXPECT_EQ(device_->live_chunks.size(), 2u);
  EXPECT_EQ(device_->live_chunks.count(a), 0u);
  std::memset(b, 1, 3 * kMiB);  // still usable
  std::memset(small, 1, 4 * kKiB);
  ASSERT_TRUE(pool->free(b).ok());
  ASSERT_TRUE(pool->free(small).ok());
  ASSERT_TRUE(pool->release_cached().ok());
  EXPECT_EQ(pool->stats().reserved_bytes, 0u);
  EXPECT_EQ(pool->stats().chunks, 0);
  EXPECT_TRUE(device_->live_chunks.empty());
}

TEST_F(PinnedHostPoolTest, ForeignInteriorAndDoubleFreesAreInvalid) {
  auto pool = make_pool(64 * kMiB);
  void* p = allocate(*pool, 64 * kKiB);
  int local = 0;
  Status foreign = pool->free(&local);
  EXPECT_EQ(foreign.code(), StatusCode::kInvalidArgument);
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%jx",
                static_cast<std::uintmax_t>(reinterpret_cast<std::uintptr_t>(&local)));
  EXPECT_NE(foreign.message().find(hex), std::string::npos) << foreign.message();

  EXPECT_EQ(pool->free(static_cast<char*>(p) + 4 * kKiB).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->free(nullptr).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(pool->free(p).ok());
  EXPECT_EQ(pool->free(p).code(), StatusCode::kInvalidArgument);
  // The start of the free remainder of the chunk is not a live buffer either.
  EXPECT_EQ(pool->free(static_cast<char*>(p) + 64 * kKiB).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->stats().allocations, 0);
}

TEST_F(PinnedHostPoolTest, DeviceFailureIsReturnedWithContext) {
  auto pool = make_pool(64 * kMiB);
  device_->fail_pinned = true;
  Result<void*> p = pool->allocate(8 * kKiB);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(p.status().message().find("injected"), std::string::npos);
  EXPECT_NE(p.status().message().find("8192 B"), std::string::npos);
  EXPECT_EQ(pool->stats().reserved_bytes, 0u);
}

TEST_F(PinnedHostPoolTest, PeaksOutliveFrees) {
  auto pool = make_pool(64 * kMiB);
  void* a = allocate(*pool, 3 * kMiB);
  void* b = allocate(*pool, kMiB);
  ASSERT_TRUE(pool->free(a).ok());
  ASSERT_TRUE(pool->free(b).ok());
  ASSERT_TRUE(pool->release_cached().ok());
  PinnedHostPoolStats stats = pool->stats();
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 0u);
  EXPECT_EQ(stats.peak_allocated_bytes, 4 * kMiB);
  EXPECT_EQ(stats.peak_reserved_bytes, 3 * kMiB + kPinnedMinChunkBytes);
}

TEST_F(PinnedHostPoolTest, DestructionReturnsEveryChunk) {
  auto pool = make_pool(64 * kMiB);
  allocate(*pool, 3 * kMiB);        // left live on purpose
  void* b = allocate(*pool, kMiB);  // freed: cached
  ASSERT_TRUE(pool->free(b).ok());
  EXPECT_EQ(device_->live_chunks.size(), 2u);
  pool.reset();
  EXPECT_TRUE(device_->live_chunks.empty());
}

// Random allocs and frees: live buffers never overlap, each keeps what was written into it,
// and the stats agree with the set of live buffers at every step.
TEST_F(PinnedHostPoolTest, RandomizedAllocFreeKeepsBuffersDisjointAndStatsConsistent) {
  const std::size_t capacity = 48 * kMiB;
  auto pool = make_pool(capacity);
  std::mt19937_64 rng(20240607);
  struct Live {
    std::size_t bytes;
    std::uint8_t fill;
  };
  std::map<std::uintptr_t, Live> live;
  auto rounded = [](std::size_t n) {
    return (n + kPinnedRoundBytes - 1) / kPinnedRoundBytes * kPinnedRoundBytes;
  };
  auto check_fill = [](std::uintptr_t addr, const Live& l) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(addr);
    // First, last and a middle byte: enough to catch a neighbour written over this one.
    return p[0] == l.fill && p[l.bytes - 1] == l.fill && p[l.bytes / 2] == l.fill;
  };
  std::size_t ooms = 0;
  for (int step = 0; step < 4000; ++step) {
    // Around 64 live buffers (about 27 MiB): the capacity binds now and then, through the
    // large requests and fragmentation.
    const bool do_alloc = live.empty() || rng() % 100 < (live.size() < 64 ? 60u : 40u);
    if (do_alloc) {
      // Mostly staging-sized requests, some large, none aligned to anything in particular.
      std::size_t bytes = rng() % 8 == 0 ? 1 + rng() % (5 * kMiB) : 1 + rng() % (256 * kKiB);
      Result<void*> ptr = pool->allocate(bytes);
      if (!ptr.ok()) {
        ASSERT_EQ(ptr.status().code(), StatusCode::kOutOfMemory) << ptr.status().to_string();
        ++ooms;
        continue;
      }
      const auto addr = reinterpret_cast<std::uintptr_t>(*ptr);
      ASSERT_EQ(addr % kPinnedRoundBytes, 0u);
      auto next = live.lower_bound(addr);
      if (next != live.end()) {
        ASSERT_LE(addr + bytes, next->first) << "overlaps the next buffer";
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second.bytes, addr) << "overlaps the previous buffer";
      }
      const auto fill = static_cast<std::uint8_t>(step);
      std::memset(*ptr, fill, bytes);
      live.emplace(addr, Live{bytes, fill});
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(check_fill(it->first, it->second)) << "buffer at step " << step << " clobbered";
      ASSERT_TRUE(pool->free(reinterpret_cast<void*>(it->first)).ok());
      live.erase(it);
    }
    if (step % 500 == 499) {
      ASSERT_TRUE(pool->release_cached().ok());
    }

    std::size_t live_bytes = 0;
    for (const auto& [addr, l] : live) live_bytes += rounded(l.bytes);
    PinnedHostPoolStats stats = pool->stats();
    ASSERT_EQ(stats.allocated_bytes, live_bytes);
    ASSERT_EQ(stats.allocations, static_cast<std::int64_t>(live.size()));
    ASSERT_LE(stats.allocated_bytes, stats.reserved_bytes);
    ASSERT_LE(stats.reserved_bytes, capacity);
    ASSERT_LE(stats.reserved_bytes, stats.peak_reserved_bytes);
    ASSERT_LE(stats.allocated_bytes, stats.peak_allocated_bytes);
    ASSERT_EQ(stats.chunks, static_cast<std::int64_t>(device_->live_chunks.size()));
    std::size_t chunk_bytes = 0;
    for (const auto& [ptr, bytes] : device_->live_chunks) chunk_bytes += bytes;
    ASSERT_EQ(stats.reserved_bytes, chunk_bytes);
  }
  for (const auto& [addr, l] : live) {
    ASSERT_TRUE(check_fill(addr, l));
    ASSERT_TRUE(pool->free(reinterpret_cast<void*>(addr)).ok());
  }
  ASSERT_TRUE(pool->release_cached().ok());
  EXPECT_EQ(pool->stats().reserved_bytes, 0u);
  EXPECT_LT(ooms, 4000u / 10) << "the capacity is meant to bind now and then, not always";
}

TEST(PinnedHostPoolThreadsTest, ConcurrentAllocFreeFromSeveralThreads) {
  Result<std::unique_ptr<Device>> device = create_device(DeviceOptions{});
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  Result<std::unique_ptr<PinnedHostPool>> pool = PinnedHostPool::create(**device, 256 * kMiB);
  ASSERT_TRUE(pool.ok());
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::vector<std::pair<std::uint8_t*, std::size_t>> mine;
      for (int i = 0; i < 2000; ++i) {
        if (mine.size() < 8 && rng() % 2 == 0) {
          const std::size_t bytes = 1 + rng() % (512 * kKiB);
          Result<void*> p = (*pool)->allocate(bytes);
          if (!p.ok()) {
            ++failures[t];
            continue;
          }
          std::memset(*p, t + 1, bytes);
          mine.emplace_back(static_cast<std::uint8_t*>(*p), bytes);
        } else if (!mine.empty()) {
          auto [p, bytes] = mine.back();
          mine.pop_back();
          if (p[0] != t + 1 || p[bytes - 1] != t + 1) ++failures[t];
          if (!(*pool)->free(p).ok()) ++failures[t];
        }
      }
      for (auto [p, bytes] : mine) {
        if (!(*pool)->free(p).ok()) ++failures[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
  EXPECT_EQ((*pool)->stats().allocations, 0);
  EXPECT_EQ((*pool)->stats().allocated_bytes, 0u);
}

}  // namespace
}  // namespace ebb
