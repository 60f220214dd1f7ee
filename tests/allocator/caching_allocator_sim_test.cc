// The caching allocator, unchanged, on the sim device: a workload far past this machine's RAM,
// in expandable and classic segments, and cross-stream frees whose events complete only when
// the host waits on the virtual clock.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "allocator/caching_allocator.h"
#include "kernels/sim/sim_device.h"

namespace ebb {
namespace {

class CachingAllocatorSimTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    DeviceOptions options;
    options.kind = DeviceKind::kSim;
    options.capacity_bytes = 80 * kGiB;
    auto device = create_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
    CachingAllocatorOptions allocator_options;
    allocator_options.expandable_segments = GetParam();
    auto allocator = CachingAllocator::create(*device_, allocator_options);
    ASSERT_TRUE(allocator.ok()) << allocator.status().to_string();
    allocator_ = std::move(allocator).value();
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<CachingAllocator> allocator_;
};

INSTANTIATE_TEST_SUITE_P(Segments, CachingAllocatorSimTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "expandable" : "classic";
                         });

TEST_P(CachingAllocatorSimTest, SixtyGibibytesInPiecesThenEmptyCache) {
  Stream& stream = device_->default_stream();
  std::vector<void*> blocks;
  for (int i = 0; i < 60; ++i) {
    auto p = allocator_->allocate(kGiB, stream);
    ASSERT_TRUE(p.ok()) << "block " << i << ": " << p.status().to_string();
    blocks.push_back(*p);
    ASSERT_TRUE(stream.launch([](const LaunchContext&) {}, std::chrono::milliseconds(1)).ok());
  }
  EXPECT_GE(device_->committed_bytes(), 60 * kGiB);
  EXPECT_EQ(allocator_->stats().all.allocated_bytes.current, static_cast<std::int64_t>(60 * kGiB));
  for (void* p : blocks) ASSERT_TRUE(allocator_->free(p).ok());
  const std::int64_t device_allocs = allocator_->stats().num_device_alloc;
  auto again = allocator_->allocate(kGiB, stream);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(allocator_->stats().num_device_alloc, device_allocs)
      << "a freed block is served again from the cache";
  ASSERT_TRUE(allocator_->free(*again).ok());
  ASSERT_TRUE(allocator_->empty_cache().ok());
  EXPECT_EQ(device_->committed_bytes(), 0u);
  EXPECT_EQ(allocator_->stats().all.reserved_bytes.current, 0);
  ASSERT_TRUE(device_->synchronize().ok());
  EXPECT_EQ(*simulated_time(*device_), std::chrono::milliseconds(60));
}

TEST_P(CachingAllocatorSimTest, CrossStreamFreeWaitsForTheVirtualClock) {
  Stream& compute = device_->default_stream();
  auto copy = device_->create_stream();
  ASSERT_TRUE(copy.ok());
  auto p = allocator_->allocate(64 * kMiB, compute);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_TRUE((*copy)->launch([](const LaunchContext&) {}, std::chrono::seconds(1)).ok());
  ASSERT_TRUE(allocator_->free(*p, **copy).ok());
  // The copy stream's use has not completed on the virtual clock: the block is not reused, and
  // the request takes new memory.
  auto q = allocator_->allocate(64 * kMiB, compute);
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_NE(*q, *p);
  EXPECT_EQ(allocator_->stats().all.reserved_bytes.current, static_cast<std::int64_t>(128 * kMiB));
  ASSERT_TRUE((*copy)->synchronize().ok());
  EXPECT_EQ(*simulated_time(*device_), std::chrono::seconds(1));
  auto r = allocator_->allocate(64 * kMiB, compute);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(allocator_->stats().all.reserved_bytes.current, static_cast<std::int64_t>(128 * kMiB))
      << "once the host has waited past the free, its memory serves the request";
  ASSERT_TRUE(allocator_->free(*q).ok());
  ASSERT_TRUE(allocator_->free(*r).ok());
  ASSERT_TRUE(allocator_->empty_cache().ok());
  EXPECT_EQ(device_->committed_bytes(), 0u);
}

}  // namespace
}  // namespace ebb
