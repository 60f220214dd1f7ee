// Tests of CachingAllocator on a real GPU, with expandable and with classic segments: what the
// cpu-backend tests cannot show, that blocks are real device memory (copies into them round-trip,
// cudaMalloc and cuMemMap really happen), that the budget holds against the driver, and that a
// block freed on a busy stream is not handed to another stream before that stream has passed the
// free. Every test skips itself where no GPU is visible.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "allocator/caching_allocator.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/device.h"

namespace ebb {
namespace {

#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    const ::ebb::Status assert_status_ = (expr);                                     \
    ASSERT_TRUE(assert_status_.ok()) << #expr << ": " << assert_status_.to_string(); \
  } while (false)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(EBB_CONCAT(assert_result_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                     \
  auto tmp = (expr);                                                  \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().to_string(); \
  lhs = std::move(tmp).value()

constexpr std::size_t kDeviceCapacityBytes = 512 * kMiB;

std::vector<std::uint8_t> pattern(std::size_t bytes, std::uint32_t seed) {
  std::vector<std::uint8_t> data(bytes);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& byte : data) {
    x = x * 1664525u + 1013904223u;
    byte = static_cast<std::uint8_t>(x >> 24);
  }
  return data;
}

// Holds a stream's later work back by `ms` milliseconds (a sleeping host function), so that a
// test can free a block whose stream has not yet reached its last use.
Status delay_stream(Stream& stream, int ms) {
  static constexpr auto sleep_ms = [](void* arg) {
    std::this_thread::sleep_for(std::chrono::milliseconds(reinterpret_cast<std::intptr_t>(arg)));
  };
  return stream.launch([ms](const LaunchContext& context) {
    (void)cudaLaunchHostFunc(static_cast<cudaStream_t>(context.native_stream), sleep_ms,
                             reinterpret_cast<void*>(static_cast<std::intptr_t>(ms)));
  });
}

// Parameter: expandable segments (true) or classic segments (false).
class CachingAllocatorCudaTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU is visible on this machine";
    DeviceOptions options;
    options.kind = DeviceKind::kCuda;
    options.capacity_bytes = kDeviceCapacityBytes;
    ASSERT_OK_AND_ASSIGN(device_, create_device(options));
  }

  Result<std::unique_ptr<CachingAllocator>> make_allocator(std::size_t budget_bytes) {
    CachingAllocatorOptions options;
    options.budget_bytes = budget_bytes;
    options.expandable_segments = GetParam();
    return CachingAllocator::create(*device_, options);
  }

  std::unique_ptr<Device> device_;
};

INSTANTIATE_TEST_SUITE_P(Segments, CachingAllocatorCudaTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Expandable" : "Classic");
                         });

TEST_P(CachingAllocatorCudaTest, FreedBlockIsReusedOnItsStreamWithoutDeviceCalls) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<CachingAllocator> allocator, make_allocator(256 * kMiB));
  Stream& stream = device_->default_stream();
  for (std::size_t bytes : {std::size_t{4096}, 3 * kMiB, 30 * kMiB}) {
    ASSERT_OK_AND_ASSIGN(void* first, allocator->allocate(bytes, stream));
    ASSERT_OK(allocator->free(first));
    const std::int64_t device_allocs = allocator->stats().num_device_alloc;
    ASSERT_OK_AND_ASSIGN(void* second, allocator->allocate(bytes, stream));
    EXPECT_EQ(second, first) << bytes << " bytes";
    EXPECT_EQ(allocator->stats().num_device_alloc, device_allocs) << bytes << " bytes";
    ASSERT_OK(allocator->free(second));
  }
  ASSERT_OK(allocator->empty_cache());
  EXPECT_EQ(allocator->stats().all.reserved_bytes.current, 0);
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

