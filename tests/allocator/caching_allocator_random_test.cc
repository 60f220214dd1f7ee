// Randomized test of the caching allocator against an independent model of the heap.
//
// Thousands of allocate/free operations on three streams, under a budget, with frees on other
// streams and delayed device writes: after every operation the live blocks must not overlap,
// every byte must be accounted for in the statistics, and reserved bytes must stay within the
// budget. Each block carries a byte pattern written on its stream and checked at its free, so a
// block handed to another stream while a late write to it was still queued shows up as
// corrupted data.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "allocator/caching_allocator.h"

namespace ebb {
namespace {

struct LiveBlock {
  std::size_t requested_bytes = 0;
  std::size_t rounded_bytes = 0;
  Stream* stream = nullptr;
  std::uint8_t pattern = 0;
};

constexpr std::size_t kPatternBytes = 512;

class RandomAllocatorTest : public ::testing::TestWithParam<std::tuple<bool, int>> {};

std::size_t draw_size(std::mt19937_64& rng) {
  const int kind = std::uniform_int_distribution<int>(0, 99)(rng);
  if (kind < 60) return std::uniform_int_distribution<std::size_t>(1, 64 * kKiB)(rng);
  if (kind < 90) return std::uniform_int_distribution<std::size_t>(64 * kKiB, 2 * kMiB)(rng);
  return std::uniform_int_distribution<std::size_t>(2 * kMiB, 12 * kMiB)(rng);
}

Status write_pattern(Stream& s, void* p, const LiveBlock& b) {
  const std::size_t n = std::min(b.requested_bytes, kPatternBytes);
  EBB_RETURN_IF_ERROR(s.memset_async(p, b.pattern, n));
  return s.memset_async(static_cast<char*>(p) + b.requested_bytes - n, b.pattern, n);
}

void check_pattern(Stream& s, void* p, const LiveBlock& b) {
  const std::size_t n = std::min(b.requested_bytes, kPatternBytes);
  std::vector<std::uint8_t> head(n), tail(n);
  ASSERT_TRUE(s.copy_async(head.data(), p, n, CopyKind::kDeviceToHost).ok());
  ASSERT_TRUE(s.copy_async(tail.data(), static_cast<char*>(p) + b.requested_bytes - n, n,
                           CopyKind::kDeviceToHost)
                  .ok());
  ASSERT_TRUE(s.synchronize().ok());
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(head[i], b.pattern) << "block " << p << " byte " << i << " was overwritten";
    ASSERT_EQ(tail[i], b.pattern) << "block " << p << " tail byte " << i << " was overwritten";
  }
}

TEST_P(RandomAllocatorTest, MatchesTheModelUnderABudget) {
  const auto [expandable, seed] = GetParam();
  DeviceOptions device_options;
  device_options.capacity_bytes = 256 * kMiB;
  auto device = std::move(create_device(device_options)).value();
  constexpr std::size_t kBudget = 48 * kMiB;
  CachingAllocatorOptions options;
  options.budget_bytes = kBudget;
  options.expandable_segments = expandable;
  auto allocator = std::move(CachingAllocator::create(*device, options)).value();

  auto s1 = std::move(device->create_stream()).value();
  auto s2 = std::move(device->create_stream()).value();
  std::vector<Stream*> streams = {&device->default_stream(), s1.get(), s2.get()};

  std::mt19937_64 rng(seed);
  std::map<std::uintptr_t, LiveBlock> live;
  std::int64_t ooms = 0;
  const int kOps = 3000;
  for (int op = 0; op < kOps; ++op) {
    const bool do_alloc = live.empty() || std::uniform_int_distribution<int>(0, 99)(rng) < 55;
    if (do_alloc) {
      LiveBlock b;
      b.requested_bytes = draw_size(rng);
      b.stream = streams[std::uniform_int_distribution<std::size_t>(0, 2)(rng)];
      b.pattern = static_cast<std::uint8_t>(1 + op % 255);
      auto p = allocator->allocate(b.requested_bytes, *b.stream);
      if (!p.ok()) {
        ASSERT_EQ(p.status().code(), StatusCode::kOutOfMemory) << p.status().to_string();
        ++ooms;
        continue;
      }
      const auto address = reinterpret_cast<std::uintptr_t>(*p);
      ASSERT_EQ(address % kMinBlockBytes, 0u);
      b.rounded_bytes = *allocator->block_bytes(*p);
      ASSERT_GE(b.rounded_bytes, b.requested_bytes);
      // No overlap with any live block.
      auto next = live.lower_bound(address);
      if (next != live.end()) {
        ASSERT_LE(address + b.rounded_bytes, next->first);
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second.rounded_bytes, address);
      }
      ASSERT_TRUE(write_pattern(*b.stream, *p, b).ok());
      live.emplace(address, b);
    } else {
      auto it = live.begin();
      std::advance(it, std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(rng));
      void* p = reinterpret_cast<void*>(it->first);
      LiveBlock b = it->second;
      check_pattern(*b.stream, p, b);
      // Sometimes the last use is a late write still queued behind slow work on its stream.
      const int how = std::uniform_int_distribution<int>(0, 9)(rng);
      if (how == 0) {
        ASSERT_TRUE(b.stream
                        ->launch([](const LaunchContext&) {
                          std::this_thread::sleep_for(std::chrono::microseconds(300));
                        })
                        .ok());
        ASSERT_TRUE(write_pattern(*b.stream, p, b).ok());
      }
      Status freed;
      if (how == 1) {
        // Last use on another stream: order it after the owner's work, then free there.
        Stream* other =
            streams[(std::find(streams.begin(), streams.end(), b.stream) - streams.begin() + 1) %
                    3];
        auto event = std::move(device->create_event()).value();
        ASSERT_TRUE(b.stream->record(*event).ok());
        ASSERT_TRUE(other->wait(*event).ok());
        ASSERT_TRUE(other
                        ->launch([](const LaunchContext&) {
                          std::this_thread::sleep_for(std::chrono::microseconds(300));
                        })
                        .ok());
        ASSERT_TRUE(
            other->memset_async(p, b.pattern, std::min(b.requested_bytes, kPatternBytes)).ok());
        freed = allocator->free(p, *other);
        ASSERT_TRUE(other->synchronize().ok());  // the event must outlive its use
      } else {
        freed = allocator->free(p);
      }
      ASSERT_TRUE(freed.ok()) << freed.to_string();
      live.erase(it);
    }
    // Every byte accounted for, and the budget never passed.
    const AllocatorStats s = allocator->stats();
    std::int64_t rounded = 0, requested = 0;
    for (const auto& [address, b] : live) {
      rounded += static_cast<std::int64_t>(b.rounded_bytes);
      requested += static_cast<std::int64_t>(b.requested_bytes);
    }
    ASSERT_EQ(s.all.allocated_bytes.current, rounded) << "op " << op;
    ASSERT_EQ(s.all.requested_bytes.current, requested) << "op " << op;
    ASSERT_EQ(s.all.allocation.current, static_cast<std::int64_t>(live.size()));
    ASSERT_EQ(s.all.allocated_bytes.current,
              s.pool[0].allocated_bytes.current + s.pool[1].allocated_bytes.current);
    ASSERT_LE(s.all.reserved_bytes.peak, static_cast<std::int64_t>(kBudget));
    ASSERT_GE(s.all.reserved_bytes.current, s.all.allocated_bytes.current);
    ASSERT_EQ(static_cast<std::int64_t>(device->committed_bytes()), s.all.reserved_bytes.current);
    if (op % 97 == 0) {
      // The allocator's own view agrees: blocks tile without overlap; live ones are the model's.
      std::size_t live_seen = 0;
      std::uintptr_t end = 0;
      for (const BlockSnapshot& bs : allocator->snapshot()) {
        ASSERT_GE(bs.address, end);
        end = bs.address + bs.bytes;
        if (!bs.allocated) continue;
        ++live_seen;
        auto it = live.find(bs.address);
        ASSERT_NE(it, live.end());
        ASSERT_EQ(it->second.rounded_bytes, bs.bytes);
        ASSERT_EQ(it->second.requested_bytes, bs.requested_bytes);
      }
      ASSERT_EQ(live_seen, live.size());
    }
  }
  for (auto& [address, b] : live) {
    check_pattern(*b.stream, reinterpret_cast<void*>(address), b);
    ASSERT_TRUE(allocator->free(reinterpret_cast<void*>(address)).ok());
  }
  ASSERT_TRUE(allocator->empty_cache().ok());
  EXPECT_EQ(allocator->stats().all.reserved_bytes.current, 0);
  EXPECT_EQ(device->committed_bytes(), 0u);
  // The workload asks for more than the budget at times; those requests fail cleanly.
  EXPECT_EQ(allocator->stats().num_ooms, ooms);
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomAllocatorTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(1, 2, 3)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "Expandable" : "Classic") +
                                  "_seed" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace ebb
