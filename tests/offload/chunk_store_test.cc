// NvmeChunkStore: the state round-trips exactly, a stream updates it in place, any failure in a
// stream (the update's, an I/O fault, a checksum mismatch) leaves the previous state and names
// the store and the chunk, sizes that do not fit are refused saying what they need, and the
// pipeline reads ahead and writes behind while the caller updates.
#include "offload/chunk_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_support::ScratchDir;

constexpr std::size_t kBlockBytes = 64 * kKiB;

// The initial byte i of part p of chunk c: distinct across chunks, parts and offsets.
std::byte initial_byte(std::size_t c, std::size_t p, std::size_t i) {
  return static_cast<std::byte>((c * 131 + p * 17 + i * 7 + i / 251) & 0xff);
}

void fill_initial(std::size_t c, std::size_t p, std::span<std::byte> part) {
  for (std::size_t i = 0; i < part.size(); ++i) part[i] = initial_byte(c, p, i);
}

// Every part of every chunk, as read_all gives it.
using Contents = std::vector<std::vector<std::vector<std::byte>>>;

Contents expected_initial(const std::vector<ChunkShape>& shapes) {
  Contents contents(shapes.size());
  for (std::size_t c = 0; c < shapes.size(); ++c) {
    for (std::size_t p = 0; p < shapes[c].part_bytes.size(); ++p) {
      std::vector<std::byte> part(shapes[c].part_bytes[p]);
      fill_initial(c, p, part);
      contents[c].push_back(std::move(part));
    }
  }
  return contents;
}

class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EBB_SKIP_WITHOUT_IO_URING();
    device_ = create_device({}).value();
    host_ = HostTier::create(*device_, 16 * kMiB).value();
    tier_ = make_tier(32 * kMiB);
  }

  std::unique_ptr<NvmeTier> make_tier(std::size_t capacity_bytes) {
    Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::create({.directories = {dir_.path()},
                                                               .capacity_bytes = capacity_bytes,
                                                               .block_bytes = kBlockBytes,
                                                               .queue_depth = 4,
                                                               .faults = &faults_});
    EXPECT_TRUE(tier.ok()) << tier.status().to_string();
    return tier.ok() ? std::move(tier).value() : nullptr;
  }

  std::unique_ptr<NvmeChunkStore> make_store(std::vector<ChunkShape> shapes,
                                             const NvmeChunkStore::Source& initial = fill_initial) {
    Result<std::unique_ptr<NvmeChunkStore>> store = NvmeChunkStore::create(
        *tier_, *host_, {.name = "adam", .chunks = std::move(shapes)}, initial);
    EXPECT_TRUE(store.ok()) << store.status().to_string();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  static Contents contents(NvmeChunkStore& store) {
    Contents all(store.chunks());
    Status read =
        store.read_all([&](std::size_t c, std::size_t p, std::span<const std::byte> bytes) {
          if (all[c].size() <= p) all[c].resize(p + 1);
          all[c][p].assign(bytes.begin(), bytes.end());
        });
    EXPECT_TRUE(read.ok()) << read.to_string();
    return all;
  }

  ScratchDir dir_;
  FaultInjector faults_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<HostTier> host_;
  std::unique_ptr<NvmeTier> tier_;
};

// Three chunks of fp32 master, m and v, as an optimizer holds them; the last chunk is shorter.
std::vector<ChunkShape> adam_shapes() {
  return {{{40004, 40004, 40004}}, {{40004, 40004, 40004}}, {{12004, 12004, 12004}}};
}

TEST_F(ChunkStoreTest, RoundTripsTheInitialStateAndFreesEverythingAtTheEnd) {
  std::unique_ptr<NvmeChunkStore> store = make_store(adam_shapes());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(contents(*store), expected_initial(adam_shapes()));
  const ChunkStoreStats stats = store->stats();
  EXPECT_EQ(stats.chunks, 3U);
  EXPECT_EQ(stats.bytes, 2 * 120012U + 36012U);
  EXPECT_EQ(stats.extent_bytes, 2 * 120132U + 36068U) << "parts start 64-byte aligned";
  EXPECT_EQ(stats.staging_bytes, 3 * 120132U);
  EXPECT_EQ(tier_->stats().extents, 3U);
  EXPECT_EQ(host_->owners().size(), 3U);
  store.reset();
  EXPECT_EQ(tier_->stats().extents, 0U);
  EXPECT_EQ(tier_->stats().used_bytes, 0U);
  EXPECT_TRUE(host_->owners().empty());
}