// Blocks of many sizes, written and read back together, so that overlapping blocks or memory
// that is not really mapped would show.
TEST_P(CachingAllocatorCudaTest, CopiesIntoBlocksRoundTrip) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<CachingAllocator> allocator, make_allocator(256 * kMiB));
  Stream& stream = device_->default_stream();
  const std::vector<std::size_t> sizes = {1,        511,          4 * kKiB + 3, kMiB,
                                          kMiB + 1, 3 * kMiB + 5, 12 * kMiB,    25 * kMiB + 17};
  std::size_t staging_bytes = 0;
  for (std::size_t bytes : sizes) staging_bytes += bytes;
  ASSERT_OK_AND_ASSIGN(void* staging, device_->allocate_pinned_host(staging_bytes));
  auto* host = static_cast<std::uint8_t*>(staging);

  std::vector<void*> blocks;
  std::vector<void*> copies;
  std::size_t offset = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<std::uint8_t> data = pattern(sizes[i], static_cast<std::uint32_t>(i));
    std::memcpy(host + offset, data.data(), sizes[i]);
    ASSERT_OK_AND_ASSIGN(void* block, allocator->allocate(sizes[i], stream));
    ASSERT_OK_AND_ASSIGN(void* copy, allocator->allocate(sizes[i], stream));
    ASSERT_OK(stream.copy_async(block, host + offset, sizes[i], CopyKind::kHostToDevice));
    ASSERT_OK(stream.copy_async(copy, block, sizes[i], CopyKind::kDeviceToDevice));
    blocks.push_back(block);
    copies.push_back(copy);
    offset += sizes[i];
  }
  ASSERT_OK(stream.memset_async(staging, 0, staging_bytes));
  offset = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_OK(stream.copy_async(host + offset, copies[i], sizes[i], CopyKind::kDeviceToHost));
    offset += sizes[i];
  }
  ASSERT_OK(stream.synchronize());
  offset = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<std::uint8_t> data = pattern(sizes[i], static_cast<std::uint32_t>(i));
    EXPECT_EQ(std::memcmp(host + offset, data.data(), sizes[i]), 0) << sizes[i] << " bytes";
    offset += sizes[i];
  }
  for (void* block : blocks) ASSERT_OK(allocator->free(block));
  for (void* copy : copies) ASSERT_OK(allocator->free(copy));
  ASSERT_OK(device_->free_pinned_host(staging));
}

// A random mix of sizes on two streams against a 64 MiB budget: requests that cannot fit fail
// with kOutOfMemory, and neither the allocator's reserved bytes nor the device's committed bytes
// ever pass the budget.
TEST_P(CachingAllocatorCudaTest, ReservedBytesNeverPassTheBudget) {
  constexpr std::size_t kBudgetBytes = 64 * kMiB;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<CachingAllocator> allocator, make_allocator(kBudgetBytes));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> side, device_->create_stream());
  Stream* streams[] = {&device_->default_stream(), side.get()};
  std::mt19937 random(42);
  std::uniform_int_distribution<std::size_t> small(1, 2 * kMiB);
  std::uniform_int_distribution<std::size_t> large(2 * kMiB, 24 * kMiB);
  std::vector<void*> live;
  int ooms = 0;
  for (int op = 0; op < 400; ++op) {
    if (!live.empty() && random() % 3 == 0) {
      const std::size_t victim = random() % live.size();
      ASSERT_OK(allocator->free(live[victim]));
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
    } else {
      const std::size_t bytes = random() % 4 == 0 ? large(random) : small(random);
      Stream& stream = *streams[random() % 2];
      Result<void*> block = allocator->allocate(bytes, stream);
      if (block.ok()) {
        ASSERT_OK(stream.memset_async(*block, 0xee, bytes));
        live.push_back(*block);
      } else {
        ASSERT_EQ(block.status().code(), StatusCode::kOutOfMemory) << block.status().to_string();
        ++ooms;
      }
    }
    ASSERT_LE(device_->committed_bytes(), kBudgetBytes) << "after op " << op;
  }
  EXPECT_GT(ooms, 0) << "the mix should have pressed against the budget";
  const AllocatorStats stats = allocator->stats();
  EXPECT_LE(stats.all.reserved_bytes.peak, static_cast<std::int64_t>(kBudgetBytes));
  EXPECT_EQ(stats.budget_bytes, kBudgetBytes);
  for (void* block : live) ASSERT_OK(allocator->free(block));
  ASSERT_OK(device_->synchronize());
}

