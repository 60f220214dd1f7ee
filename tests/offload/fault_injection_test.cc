// Every fault the injector can make, on writes and on reads: detected, reported with the tensor,
// the file and the offset, nothing committed by a failed write, and the tier still usable.
#include <gtest/gtest.h>

#include "offload/fault_injector.h"
#include "offload/nvme_tier.h"
#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_support::random_bytes;
using test_support::ScratchDir;

struct FaultCase {
  FaultKind kind;
  FaultDirection direction;
  StatusCode code;   // what the failing call returns
  const char* says;  // in its message
};

class FaultTest : public ::testing::TestWithParam<FaultCase> {
 protected:
  void SetUp() override { EBB_SKIP_WITHOUT_IO_URING(); }
  ScratchDir dir_;
  FaultInjector faults_;
};

// Three blocks and a tail; the fault hits the second request.
constexpr std::size_t kBlockBytes = 64 * kKiB;
constexpr std::size_t kTensorBytes = 3 * kBlockBytes + 1234;

std::string case_name(const ::testing::TestParamInfo<FaultCase>& info) {
  static const char* const kKinds[] = {"Eio", "Short", "Enospc", "BitFlip"};
  return std::string(info.param.direction == FaultDirection::kWrite ? "Write" : "Read") +
         kKinds[static_cast<int>(info.param.kind)];
}

TEST_P(FaultTest, IsDetectedNamedAndLeavesTheTierUsable) {
  const FaultCase c = GetParam();
  auto created = NvmeTier::create({.directories = {dir_.path()},
                                   .capacity_bytes = 4 * kMiB,
                                   .block_bytes = kBlockBytes,
                                   .queue_depth = 2,
                                   .faults = &faults_});
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  std::unique_ptr<NvmeTier> tier = std::move(created).value();
  const std::vector<std::uint8_t> data = random_bytes(kTensorBytes, 9);
  std::vector<std::uint8_t> back(kTensorBytes);
  Status failed;
  if (c.direction == FaultDirection::kWrite) {
    faults_.arm(FaultDirection::kWrite, c.kind, 1);
    Result<ExtentId> e = tier->write("victim", data.data(), data.size());
    if (c.kind == FaultKind::kBitFlip) {
      // The flip happens after the checksum was taken, as corruption on the way to the disk
      // would: the write completes and the read catches it.
      ASSERT_TRUE(e.ok()) << e.status().to_string();
      failed = tier->read(*e, back.data(), back.size());
      ASSERT_TRUE(tier->free(*e).ok());
    } else {
      ASSERT_FALSE(e.ok());
      failed = e.status();
      EXPECT_EQ(tier->stats().used_bytes, 0U) << "a failed write commits nothing";
      EXPECT_EQ(tier->stats().extents, 0U);
    }
  } else {
    Result<ExtentId> e = tier->write("victim", data.data(), data.size());
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    faults_.arm(FaultDirection::kRead, c.kind, 1);
    failed = tier->read(*e, back.data(), back.size());
    // The extent on disk is intact: read again without the fault.
    std::vector<std::uint8_t> again(kTensorBytes);
    ASSERT_TRUE(tier->read(*e, again.data(), again.size()).ok());
    EXPECT_EQ(again, data);
    ASSERT_TRUE(tier->free(*e).ok());
  }
  EXPECT_EQ(faults_.fired(), 1U);
  ASSERT_FALSE(failed.ok()) << fault_kind_name(c.kind) << " went unnoticed";
  EXPECT_EQ(failed.code(), c.code) << failed.to_string();
  const std::string& m = failed.message();
  EXPECT_NE(m.find("'victim'"), std::string::npos) << m;
  EXPECT_NE(m.find(tier->directories()[0] + "/stripe0"), std::string::npos) << m;
  EXPECT_NE(m.find("at offset " + std::to_string(kBlockBytes)), std::string::npos) << m;
  EXPECT_NE(m.find(c.says), std::string::npos) << m;

  // Still usable.
  Result<ExtentId> next = tier->write("next", data.data(), data.size());
  ASSERT_TRUE(next.ok()) << next.status().to_string();
  ASSERT_TRUE(tier->read(*next, back.data(), back.size()).ok());
  EXPECT_EQ(back, data);
  tier.reset();
  EXPECT_EQ(dir_.entries(), 0U) << "no file left behind";
}

INSTANTIATE_TEST_SUITE_P(
    AllFaults, FaultTest,
    ::testing::Values(
        FaultCase{FaultKind::kIoError, FaultDirection::kWrite, StatusCode::kIoError,
                  "Input/output error"},
        FaultCase{FaultKind::kShort, FaultDirection::kWrite, StatusCode::kDataLoss, "short write"},
        FaultCase{FaultKind::kNoSpace, FaultDirection::kWrite, StatusCode::kIoError,
                  "No space left on device"},
        FaultCase{FaultKind::kBitFlip, FaultDirection::kWrite, StatusCode::kDataLoss,
                  "checksum mismatch"},
        FaultCase{FaultKind::kIoError, FaultDirection::kRead, StatusCode::kIoError,
                  "Input/output error"},
        FaultCase{FaultKind::kShort, FaultDirection::kRead, StatusCode::kDataLoss, "short read"},
        FaultCase{FaultKind::kNoSpace, FaultDirection::kRead, StatusCode::kIoError,
                  "No space left on device"},
        FaultCase{FaultKind::kBitFlip, FaultDirection::kRead, StatusCode::kDataLoss,
                  "checksum mismatch"}),
    case_name);

TEST(FaultInjectorTest, CountsRequestsAndFiresOnce) {
  FaultInjector f;
  EXPECT_FALSE(f.next(FaultDirection::kWrite).has_value());
  f.arm(FaultDirection::kRead, FaultKind::kShort, 2);
  EXPECT_FALSE(f.next(FaultDirection::kWrite).has_value());
  EXPECT_FALSE(f.next(FaultDirection::kRead).has_value());
  EXPECT_FALSE(f.next(FaultDirection::kRead).has_value());
  EXPECT_EQ(f.next(FaultDirection::kRead), FaultKind::kShort);
  EXPECT_FALSE(f.next(FaultDirection::kRead).has_value());
  EXPECT_EQ(f.fired(), 1U);
}

}  // namespace
}  // namespace ebb
