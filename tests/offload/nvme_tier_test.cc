#include "offload/nvme_tier.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_support::random_bytes;
using test_support::ScratchDir;

class NvmeTierTest : public ::testing::Test {
 protected:
  void SetUp() override { EBB_SKIP_WITHOUT_IO_URING(); }

  std::unique_ptr<NvmeTier> make_tier(std::vector<std::string> dirs,
                                      std::size_t capacity_bytes = 64 * kMiB,
                                      std::size_t block_bytes = 256 * kKiB,
                                      FaultInjector* faults = nullptr) {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::create({.directories = std::move(dirs),
                                                               .capacity_bytes = capacity_bytes,
                                                               .block_bytes = block_bytes,
                                                               .queue_depth = 8,
                                                               .faults = faults});
    EXPECT_TRUE(tier.ok()) << tier.status().to_string();
    return tier.ok() ? std::move(tier).value() : nullptr;
  }

  ScratchDir dir_;
};

TEST_F(NvmeTierTest, RoundTripsSizesThatAreNotMultiplesOfTheBlock) {
  auto tier = make_tier({dir_.path()});
  ASSERT_NE(tier, nullptr);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 12; ++i) {
    const std::size_t bytes = 1 + rng() % (3 * kMiB);
    const std::vector<std::uint8_t> data = random_bytes(bytes, i);
    Result<ExtentId> extent = tier->write("t" + std::to_string(i), data.data(), bytes);
    ASSERT_TRUE(extent.ok()) << extent.status().to_string();
    std::vector<std::uint8_t> back(bytes, 0);
    ASSERT_TRUE(tier->read(*extent, back.data(), bytes).ok());
    EXPECT_EQ(back, data) << bytes << " bytes";
    EXPECT_EQ(tier->extent_bytes(*extent), bytes);
    ASSERT_TRUE(tier->free(*extent).ok());
  }
  EXPECT_EQ(tier->stats().used_bytes, 0U);
  EXPECT_EQ(tier->stats().extents, 0U);
}

TEST_F(NvmeTierTest, StripesOverTwoDirectoriesAndRemovesEveryFileAtClose) {
  ScratchDir second;
  auto tier = make_tier({dir_.path(), second.path()}, 16 * kMiB, 64 * kKiB);
  ASSERT_NE(tier, nullptr);
  ASSERT_EQ(tier->directories().size(), 2U);
  for (const std::string& d : tier->directories()) {
    EXPECT_EQ(std::filesystem::status(d).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all)
        << d;
    const auto stripe =
        std::filesystem::path(d) / (d.find(second.path()) == 0 ? "stripe1" : "stripe0");
    EXPECT_EQ(std::filesystem::file_size(stripe), 8 * kMiB) << "reserved up front: " << stripe;
  }
  const std::vector<std::uint8_t> data = random_bytes(5 * 64 * kKiB + 100, 1);
  Result<ExtentId> extent = tier->write("striped", data.data(), data.size());
  ASSERT_TRUE(extent.ok()) << extent.status().to_string();
  std::vector<std::uint8_t> back(data.size());
  ASSERT_TRUE(tier->read(*extent, back.data(), back.size()).ok());
  EXPECT_EQ(back, data);
  // Block 1 of the extent lies at the start of the second directory's file.
  const std::string stripe1 = tier->directories()[1] + "/stripe1";
  std::vector<std::uint8_t> raw(64 * kKiB);
  {
    FILE* f = std::fopen(stripe1.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fread(raw.data(), 1, raw.size(), f), raw.size());
    std::fclose(f);
  }
  EXPECT_TRUE(std::equal(raw.begin(), raw.end(), data.begin() + 64 * kKiB));
  tier.reset();
  EXPECT_EQ(dir_.entries(), 0U);
  EXPECT_EQ(second.entries(), 0U);
}

TEST_F(NvmeTierTest, ConcurrentRequestsFromSeveralThreads) {
  auto tier = make_tier({dir_.path()}, 64 * kMiB, 128 * kKiB);
  ASSERT_NE(tier, nullptr);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 6; ++i) {
        const std::size_t bytes = 1000 + (t * 7919 + i * 104729) % (700 * kKiB);
        const std::vector<std::uint8_t> data = random_bytes(bytes, t * 100 + i);
        Result<ExtentId> e = tier->write("thread" + std::to_string(t), data.data(), bytes);
        if (!e.ok()) {
          ++failures[t];
          continue;
        }
        std::vector<std::uint8_t> back(bytes);
        if (!tier->read(*e, back.data(), bytes).ok() || back != data) ++failures[t];
        if (!tier->free(*e).ok()) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
  EXPECT_EQ(tier->stats().used_bytes, 0U);
}