TEST_F(ChunkStoreTest, NoInitialStateIsZeros) {
  std::unique_ptr<NvmeChunkStore> store = make_store(adam_shapes(), nullptr);
  ASSERT_NE(store, nullptr);
  for (const auto& chunk : contents(*store)) {
    for (const auto& part : chunk) {
      EXPECT_TRUE(
          std::all_of(part.begin(), part.end(), [](std::byte b) { return b == std::byte{0}; }));
    }
  }
}

// x = x * 2 + chunk over fp32 parts, exactly representable at these magnitudes.
Status double_plus_chunk(std::size_t c, std::span<const std::span<std::byte>> parts) {
  for (std::span<std::byte> part : parts) {
    auto* x = reinterpret_cast<float*>(part.data());
    for (std::size_t i = 0; i < part.size() / sizeof(float); ++i) x[i] = x[i] * 2 + float(c);
  }
  return ok_status();
}

TEST_F(ChunkStoreTest, StreamUpdatesEveryChunkInPlaceAndCommits) {
  const std::vector<ChunkShape> shapes = {
      {{4000, 8000}}, {{4000, 8000}}, {{4000, 8000}}, {{4000, 8000}}, {{400, 800}}};
  auto initial = [](std::size_t c, std::size_t p, std::span<std::byte> part) {
    auto* x = reinterpret_cast<float*>(part.data());
    for (std::size_t i = 0; i < part.size() / sizeof(float); ++i)
      x[i] = float(c * 1000 + p * 100 + i % 97);
  };
  std::unique_ptr<NvmeChunkStore> store = make_store(shapes, initial);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->stream(double_plus_chunk).ok());
  ASSERT_TRUE(store->stream(double_plus_chunk).ok());
  Contents expected(shapes.size());
  for (std::size_t c = 0; c < shapes.size(); ++c) {
    for (std::size_t p = 0; p < 2; ++p) {
      std::vector<float> x(shapes[c].part_bytes[p] / sizeof(float));
      for (std::size_t i = 0; i < x.size(); ++i) {
        const float x0 = float(c * 1000 + p * 100 + i % 97);
        x[i] = (x0 * 2 + float(c)) * 2 + float(c);
      }
      const auto* b = reinterpret_cast<const std::byte*>(x.data());
      expected[c].emplace_back(b, b + x.size() * sizeof(float));
    }
  }
  EXPECT_EQ(contents(*store), expected);
  const ChunkStoreStats stats = store->stats();
  EXPECT_EQ(stats.streams, 2);
  // create wrote once, each stream read and wrote once, contents() read once.
  EXPECT_EQ(stats.written_bytes, 3 * stats.extent_bytes);
  EXPECT_EQ(stats.read_bytes, 3 * stats.extent_bytes);
  EXPECT_GT(stats.last_wall_s, 0.0);
  EXPECT_EQ(tier_->stats().extents, shapes.size()) << "the previous copy was freed";
}

TEST_F(ChunkStoreTest, UnequalChunksAndEmptyPartsRoundTripAndStream) {
  const std::vector<ChunkShape> shapes = {
      {{100, 0, 5000}}, {{1, 70000}}, {{0, 0, 3}}, {{200000}}, {{7, 9, 0}}};
  std::unique_ptr<NvmeChunkStore> store = make_store(shapes);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(contents(*store), expected_initial(shapes));
  Status s = store->stream([&](std::size_t c, std::span<const std::span<std::byte>> parts) {
    EXPECT_EQ(parts.size(), shapes[c].part_bytes.size());
    for (std::size_t p = 0; p < parts.size(); ++p) {
      EXPECT_EQ(parts[p].size(), shapes[c].part_bytes[p]) << c << "/" << p;
      for (std::byte& b : parts[p]) b = ~b;
    }
    return ok_status();
  });
  ASSERT_TRUE(s.ok()) << s.to_string();
  Contents expected = expected_initial(shapes);
  for (auto& chunk : expected) {
    for (auto& part : chunk) {
      for (std::byte& b : part) b = ~b;
    }
  }
  EXPECT_EQ(contents(*store), expected);
}

