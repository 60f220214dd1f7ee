// The offload layer on a real GPU: pinned host<->device bandwidth through the host tier and the
// transfer engine's copy streams, against a bare cudaMemcpyAsync loop between the same kind of
// buffers on the same GPU (the figure must reach 90% of it), and the NVMe tier's staging buffers
// registered with CUDA (cudaHostRegister) carrying a device tensor to disk and back. Prints
// "FIGURE: ..." lines that tools/gpu_check.sh puts in its summary. Skips without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_device.h"
#include "offload/host_tier.h"
#include "offload/transfer_engine.h"
#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

constexpr std::size_t kBytes = 256 * kMiB;
constexpr int kRounds = 10;

class OffloadCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU is visible on this machine";
    DeviceOptions options;
    options.kind = DeviceKind::kCuda;
    options.capacity_bytes = 2 * kGiB;
    Result<std::unique_ptr<Device>> device = create_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
  }
  std::unique_ptr<Device> device_;
};

double gbps(std::size_t bytes, std::chrono::steady_clock::duration d) {
  return static_cast<double>(bytes) / std::chrono::duration<double>(d).count() / 1e9;
}

// GB/s of kRounds copies of kBytes with cudaMemcpyAsync on one stream, wall clock around the
// loop and its synchronize.
double bare_gbps(void* dst, const void* src, cudaMemcpyKind kind) {
  cudaStream_t stream = nullptr;
  EXPECT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(dst, src, kBytes, kind, stream), cudaSuccess);  // warm-up
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i) {
    EXPECT_EQ(cudaMemcpyAsync(dst, src, kBytes, kind, stream), cudaSuccess);
  }
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  return gbps(kRounds * kBytes, elapsed);
}

// The same through the transfer engine: each copy a request on its copy stream, the last one
// waited for on its Event.
double ebb_gbps(TransferEngine& engine, void* dst, const void* src, bool to_device) {
  auto issue = [&] {
    return to_device ? engine.copy_to_device(dst, src, kBytes, nullptr)
                     : engine.copy_to_host(dst, src, kBytes, nullptr);
  };
  Result<std::shared_ptr<Transfer>> warm = issue();
  EXPECT_TRUE(warm.ok() && (*warm)->wait().ok());
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<Transfer> last;
  for (int i = 0; i < kRounds; ++i) {
    Result<std::shared_ptr<Transfer>> t = issue();
    EXPECT_TRUE(t.ok()) << t.status().to_string();
    if (t.ok()) last = *t;
  }
  EXPECT_TRUE(last != nullptr && last->wait().ok());
  return gbps(kRounds * kBytes, std::chrono::steady_clock::now() - start);
}

TEST_F(OffloadCudaTest, HostTierCopiesReachNinetyPercentOfABareCudaMemcpyAsyncLoop) {
  void* dev = device_->allocate(kBytes).value();
  void* pinned = device_->allocate_pinned_host(kBytes).value();
  auto tier = HostTier::create(*device_, kBytes + 4 * kMiB).value();
  void* host = tier->allocate("bench", kBytes).value();
  auto engine = TransferEngine::create(*device_, nullptr).value();

  const double bare_h2d = bare_gbps(dev, pinned, cudaMemcpyHostToDevice);
  const double bare_d2h = bare_gbps(pinned, dev, cudaMemcpyDeviceToHost);
  const double ebb_h2d = ebb_gbps(*engine, dev, host, /*to_device=*/true);
  const double ebb_d2h = ebb_gbps(*engine, host, dev, /*to_device=*/false);
  std::printf(
      "FIGURE: host->device ebb %.1f GB/s vs bare %.1f (%.0f%%); device->host ebb %.1f "
      "vs bare %.1f (%.0f%%), %zu MiB x %d\n",
      ebb_h2d, bare_h2d, 100 * ebb_h2d / bare_h2d, ebb_d2h, bare_d2h, 100 * ebb_d2h / bare_d2h,
      kBytes / kMiB, kRounds);
  EXPECT_GE(ebb_h2d, 0.9 * bare_h2d);
  EXPECT_GE(ebb_d2h, 0.9 * bare_d2h);

  engine.reset();
  ASSERT_TRUE(tier->free(host).ok());
  ASSERT_TRUE(device_->free_pinned_host(pinned).ok());
  ASSERT_TRUE(device_->free(dev).ok());
}

TEST_F(OffloadCudaTest, DeviceTensorToNvmeAndBackThroughRegisteredStaging) {
  std::string dir = (test_support::scratch_base() / "ebb-offload-cuda-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  {
    auto tier = NvmeTier::create({.directories = {dir},
                                  .capacity_bytes = 128 * kMiB,
                                  .block_bytes = kMiB,
                                  .queue_depth = 8,
                                  .device = device_.get()});
    if (tier.status().code() == StatusCode::kUnavailable) {
      std::filesystem::remove_all(dir);
      GTEST_SKIP() << tier.status().to_string();
    }
    ASSERT_TRUE(tier.ok()) << tier.status().to_string();
    auto engine = TransferEngine::create(*device_, tier->get()).value();
    const std::size_t bytes = 37 * kMiB + 12345;
    std::vector<std::uint8_t> data(bytes);
    for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + i / 4096);
    void* dev = device_->allocate(bytes).value();
    Stream& compute = device_->default_stream();
    ASSERT_TRUE(compute.copy_async(dev, data.data(), bytes, CopyKind::kHostToDevice).ok());
    auto out = engine->device_to_nvme("t", dev, bytes, &compute, {});
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE((*out)->wait().ok()) << (*out)->wait().to_string();
    ASSERT_TRUE(compute.memset_async(dev, 0, bytes).ok());
    const auto start = std::chrono::steady_clock::now();
    auto in = engine->nvme_to_device((*out)->extent(), dev, bytes, &compute, {});
    ASSERT_TRUE(in.ok());
    ASSERT_TRUE((*in)->wait().ok()) << (*in)->wait().to_string();
    std::printf("FIGURE: NVMe->device through staging %.2f GB/s (%zu bytes)\n",
                gbps(bytes, std::chrono::steady_clock::now() - start), bytes);
    std::vector<std::uint8_t> back(bytes);
    ASSERT_TRUE(compute.copy_async(back.data(), dev, bytes, CopyKind::kDeviceToHost).ok());
    ASSERT_TRUE(compute.synchronize().ok());
    EXPECT_EQ(back, data);
    ASSERT_TRUE((*tier)->free((*out)->extent()).ok());
    ASSERT_TRUE(device_->free(dev).ok());
  }
  std::error_code ignored;
  EXPECT_TRUE(std::filesystem::is_empty(dir, ignored));
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace ebb
