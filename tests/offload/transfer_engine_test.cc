#include "offload/transfer_engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

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

// Device<->host copies need no NVMe tier, nor io_uring: their own fixture, which never skips.
class TransferCopyTest : public ::testing::Test {
 protected:
  // A cpu device whose copies cross a modelled 2 GB/s link each way, and a transfer engine
  // whose lanes keep `copies_in_flight` copies on their streams.
  void make(std::size_t copies_in_flight, DeviceKind kind = DeviceKind::kCpu) {
    DeviceOptions options;
    options.kind = kind;
    options.capacity_bytes = 64 * kMiB;
    options.host_to_device = {.bytes_per_second = 2e9};
    options.device_to_host = {.bytes_per_second = 2e9};
    device_ = create_device(options).value();
    engine_ =
        TransferEngine::create(*device_, nullptr, {.copies_in_flight = copies_in_flight}).value();
  }
  // A stream held by a kernel until open() is called: a copy ordered after it cannot complete
  // before then, whatever the machine's load, so what is queued behind it stays queued.
  void close_gate() {
    gate_ = device_->create_stream().value();
    ASSERT_TRUE(gate_
                    ->launch([this](const LaunchContext&) {
                      while (!open_.load(std::memory_order_acquire)) std::this_thread::yield();
                    })
                    .ok());
  }
  void open() { open_.store(true, std::memory_order_release); }
  void TearDown() override {
    open();
    if (gate_ != nullptr) (void)gate_->synchronize();
    engine_.reset();
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<TransferEngine> engine_;
  std::unique_ptr<Stream> gate_;
  std::atomic<bool> open_{false};
};

TEST_F(TransferCopyTest, DeviceHostCopiesOnTheirOwnStreams) {
  make(2);
  const std::size_t bytes = 3 * kMiB + 17;
  const std::vector<std::uint8_t> data = random_bytes(bytes, 1);
  void* dev = device_->allocate(bytes).value();
  void* host = device_->allocate_pinned_host(bytes).value();
  auto up = engine_->copy_to_device(dev, data.data(), bytes, &device_->default_stream());
  ASSERT_TRUE(up.ok()) << up.status().to_string();
  ASSERT_TRUE((*up)->wait().ok());
  EXPECT_TRUE((*up)->done());
  auto down = engine_->copy_to_host(host, dev, bytes, nullptr);
  ASSERT_TRUE(down.ok());
  ASSERT_TRUE((*down)->wait().ok());
  EXPECT_EQ(std::memcmp(host, data.data(), bytes), 0);
  EXPECT_NE(engine_->device_to_host_stream().id(), engine_->host_to_device_stream().id());
  EXPECT_NE(engine_->device_to_host_stream().id(), device_->default_stream().id());
  EXPECT_NE(engine_->host_to_device_stream().id(), device_->default_stream().id());
  ASSERT_TRUE(device_->free_pinned_host(host).ok());
  ASSERT_TRUE(device_->free(dev).ok());
}

// Three prefetches into the device, the link busy with the first: the one needed at op 5,
// asked for after the one needed at op 9, goes first.
TEST_F(TransferCopyTest, EarlierDeadlineOvertakesALaterOne) {
  make(/*copies_in_flight=*/1);
  close_gate();
  const std::size_t bytes = kMiB;
  std::vector<std::vector<std::uint8_t>> data;
  std::vector<void*> dev;
  for (int i = 0; i < 3; ++i) {
    data.push_back(random_bytes(bytes, 10 + i));
    dev.push_back(device_->allocate(bytes).value());
  }
  auto busy = engine_->copy_to_device(dev[0], data[0].data(), bytes, gate_.get(), {.op_index = 1});
  auto later = engine_->copy_to_device(dev[1], data[1].data(), bytes, nullptr, {.op_index = 9});
  auto sooner = engine_->copy_to_device(dev[2], data[2].data(), bytes, nullptr, {.op_index = 5});
  ASSERT_TRUE(busy.ok() && later.ok() && sooner.ok());
  EXPECT_EQ((*busy)->issue_order(), 1U) << "the link was free: issued at once";
  EXPECT_EQ((*later)->issue_order(), 0U) << "the window is full: queued";
  EXPECT_EQ((*sooner)->issue_order(), 0U);
  EXPECT_FALSE((*later)->done());
  EXPECT_EQ(engine_->stats().queued_copies, 2);
  open();
  for (auto* t : {&busy, &later, &sooner}) ASSERT_TRUE((**t)->wait().ok());
  EXPECT_EQ((*sooner)->issue_order(), 2U) << "needed at op 5: overtakes the one needed at op 9";
  EXPECT_EQ((*later)->issue_order(), 3U);
  // One stream, in issue order: the later one completed after the sooner one, by about the
  // time of one copy over the modelled link (0.5 ms).
  Result<double> gap = (*later)->completion().elapsed_ms_since((*sooner)->completion());
  ASSERT_TRUE(gap.ok()) << gap.status().to_string();
  EXPECT_GT(*gap, 0.0);
  std::vector<std::uint8_t> back(bytes);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(device_->default_stream()
                    .copy_async(back.data(), dev[i], bytes, CopyKind::kDeviceToHost)
                    .ok());
    ASSERT_TRUE(device_->default_stream().synchronize().ok());
    EXPECT_EQ(back, data[i]) << "copy " << i;
    ASSERT_TRUE(device_->free(dev[i]).ok());
  }
}