TEST_F(ChunkStoreTest, NoChunksAndAnEmptyChunkAreRefused) {
  Result<std::unique_ptr<NvmeChunkStore>> none =
      NvmeChunkStore::create(*tier_, *host_, {.name = "empty"}, nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("chunk store 'empty': no chunks"), std::string::npos);
  Result<std::unique_ptr<NvmeChunkStore>> hollow = NvmeChunkStore::create(
      *tier_, *host_, {.name = "hollow", .chunks = {{{8}}, {{0, 0}}}}, nullptr);
  ASSERT_FALSE(hollow.ok());
  EXPECT_EQ(hollow.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(hollow.status().message().find("chunk 1 has no bytes"), std::string::npos)
      << hollow.status().message();
  EXPECT_EQ(tier_->stats().extents, 0U);
  EXPECT_TRUE(host_->owners().empty());
}

TEST_F(ChunkStoreTest, AFailingUpdateLeavesThePreviousState) {
  std::unique_ptr<NvmeChunkStore> store = make_store(adam_shapes());
  ASSERT_NE(store, nullptr);
  const std::size_t used = tier_->stats().used_bytes;
  std::vector<std::size_t> updated;
  Status s = store->stream([&](std::size_t c, std::span<const std::span<std::byte>> parts) {
    updated.push_back(c);
    for (std::span<std::byte> part : parts) std::memset(part.data(), 0xee, part.size());
    if (c == 1) return internal_error("lr schedule overflowed");
    return ok_status();
  });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("chunk store 'adam': chunk 1 of 3, updating: lr schedule overflowed"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(updated, (std::vector<std::size_t>{0, 1})) << "no update after the failure";
  EXPECT_EQ(contents(*store), expected_initial(adam_shapes()));
  EXPECT_EQ(store->stats().streams, 0);
  EXPECT_EQ(tier_->stats().used_bytes, used) << "the new extents were freed";
  // And the store streams again afterwards.
  ASSERT_TRUE(
      store->stream([](std::size_t, std::span<const std::span<std::byte>>) { return ok_status(); })
          .ok());
  EXPECT_EQ(contents(*store), expected_initial(adam_shapes()));
}

struct StreamFault {
  FaultDirection direction;
  FaultKind kind;
  StatusCode code;
  const char* says;
};

std::string stream_fault_name(const ::testing::TestParamInfo<StreamFault>& info) {
  static const char* const kKinds[] = {"Eio", "Short", "Enospc", "BitFlip"};
  return std::string(info.param.direction == FaultDirection::kWrite ? "Write" : "Read") +
         kKinds[static_cast<int>(info.param.kind)];
}

class ChunkStoreFaultTest : public ChunkStoreTest,
                            public ::testing::WithParamInterface<StreamFault> {};

TEST_P(ChunkStoreFaultTest, LeavesThePreviousStateAndNamesStoreAndChunk) {
  const StreamFault f = GetParam();
  std::unique_ptr<NvmeChunkStore> store = make_store(adam_shapes());
  ASSERT_NE(store, nullptr);
  const std::size_t used = tier_->stats().used_bytes;
  // Chunks 0 and 1 take two blocks each: request 4 of the direction is chunk 2's.
  faults_.arm(f.direction, f.kind, 4);
  Status s = store->stream(double_plus_chunk);
  EXPECT_EQ(faults_.fired(), 1U);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), f.code) << s.to_string();
  const std::string doing = f.direction == FaultDirection::kRead ? "reading" : "writing";
  EXPECT_NE(s.message().find("chunk store 'adam': chunk 2 of 3, " + doing + ": "),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find(f.says), std::string::npos) << s.message();
  EXPECT_EQ(tier_->stats().used_bytes, used) << "the new extents were freed";
  EXPECT_EQ(contents(*store), expected_initial(adam_shapes()));
}

INSTANTIATE_TEST_SUITE_P(Faults, ChunkStoreFaultTest,
                         ::testing::Values(StreamFault{FaultDirection::kRead, FaultKind::kIoError,
                                                       StatusCode::kIoError, "Input/output error"},
                                           StreamFault{FaultDirection::kWrite, FaultKind::kIoError,
                                                       StatusCode::kIoError, "Input/output error"},
                                           StreamFault{FaultDirection::kWrite, FaultKind::kNoSpace,
                                                       StatusCode::kIoError, "No space left"},
                                           StreamFault{FaultDirection::kRead, FaultKind::kBitFlip,
                                                       StatusCode::kDataLoss, "checksum mismatch"},
                                           StreamFault{FaultDirection::kRead, FaultKind::kShort,
                                                       StatusCode::kDataLoss, "short read"}),
                         stream_fault_name);

TEST_F(ChunkStoreTest, ATierTooSmallForTwoCopiesIsRefusedSayingWhatItNeeds) {
  tier_ = make_tier(512 * kKiB);
  ASSERT_NE(tier_, nullptr);
  // Chunks of two, two and one 64 KiB blocks: 320 KiB a copy, 640 KiB for two.
  Result<std::unique_ptr<NvmeChunkStore>> store =
      NvmeChunkStore::create(*tier_, *host_, {.name = "adam", .chunks = adam_shapes()}, nullptr);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(store.status().message().find("chunk store 'adam': needs 655360 bytes on the NVMe "
                                          "tier"),
            std::string::npos)
      << store.status().message();
  EXPECT_NE(store.status().message().find("has 524288 free"), std::string::npos);
  EXPECT_TRUE(host_->owners().empty());
}

