#include "offload/transfer_engine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_support::random_bytes;
using test_support::ScratchDir;

class TransferEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EBB_SKIP_WITHOUT_IO_URING();
    DeviceOptions options;
    options.capacity_bytes = 64 * kMiB;
    device_ = create_device(options).value();
    auto tier = NvmeTier::create({.directories = {dir_.path()},
                                  .capacity_bytes = 64 * kMiB,
                                  .block_bytes = 128 * kKiB,
                                  .queue_depth = 4,
                                  .device = device_.get()});
    ASSERT_TRUE(tier.ok()) << tier.status().to_string();
    tier_ = std::move(tier).value();
    auto engine = TransferEngine::create(*device_, tier_.get());
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = std::move(engine).value();
  }
  void TearDown() override {
    engine_.reset();
    tier_.reset();
  }

  ScratchDir dir_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<NvmeTier> tier_;
  std::unique_ptr<TransferEngine> engine_;
};

TEST_F(TransferEngineTest, DeviceHostCopiesOnTheirOwnStreams) {
  const std::size_t bytes = 3 * kMiB + 17;
  const std::vector<std::uint8_t> data = random_bytes(bytes, 1);
  void* dev = device_->allocate(bytes).value();
  void* host = device_->allocate_pinned_host(bytes).value();
  std::vector<std::uint8_t> back(bytes);
  auto up = engine_->copy_to_device(dev, data.data(), bytes, &device_->default_stream());
  ASSERT_TRUE(up.ok()) << up.status().to_string();
  ASSERT_TRUE((*up)->wait().ok());
  EXPECT_TRUE((*up)->done());
  auto down = engine_->copy_to_host(host, dev, bytes, nullptr);
  ASSERT_TRUE(down.ok());
  ASSERT_TRUE((*down)->wait().ok());
  EXPECT_EQ(std::memcmp(host, data.data(), bytes), 0);
  EXPECT_NE(engine_->device_to_host_stream().id(), engine_->host_to_device_stream().id());
  ASSERT_TRUE(device_->free_pinned_host(host).ok());
  ASSERT_TRUE(device_->free(dev).ok());
}

TEST_F(TransferEngineTest, DeviceToNvmeAndBackThroughStaging) {
  for (std::size_t bytes : {std::size_t{1}, 128 * kKiB, 5 * 128 * kKiB + 4097}) {
    const std::vector<std::uint8_t> data = random_bytes(bytes, bytes);
    void* dev = device_->allocate(bytes).value();
    Stream& compute = device_->default_stream();
    ASSERT_TRUE(compute.copy_async(dev, data.data(), bytes, CopyKind::kHostToDevice).ok());
    // Ordered after the copy above through `after`: no synchronize needed.
    auto out = engine_->device_to_nvme("t", dev, bytes, &compute, {.op_index = 1});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ASSERT_TRUE((*out)->wait().ok()) << (*out)->wait().to_string();
    const ExtentId extent = (*out)->extent();
    ASSERT_NE(extent, kNoExtent);
    ASSERT_TRUE(compute.memset_async(dev, 0, bytes).ok());
    auto in = engine_->nvme_to_device(extent, dev, bytes, &compute, {.op_index = 2});
    ASSERT_TRUE(in.ok());
    ASSERT_TRUE((*in)->wait().ok()) << (*in)->wait().to_string();
    std::vector<std::uint8_t> back(bytes);
    ASSERT_TRUE(compute.copy_async(back.data(), dev, bytes, CopyKind::kDeviceToHost).ok());
    ASSERT_TRUE(compute.synchronize().ok());
    EXPECT_EQ(back, data) << bytes << " bytes";
    ASSERT_TRUE(tier_->free(extent).ok());
    ASSERT_TRUE(device_->free(dev).ok());
  }
}

TEST_F(TransferEngineTest, RunsEarliestDeadlineFirstAndCancelsSafely) {
  const std::size_t bytes = 2 * kMiB;
  const std::vector<std::uint8_t> data = random_bytes(bytes, 3);
  // A first request keeps the I/O thread busy while the others are queued behind it.
  auto first = engine_->host_to_nvme("busy", data.data(), bytes, {.op_index = 0});
  ASSERT_TRUE(first.ok());
  std::vector<std::shared_ptr<Transfer>> queued;
  for (std::int64_t deadline : {40, 10, 30, 20}) {
    auto t = engine_->host_to_nvme("d" + std::to_string(deadline), data.data(), bytes,
                                   {.op_index = deadline});
    ASSERT_TRUE(t.ok());
    queued.push_back(*t);
  }
  auto doomed_buffer = std::make_unique<std::vector<std::uint8_t>>(bytes);
  auto doomed = engine_->host_to_nvme("freed", doomed_buffer->data(), bytes, {.op_index = 50});
  ASSERT_TRUE(doomed.ok());
  const bool removed = (*doomed)->cancel();
  doomed_buffer.reset();  // its tensor is gone; the cancelled request must not touch it
  ASSERT_TRUE((*first)->wait().ok());
  for (auto& t : queued) ASSERT_TRUE(t->wait().ok());
  if (removed) {
    EXPECT_EQ((*doomed)->wait().code(), StatusCode::kFailedPrecondition);
  }
  // Finished in deadline order: 10, 20, 30, 40.
  EXPECT_LT(queued[1]->finish_order(), queued[3]->finish_order());
  EXPECT_LT(queued[3]->finish_order(), queued[2]->finish_order());
  EXPECT_LT(queued[2]->finish_order(), queued[0]->finish_order());
  for (auto& t : queued) ASSERT_TRUE(tier_->free(t->extent()).ok());
  ASSERT_TRUE(tier_->free((*first)->extent()).ok());
}

TEST_F(TransferEngineTest, ConcurrentRequestersFromSeveralThreads) {
  std::vector<std::thread> threads;
  std::vector<int> failures(3, 0);
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        const std::size_t bytes = 5000 + 77777 * (t + 1) * (i + 1);
        const std::vector<std::uint8_t> data = random_bytes(bytes, t * 10 + i);
        auto w = engine_->host_to_nvme("x", data.data(), bytes, {.op_index = i, .priority = t});
        if (!w.ok() || !(*w)->wait().ok()) {
          ++failures[t];
          continue;
        }
        std::vector<std::uint8_t> back(bytes);
        auto r = engine_->nvme_to_host((*w)->extent(), back.data(), bytes, {.op_index = i});
        if (!r.ok() || !(*r)->wait().ok() || back != data) ++failures[t];
        if (!tier_->free((*w)->extent()).ok()) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(3, 0));
}

TEST_F(TransferEngineTest, ErrorsReachTheWaiter) {
  auto r = engine_->nvme_to_host(12345, nullptr, 10, {});
  ASSERT_TRUE(r.ok());
  Status s = (*r)->wait();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
}

}  // namespace
}  // namespace ebb