// A block freed while its stream still has queued work that writes it must not be written by
// another stream before that work has run: the allocator either hands out other memory or
// orders the new stream after the free.
TEST_P(CachingAllocatorCudaTest, BlockFreedOnABusyStreamIsReusedElsewhereOnlyAfterIt) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<CachingAllocator> allocator, make_allocator(256 * kMiB));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> producer, device_->create_stream());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Stream> copier, device_->create_stream());
  Stream& consumer = device_->default_stream();
  constexpr std::size_t kBytes = 4 * kMiB;
  ASSERT_OK_AND_ASSIGN(void* staging, device_->allocate_pinned_host(kBytes));
  std::memset(staging, 0x11, kBytes);

  // free(ptr): last use on the allocating stream, which is held back by 300 ms.
  ASSERT_OK_AND_ASSIGN(void* old_block, allocator->allocate(kBytes, *producer));
  ASSERT_OK(delay_stream(*producer, 300));
  ASSERT_OK(producer->copy_async(old_block, staging, kBytes, CopyKind::kHostToDevice));
  ASSERT_OK(allocator->free(old_block));
  ASSERT_OK_AND_ASSIGN(void* new_block, allocator->allocate(kBytes, consumer));
  ASSERT_OK(consumer.memset_async(new_block, 0xcd, kBytes));
  ASSERT_OK(producer->synchronize());
  std::vector<std::uint8_t> back(kBytes);
  ASSERT_OK(consumer.copy_async(back.data(), new_block, kBytes, CopyKind::kDeviceToHost));
  ASSERT_OK(consumer.synchronize());
  EXPECT_EQ(back, std::vector<std::uint8_t>(kBytes, 0xcd))
      << (new_block == old_block ? "the block was reused before its stream passed the free"
                                 : "a fresh block was clobbered");

  // free(ptr, last_use): allocated on the consumer, last used on a busy copy stream.
  ASSERT_OK_AND_ASSIGN(void* shared, allocator->allocate(kBytes, consumer));
  ASSERT_OK(delay_stream(*copier, 300));
  ASSERT_OK(copier->copy_async(shared, staging, kBytes, CopyKind::kHostToDevice));
  ASSERT_OK(allocator->free(shared, *copier));
  ASSERT_OK_AND_ASSIGN(void* again, allocator->allocate(kBytes, consumer));
  ASSERT_OK(consumer.memset_async(again, 0xcd, kBytes));
  ASSERT_OK(copier->synchronize());
  ASSERT_OK(consumer.copy_async(back.data(), again, kBytes, CopyKind::kDeviceToHost));
  ASSERT_OK(consumer.synchronize());
  EXPECT_EQ(back, std::vector<std::uint8_t>(kBytes, 0xcd))
      << (again == shared ? "the block was reused before the copy stream passed the free"
                          : "a fresh block was clobbered");

  ASSERT_OK(allocator->free(new_block));
  ASSERT_OK(allocator->free(again));
  ASSERT_OK(allocator->empty_cache());
  EXPECT_EQ(device_->committed_bytes(), 0u);
  ASSERT_OK(device_->free_pinned_host(staging));
}

TEST_P(CachingAllocatorCudaTest, OutOfMemoryReportNamesRequestAndBudget) {
  constexpr std::size_t kBudgetBytes = 64 * kMiB;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<CachingAllocator> allocator, make_allocator(kBudgetBytes));
  Stream& stream = device_->default_stream();
  ASSERT_OK_AND_ASSIGN(void* held, allocator->allocate(40 * kMiB, stream));
  Result<void*> refused = allocator->allocate(40 * kMiB, stream);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(refused.status().message().find(std::to_string(kBudgetBytes)), std::string::npos)
      << refused.status().to_string();
  EXPECT_EQ(allocator->stats().num_ooms, 1);
  ASSERT_OK(allocator->free(held));
  ASSERT_OK_AND_ASSIGN(void* fits, allocator->allocate(40 * kMiB, stream));
  ASSERT_OK(allocator->free(fits));
}

}  // namespace
}  // namespace ebb