TEST_F(ChunkStoreTest, AStreamWithoutRoomForTheNewCopyIsRefusedBeforeAnyUpdate) {
  tier_ = make_tier(1 * kMiB);
  ASSERT_NE(tier_, nullptr);
  std::unique_ptr<NvmeChunkStore> store = make_store({{{100000}}, {{100000}}});
  ASSERT_NE(store, nullptr);
  const std::vector<std::byte> other(700 * kKiB);
  Result<ExtentId> squatter = tier_->write("squatter", other.data(), other.size());
  ASSERT_TRUE(squatter.ok()) << squatter.status().to_string();
  bool called = false;
  Status s = store->stream([&](std::size_t, std::span<const std::span<std::byte>>) {
    called = true;
    return ok_status();
  });
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.to_string();
  EXPECT_NE(s.message().find("a stream needs 262144 bytes free"), std::string::npos) << s.message();
  EXPECT_FALSE(called);
  EXPECT_EQ(contents(*store), expected_initial({{{100000}}, {{100000}}}));
}

TEST_F(ChunkStoreTest, StagingTooSmallIsRefusedSayingWhatItNeeds) {
  host_ = HostTier::create(*device_, 256 * kKiB).value();
  Result<std::unique_ptr<NvmeChunkStore>> store =
      NvmeChunkStore::create(*tier_, *host_, {.name = "adam", .chunks = adam_shapes()}, nullptr);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(store.status().message().find(
                "chunk store 'adam': staging needs 3 x 120132 bytes (the largest chunk)"),
            std::string::npos)
      << store.status().message();
  EXPECT_TRUE(host_->owners().empty()) << "the buffers it did get were returned";
  EXPECT_EQ(tier_->stats().extents, 0U);
}

// Proves the overlap without timing: update(c) does not return until the read of chunk c+1 and
// the write of chunk c-1 have started, which a sequential store would never do (it would wait
// out the timeout and fail). Also checks the memory bound: chunk c+3 is never read before chunk
// c is written, as there are three staging buffers.
TEST_F(ChunkStoreTest, ReadsAheadAndWritesBehindWhileTheCallerUpdates) {
  std::vector<ChunkShape> shapes(8, ChunkShape{{30000, 30000}});
  std::mutex mu;
  std::condition_variable seen;
  std::set<std::tuple<ChunkStage, std::size_t, bool>> events;
  std::vector<std::string> violations;
  auto observer = [&](ChunkStage stage, std::size_t chunk, bool started) {
    std::lock_guard<std::mutex> lock(mu);
    if (stage == ChunkStage::kRead && started && chunk >= 3 &&
        !events.contains({ChunkStage::kWrite, chunk - 3, false})) {
      violations.push_back("read of chunk " + std::to_string(chunk) + " before chunk " +
                           std::to_string(chunk - 3) + " was written");
    }
    events.insert({stage, chunk, started});
    seen.notify_all();
  };
  Result<std::unique_ptr<NvmeChunkStore>> created = NvmeChunkStore::create(
      *tier_, *host_, {.name = "adam", .chunks = shapes, .observer = observer}, fill_initial);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  std::unique_ptr<NvmeChunkStore> store = std::move(created).value();
  {
    std::lock_guard<std::mutex> lock(mu);
    events.clear();
  }
  std::vector<std::string> missed;
  Status s = store->stream([&](std::size_t c, std::span<const std::span<std::byte>>) {
    std::unique_lock<std::mutex> lock(mu);
    auto wait_for = [&](ChunkStage stage, std::size_t chunk, const char* what) {
      if (!seen.wait_for(lock, std::chrono::seconds(20), [&] {
            return events.contains({stage, chunk, true});
          })) {
        missed.push_back(std::string(what) + " of chunk " + std::to_string(chunk) +
                         " during update(" + std::to_string(c) + ")");
      }
    };
    if (c + 1 < shapes.size()) wait_for(ChunkStage::kRead, c + 1, "read");
    if (c >= 1) wait_for(ChunkStage::kWrite, c - 1, "write");
    return ok_status();
  });
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(missed.empty()) << missed.front();
  EXPECT_TRUE(violations.empty()) << violations.front();
  EXPECT_EQ(contents(*store), expected_initial(shapes));
}

}  // namespace
}  // namespace ebb