TEST_F(NvmeTierTest, FullTierAndFullDiskAreErrorsUpFront) {
  auto tier = make_tier({dir_.path()}, 1 * kMiB, 256 * kKiB);
  ASSERT_NE(tier, nullptr);
  const std::vector<std::uint8_t> data = random_bytes(2 * kMiB, 2);
  Result<ExtentId> e = tier->write("too_big", data.data(), data.size());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(e.status().message().find("too_big"), std::string::npos) << e.status().to_string();
  // Far more than this disk holds: refused when reserving, and nothing left behind.
  Result<std::unique_ptr<NvmeTier>> huge = NvmeTier::create(
      {.directories = {dir_.path()}, .capacity_bytes = std::size_t{1} << 50, .queue_depth = 4});
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kOutOfMemory) << huge.status().to_string();
  EXPECT_NE(huge.status().message().find("fallocate"), std::string::npos);
  tier.reset();
  EXPECT_EQ(dir_.entries(), 0U);
}

TEST_F(NvmeTierTest, DirectoryRemovedWhileInUseIsNamed) {
  auto tier = make_tier({dir_.path()});
  ASSERT_NE(tier, nullptr);
  const std::vector<std::uint8_t> data = random_bytes(100000, 4);
  Result<ExtentId> kept = tier->write("kept", data.data(), data.size());
  ASSERT_TRUE(kept.ok());
  std::filesystem::remove_all(tier->directories()[0]);
  Result<ExtentId> e = tier->write("late", data.data(), data.size());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kNotFound);
  EXPECT_NE(e.status().message().find("late"), std::string::npos);
  EXPECT_NE(e.status().message().find(tier->directories()[0]), std::string::npos);
  std::vector<std::uint8_t> back(data.size());
  Status read = tier->read(*kept, back.data(), back.size());
  EXPECT_EQ(read.code(), StatusCode::kNotFound) << read.to_string();
}

// Option checks come before the ring: they run, and must hold, where io_uring is disabled too.
TEST(NvmeTierOptions, BadOptionsAreRejectedBeforeTheRingOrAnyFile) {
  ScratchDir dir;
  struct Case {
    const char* what;
    NvmeTierOptions options;
    StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"no directory", {}, StatusCode::kInvalidArgument, "no directory given"},
      {"block of 1000 bytes",
       {.directories = {dir.path()}, .block_bytes = 1000},
       StatusCode::kInvalidArgument,
       "block size 1000 bytes is not a positive multiple of 4 KiB"},
      {"block of 0 bytes",
       {.directories = {dir.path()}, .block_bytes = 0},
       StatusCode::kInvalidArgument,
       "block size 0 bytes"},
      {"queue depth 0",
       {.directories = {dir.path()}, .queue_depth = 0},
       StatusCode::kInvalidArgument,
       "queue depth 0 is not in 1..4096"},
      {"queue depth 4097",
       {.directories = {dir.path()}, .queue_depth = 4097},
       StatusCode::kInvalidArgument,
       "queue depth 4097 is not in 1..4096"},
      {"no capacity",
       {.directories = {dir.path()}, .capacity_bytes = 0},
       StatusCode::kInvalidArgument,
       "capacity of 0 bytes"},
      {"missing directory",
       {.directories = {dir.path() + "/missing"}},
       StatusCode::kNotFound,
       dir.path() + "/missing does not exist"},
  };
  for (const Case& c : cases) {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::create(c.options);
    ASSERT_FALSE(tier.ok()) << c.what;
    EXPECT_EQ(tier.status().code(), c.code) << c.what << ": " << tier.status().to_string();
    EXPECT_NE(tier.status().message().find(c.message), std::string::npos)
        << c.what << ": " << tier.status().message();
  }
  EXPECT_EQ(dir.entries(), 0U) << "a rejected tier left files behind";
}

}  // namespace
}  // namespace ebb