// A stream that waits for a queued copy issues it at once, ahead of the queue; a cancelled
// queued copy never touches its buffers.
TEST_F(TransferCopyTest, StreamWaitIssuesAQueuedCopyAndCancelLeavesBuffersAlone) {
  make(/*copies_in_flight=*/1);
  close_gate();
  const std::size_t bytes = 256 * kKiB;
  const std::vector<std::uint8_t> data = random_bytes(bytes, 3);
  void* busy_dev = device_->allocate(bytes).value();
  void* wanted_dev = device_->allocate(bytes).value();
  void* doomed_dev = device_->allocate(bytes).value();
  ASSERT_TRUE(device_->default_stream().memset_async(doomed_dev, 0x77, bytes).ok());
  ASSERT_TRUE(device_->default_stream().synchronize().ok());
  auto busy = engine_->copy_to_device(busy_dev, data.data(), bytes, gate_.get(), {.op_index = 0});
  auto doomed = engine_->copy_to_device(doomed_dev, data.data(), bytes, nullptr, {.op_index = 1});
  auto wanted = engine_->copy_to_device(wanted_dev, data.data(), bytes, nullptr, {.op_index = 50});
  ASSERT_TRUE(busy.ok() && doomed.ok() && wanted.ok());
  Stream& compute = device_->default_stream();
  ASSERT_TRUE(engine_->stream_wait(compute, **wanted).ok());
  EXPECT_EQ((*wanted)->issue_order(), 2U) << "waited for: issued ahead of op 1's copy";
  EXPECT_EQ(engine_->stats().expedited, 1);
  EXPECT_TRUE((*doomed)->cancel()) << "still queued: removed";
  EXPECT_EQ((*doomed)->wait().code(), StatusCode::kFailedPrecondition);
  open();
  ASSERT_TRUE(compute.synchronize().ok());
  EXPECT_TRUE((*wanted)->done()) << "the compute stream waited for it";
  std::vector<std::uint8_t> back(bytes);
  ASSERT_TRUE(compute.copy_async(back.data(), wanted_dev, bytes, CopyKind::kDeviceToHost).ok());
  ASSERT_TRUE(compute.synchronize().ok());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(compute.copy_async(back.data(), doomed_dev, bytes, CopyKind::kDeviceToHost).ok());
  ASSERT_TRUE(compute.synchronize().ok());
  EXPECT_EQ(back, std::vector<std::uint8_t>(bytes, 0x77)) << "the cancelled copy wrote nothing";
  ASSERT_TRUE(engine_->synchronize().ok());
  for (void* p : {busy_dev, wanted_dev, doomed_dev}) ASSERT_TRUE(device_->free(p).ok());
}

// On a sim device every copy is issued when requested: its clock moves only when the host
// waits, so nothing is held back for a dispatcher that would wait on it.
TEST_F(TransferCopyTest, SimDeviceIssuesEveryCopyAtOnce) {
  make(/*copies_in_flight=*/1, DeviceKind::kSim);
  void* dev = device_->allocate(3 * kMiB).value();
  void* host = device_->allocate_pinned_host(kMiB).value();
  std::vector<std::shared_ptr<Transfer>> copies;
  for (int i = 0; i < 3; ++i) {
    auto* dst = static_cast<std::byte*>(dev) + i * kMiB;
    copies.push_back(
        engine_->copy_to_device(dst, host, kMiB, nullptr, {.op_index = 9 - i}).value());
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(copies[i]->issue_order(), static_cast<unsigned>(i + 1));
  EXPECT_EQ(engine_->stats().queued_copies, 0);
  for (auto& c : copies) ASSERT_TRUE(c->wait().ok());
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
  // A first request holds the I/O thread until the gate opens: it spills a device buffer whose
  // writer (a kernel on the gate stream) is still running, so the others queue behind it
  // whatever the machine's load.
  std::atomic<bool> open{false};
  std::unique_ptr<Stream> gate = device_->create_stream().value();
  ASSERT_TRUE(gate->launch([&](const LaunchContext&) {
                    while (!open.load(std::memory_order_acquire)) std::this_thread::yield();
                  })
                  .ok());
  void* dev = device_->allocate(bytes).value();
  ASSERT_TRUE(
      device_->default_stream().copy_async(dev, data.data(), bytes, CopyKind::kHostToDevice).ok());
  ASSERT_TRUE(device_->default_stream().synchronize().ok());
  auto first = engine_->device_to_nvme("busy", dev, bytes, gate.get(), {.op_index = 0});
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
  EXPECT_TRUE((*doomed)->cancel()) << "queued behind the held I/O thread: removed";
  doomed_buffer.reset();  // its tensor is gone; the cancelled request must not touch it
  open.store(true, std::memory_order_release);
  ASSERT_TRUE((*first)->wait().ok());
  for (auto& t : queued) ASSERT_TRUE(t->wait().ok());
  EXPECT_EQ((*doomed)->wait().code(), StatusCode::kFailedPrecondition);
  // Finished in deadline order: 0, then 10, 20, 30, 40.
  EXPECT_EQ((*first)->finish_order(), 1U);
  EXPECT_EQ(queued[1]->finish_order(), 2U);
  EXPECT_EQ(queued[3]->finish_order(), 3U);
  EXPECT_EQ(queued[2]->finish_order(), 4U);
  EXPECT_EQ(queued[0]->finish_order(), 5U);
  for (auto& t : queued) ASSERT_TRUE(tier_->free(t->extent()).ok());
  ASSERT_TRUE(tier_->free((*first)->extent()).ok());
  ASSERT_TRUE(gate->synchronize().ok());
  ASSERT_TRUE(device_->free(dev).ok());
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
