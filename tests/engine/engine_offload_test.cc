// The engine with an NVMe tier below a host tier too small for what it swaps: swapped tensors
// spill to NVMe and come back with the same bytes, and an injected fault in either direction is
// reported naming the tensor, the file and the offset, loses nothing, and leaves the engine
// usable; no file is left behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "offload/fault_injector.h"
#include "tests/engine/test_ops.h"
#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_ops::f32;

constexpr std::size_t kElems = 64 * 1024;  // 256 KiB per tensor
constexpr std::size_t kOffloadBytes = kElems * sizeof(float);

class EngineNvmeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EBB_SKIP_WITHOUT_IO_URING();
    dir_ = (test_support::scratch_base() / "engine_nvme_XXXXXX").string();
    ASSERT_NE(mkdtemp(dir_.data()), nullptr);
    device_ = test_ops::make_cpu_device();
    Result<std::unique_ptr<Engine>> created = Engine::create({.device = *device_,
                                                              .budget_bytes = 4 * kOffloadBytes,
                                                              .host_tier_bytes = 4 * kKiB,
                                                              .policy = EvictionPolicy::kSwap,
                                                              .nvme_directories = {dir_},
                                                              .nvme_tier_bytes = 16 * kMiB,
                                                              .nvme_block_bytes = 64 * kKiB,
                                                              .nvme_queue_depth = 4,
                                                              .nvme_faults = &faults_});
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    engine_ = std::move(created).value();
    ASSERT_NE(engine_->nvme_tier(), nullptr);
  }
  void TearDown() override {
    engine_.reset();
    if (!dir_.empty()) {
      EXPECT_EQ(rmdir(dir_.c_str()), 0) << "files left behind in " << dir_;
    }
  }

  // x, then a chain t1 = x + 1, t2 = t1 + 1, ... of `n` tensors in a budget of four: the early
  // ones are swapped out, and with a 4 KiB host tier they go to NVMe. Stops at the first failed
  // op, whose Status goes to `failed` when given (else the test fails).
  std::vector<Tensor> chain(int n, Status* failed = nullptr) {
    std::vector<float> x(kElems);
    for (std::size_t i = 0; i < kElems; ++i) x[i] = static_cast<float>(i) * 0.5F;
    std::vector<Tensor> t = {engine_->input(f32("x", {kElems}), x.data()).value()};
    for (int i = 1; i <= n; ++i) {
      Result<std::vector<Tensor>> out = engine_->run("step" + std::to_string(i), {t.back()},
                                                     {f32("t" + std::to_string(i), {kElems})},
                                                     test_ops::scale(kElems, 1.0F, 1.0F));
      if (!out.ok()) {
        if (failed != nullptr) *failed = out.status();
        EXPECT_NE(failed, nullptr) << out.status().to_string();
        break;
      }
      t.push_back((*out)[0]);
    }
    return t;
  }

  // Reads tensor i of the chain and checks its values (x + i).
  void expect_values(const Tensor& t, int i) {
    std::vector<float> host(kElems);
    Status read = engine_->read(t, host.data(), kOffloadBytes);
    ASSERT_TRUE(read.ok()) << read.to_string();
    for (std::size_t k = 0; k < kElems; k += 997) {
      ASSERT_EQ(host[k], static_cast<float>(k) * 0.5F + static_cast<float>(i)) << "element " << k;
    }
  }

  std::string dir_;
  FaultInjector faults_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineNvmeTest, SpilledTensorsComeBackWithTheirBytes) {
  ASSERT_TRUE(engine_->begin_iteration().ok());
  std::vector<Tensor> t = chain(8);
  ASSERT_EQ(t.size(), 9U);
  EXPECT_EQ(engine_->residency(t[1]).value(), Residency::kNvme);
  for (int i = 1; i <= 8; ++i) expect_values(t[i], i);
  const EngineStats stats = engine_->stats();
  EXPECT_GT(stats.nvme_spills, 0);
  EXPECT_GE(stats.nvme_written_bytes, static_cast<std::int64_t>(4 * kOffloadBytes));
  EXPECT_GT(stats.nvme_read_bytes, 0);
  ASSERT_TRUE(engine_->end_iteration().ok());
  EXPECT_EQ(engine_->nvme_tier()->stats().extents, 0U) << "released tensors free their extents";
}

TEST_F(EngineNvmeTest, ACorruptReadIsReportedAndTheTensorIsReadAgainIntact) {
  ASSERT_TRUE(engine_->begin_iteration().ok());
  std::vector<Tensor> t = chain(8);
  ASSERT_EQ(engine_->residency(t[2]).value(), Residency::kNvme);
  faults_.arm(FaultDirection::kRead, FaultKind::kBitFlip, 2);
  std::vector<float> host(kElems);
  Status read = engine_->read(t[2], host.data(), kOffloadBytes);
  ASSERT_EQ(read.code(), StatusCode::kDataLoss) << read.to_string();
  EXPECT_NE(read.message().find("'t2'"), std::string::npos) << read.message();
  EXPECT_NE(read.message().find("/stripe0 at offset "), std::string::npos) << read.message();
  EXPECT_NE(read.message().find("checksum mismatch"), std::string::npos) << read.message();
  EXPECT_EQ(engine_->residency(t[2]).value(), Residency::kNvme) << "its copy on NVMe is kept";
  expect_values(t[2], 2);
  ASSERT_TRUE(engine_->end_iteration().ok());
}

TEST_F(EngineNvmeTest, AFailedSpillKeepsTheTensorAndIsReportedByTheNextCall) {
  ASSERT_TRUE(engine_->begin_iteration().ok());
  faults_.arm(FaultDirection::kWrite, FaultKind::kIoError, 0);
  // The op whose allocation asked for room runs (eviction looks elsewhere); the write error
  // comes with the next call, which does nothing else.
  Status failed;
  std::vector<Tensor> t = chain(8, &failed);
  EXPECT_EQ(faults_.fired(), 1U);
  ASSERT_EQ(failed.code(), StatusCode::kIoError) << failed.to_string();
  EXPECT_NE(failed.message().find("spilling tensor 'x'"), std::string::npos) << failed.message();
  EXPECT_NE(failed.message().find("/stripe0 at offset 0"), std::string::npos) << failed.message();
  EXPECT_NE(failed.message().find("Input/output error"), std::string::npos) << failed.message();
  // Nothing was lost, and the engine goes on.
  ASSERT_GE(t.size(), 2U);
  for (std::size_t i = 0; i < t.size(); ++i) expect_values(t[i], static_cast<int>(i));
  std::vector<Tensor> more = chain(4);
  ASSERT_EQ(more.size(), 5U);
  for (std::size_t i = 0; i < more.size(); ++i) expect_values(more[i], static_cast<int>(i));
  ASSERT_TRUE(engine_->end_iteration().ok());
}

}  // namespace
}  // namespace ebb
