// Sharded checkpoints over N ranks, simulated by N threads of this process: the round trip, a
// write that fails on one rank or is killed before publication leaving the previous step
// resumable, and every refused resume (a corrupt or missing shard file, a changed shard
// manifest, another number of ranks, another model) refused by every rank with the rank and the
// file named.
#include "engine/schema/sharded_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <type_traits>

#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

namespace fs = std::filesystem;
using test_support::random_bytes;
using test_support::ScratchDir;
using ::testing::HasSubstr;

constexpr const char* kFingerprint = "gpt2 d=64 L=2 h=4 vocab=256 ctx=32";

// N ranks in one process: all_gather is a barrier of N threads. A test double of a
// Communicator's host_all_gather. Thread-safe.
class ThreadRanks {
 public:
  explicit ThreadRanks(int size) : size_(size) {}

  int size() const { return size_; }
  RankGroup group(int rank) {
    return {.rank = rank, .size = size_, .all_gather = [this, rank](std::span<const std::byte> s) {
              return all_gather(rank, s);
            }};
  }
  // Gather number `index` (0: the first) fails on every rank, as when a peer dies.
  void fail_gather(std::int64_t index) { fail_index_ = index; }

 private:
  Result<std::vector<std::byte>> all_gather(int rank, std::span<const std::byte> send) {
    std::unique_lock lock(mu_);
    if (arrived_ == 0) gathering_.assign(send.size() * static_cast<std::size_t>(size_), {});
    std::copy(send.begin(), send.end(),
              gathering_.begin() + static_cast<std::ptrdiff_t>(rank * send.size()));
    const std::int64_t round = round_;
    if (++arrived_ == size_) {
      gathered_ = std::move(gathering_);
      gathering_.clear();
      arrived_ = 0;
      ++round_;
      done_.notify_all();
    } else {
      // The round's result stays until every rank has taken it: the next round needs them all.
      done_.wait(lock, [&] { return round_ != round; });
    }
    if (round == fail_index_) {
      return unavailable("all_gather " + std::to_string(round) + ": a peer died (injected)");
    }
    return gathered_;
  }

  const int size_;
  std::mutex mu_;
  std::condition_variable done_;
  int arrived_ = 0;
  std::int64_t round_ = 0;
  std::int64_t fail_index_ = -1;
  std::vector<std::byte> gathering_;
  std::vector<std::byte> gathered_;
};

// fn(RankGroup) on one thread per rank; the results in rank order.
template <typename Fn>
auto on_every_rank(ThreadRanks& ranks, Fn fn) {
  using R = decltype(fn(ranks.group(0)));
  std::vector<std::optional<R>> out(static_cast<std::size_t>(ranks.size()));
  std::vector<std::thread> threads;
  threads.reserve(out.size());
  for (int r = 0; r < ranks.size(); ++r) {
    threads.emplace_back([&, r] { out[static_cast<std::size_t>(r)].emplace(fn(ranks.group(r))); });
  }
  for (std::thread& t : threads) t.join();
  std::vector<R> results;
  results.reserve(out.size());
  for (std::optional<R>& o : out) results.push_back(std::move(*o));
  return results;
}

// A rank's shard, kept alive for the spans that the writer takes.
struct Shard {
  std::vector<std::string> names;
  std::vector<std::vector<std::uint8_t>> bytes;

  std::vector<CheckpointPayload> views() const {
    std::vector<CheckpointPayload> out;
    for (std::size_t i = 0; i < names.size(); ++i) {
      out.push_back({names[i], std::as_bytes(std::span(bytes[i]))});
    }
    return out;
  }
};

// Distinct bytes (and sizes) per rank and step: a rank that loads another's shard, or another
// step, sees other bytes.
Shard shard_of(int rank, std::int64_t step) {
  const auto seed = static_cast<std::uint64_t>(step * 1000 + rank * 10);
  const auto moment_bytes = std::size_t{4096} + 8 * static_cast<std::size_t>(rank);
  return {.names = {"optimizer.decay.s0.adamw_m", "optimizer.decay.s0.adamw_v", "rng"},
          .bytes = {random_bytes(moment_bytes, seed + 1), random_bytes(moment_bytes, seed + 2),
                    random_bytes(16, seed + 3)}};
}

CheckpointMeta meta_of_step(std::int64_t step) {
  return {.step = step,
          .model_fingerprint = kFingerprint,
          .precision = "bf16-mixed",
          .optimizer = "adamw",
          .state = {{"data_position", 4096 * step}}};
}

Status write_shard(const std::string& dir, std::int64_t step, const RankGroup& group,
                   const CheckpointOptions& options = {}) {
  const Shard shard = shard_of(group.rank, step);
  return write_sharded_checkpoint(dir, meta_of_step(step), shard.views(), group, options);
}

std::vector<Status> write_on_ranks(const std::string& dir, std::int64_t step, int size) {
  ThreadRanks ranks(size);
  return on_every_rank(ranks, [&](const RankGroup& g) { return write_shard(dir, step, g); });
}

std::vector<Result<Checkpoint>> read_on_ranks(const std::string& dir, int size,
                                              const std::string& fingerprint = kFingerprint) {
  ThreadRanks ranks(size);
  return on_every_rank(ranks, [&](const RankGroup& g) {
    return read_latest_sharded_checkpoint(dir, fingerprint, g);
  });
}

void expect_all_ok(const std::vector<Status>& statuses) {
  for (std::size_t r = 0; r < statuses.size(); ++r) {
    EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r].to_string();
  }
}

// Every rank read its own shard of `step`, byte for byte.
void expect_shards_of_step(const std::string& dir, const std::vector<Result<Checkpoint>>& read,
                           std::int64_t step) {
  char step_dir[32];
  std::snprintf(step_dir, sizeof step_dir, "step-%08lld", static_cast<long long>(step));
  for (int r = 0; r < static_cast<int>(read.size()); ++r) {
    const Result<Checkpoint>& c = read[static_cast<std::size_t>(r)];
    ASSERT_TRUE(c.ok()) << "rank " << r << ": " << c.status().to_string();
    EXPECT_EQ(c->path(), dir + "/rank-" + std::to_string(r) + "/" + step_dir);
    EXPECT_EQ(c->meta().step, step);
    EXPECT_EQ(c->meta().model_fingerprint, kFingerprint);
    EXPECT_EQ(c->meta().state, meta_of_step(step).state);
    const Shard expected = shard_of(r, step);
    ASSERT_EQ(c->payloads().size(), expected.names.size());
    for (std::size_t i = 0; i < expected.names.size(); ++i) {
      std::vector<std::uint8_t> back(expected.bytes[i].size(), 0xEE);
      const Status s = c->read_payload(expected.names[i], std::as_writable_bytes(std::span(back)));
      ASSERT_TRUE(s.ok()) << s.to_string();
      EXPECT_TRUE(back == expected.bytes[i]) << "rank " << r << " " << expected.names[i];
    }
  }
}

// Every rank failed with `code` and a message holding each of `pieces`.
template <typename T>
void expect_refused_by_every_rank(const std::vector<T>& results, StatusCode code,
                                  const std::vector<std::string>& pieces) {
  for (std::size_t r = 0; r < results.size(); ++r) {
    const Status s = [&] {
      if constexpr (std::is_same_v<T, Status>) {
        return results[r];
      } else {
        return results[r].status();
      }
    }();
    ASSERT_FALSE(s.ok()) << "rank " << r << " succeeded";
    EXPECT_EQ(s.code(), code) << "rank " << r << ": " << s.to_string();
    for (const std::string& piece : pieces) {
      EXPECT_THAT(s.message(), HasSubstr(piece)) << "rank " << r;
    }
  }
}

std::vector<std::int64_t> shard_steps(const std::string& dir, int rank) {
  Result<std::vector<std::int64_t>> steps = list_checkpoints(dir + "/rank-" + std::to_string(rank));
  EXPECT_TRUE(steps.ok()) << steps.status().to_string();
  return steps.ok() ? *steps : std::vector<std::int64_t>{};
}

// The file of `payload` in rank `rank`'s shard of `step`.
std::string payload_file(const std::string& dir, int rank, std::int64_t step,
                         const std::string& payload) {
  Result<Checkpoint> c =
      read_checkpoint(dir + "/rank-" + std::to_string(rank), step,
                      std::string(kFingerprint) + " ranks=3 rank=" + std::to_string(rank));
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  for (const CheckpointPayloadEntry& e : c->payloads()) {
    if (e.name == payload) return c->path() + "/" + e.file;
  }
  ADD_FAILURE() << "no payload " << payload;
  return {};
}

class ShardedCheckpointTest : public ::testing::Test {
 protected:
  ScratchDir scratch_;
  const std::string dir_ = scratch_.path() + "/ckpt";
};

TEST_F(ShardedCheckpointTest, OneRankRoundTrip) {
  for (std::int64_t step : {1, 2}) {
    const Status s = write_shard(dir_, step, single_rank());
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  expect_shards_of_step(dir_, {read_latest_sharded_checkpoint(dir_, kFingerprint, single_rank())},
                        2);
  EXPECT_EQ(*list_sharded_checkpoints(dir_), (std::vector<std::int64_t>{1, 2}));
}

TEST_F(ShardedCheckpointTest, ThreeRanksRoundTripWithTheLayoutAndTwoStepsKept) {
  for (std::int64_t step : {1, 2, 3}) expect_all_ok(write_on_ranks(dir_, step, 3));
  expect_shards_of_step(dir_, read_on_ranks(dir_, 3), 3);

  for (int r = 0; r < 3; ++r) EXPECT_EQ(shard_steps(dir_, r), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(*list_sharded_checkpoints(dir_), (std::vector<std::int64_t>{2, 3}));
  std::ifstream in(dir_ + "/sharded-manifest.json");
  const nlohmann::json top = nlohmann::json::parse(in);
  EXPECT_EQ(top["step"], 3);
  EXPECT_EQ(top["ranks"], 3);
  EXPECT_EQ(top["model_fingerprint"], kFingerprint);
  ASSERT_EQ(top["shards"].size(), 3U);
  EXPECT_EQ(top["shards"][1]["dir"], "rank-1/step-00000003");
  EXPECT_EQ(top["shards"][1]["manifest"], "rank-1/step-00000003/manifest.json");
}

TEST_F(ShardedCheckpointTest, ARankThatFailsLeavesThePreviousStepPublishedOnEveryRank) {
  expect_all_ok(write_on_ranks(dir_, 1, 3));
  ThreadRanks ranks(3);
  const std::vector<Status> written = on_every_rank(ranks, [&](const RankGroup& g) {
    Shard shard = shard_of(g.rank, 2);
    if (g.rank == 1) shard.names[1] = shard.names[0];  // refused by rank 1's writer
    return write_sharded_checkpoint(dir_, meta_of_step(2), shard.views(), g);
  });
  expect_refused_by_every_rank(written, StatusCode::kInvalidArgument,
                               {"step 2", "not published: rank 1: ", "optimizer.decay.s0.adamw_m"});
  expect_shards_of_step(dir_, read_on_ranks(dir_, 3), 1);

  // Ranks 0 and 2 hold an unpublished step 2: the retry sets it aside and writes it again.
  EXPECT_EQ(shard_steps(dir_, 0), (std::vector<std::int64_t>{1, 2}));
  expect_all_ok(write_on_ranks(dir_, 2, 3));
  expect_shards_of_step(dir_, read_on_ranks(dir_, 3), 2);
}

TEST_F(ShardedCheckpointTest, AFailedVoteBeforeTheFirstPublicationLeavesNoCheckpoint) {
  ThreadRanks ranks(3);
  ranks.fail_gather(0);
  const std::vector<Status> written =
      on_every_rank(ranks, [&](const RankGroup& g) { return write_shard(dir_, 1, g); });
  expect_refused_by_every_rank(written, StatusCode::kUnavailable, {"not published", "peer died"});
  EXPECT_FALSE(fs::exists(dir_ + "/sharded-manifest.json"));
  expect_refused_by_every_rank(read_on_ranks(dir_, 3), StatusCode::kNotFound,
                               {"ranks 0-2: no complete sharded checkpoint", "rank-0, rank-1"});
}

std::atomic<int> g_shards_renamed{0};

// The last of three ranks to rename its shard into place kills the process: every shard is
// complete, sharded-manifest.json not yet written.
void kill_after_the_third_rename(CheckpointWritePoint point) {
  if (point == CheckpointWritePoint::kAfterRename && ++g_shards_renamed == 3) raise(SIGKILL);
}

TEST_F(ShardedCheckpointTest, AProcessKilledBeforePublicationLeavesThePreviousStep) {
  expect_all_ok(write_on_ranks(dir_, 1, 3));
  // No thread of this process is running: the child may start its own.
  const pid_t pid = fork();
  if (pid == 0) {
    ThreadRanks ranks(3);
    on_every_rank(ranks, [&](const RankGroup& g) {
      return write_shard(dir_, 2, g, {.fault_hook_for_testing = kill_after_the_third_rename});
    });
    _exit(0);  // reached only when the hook did not kill
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "wait status " << status;

  for (int r = 0; r < 3; ++r) EXPECT_EQ(shard_steps(dir_, r), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(*list_sharded_checkpoints(dir_), (std::vector<std::int64_t>{1}));
  expect_shards_of_step(dir_, read_on_ranks(dir_, 3), 1);

  // The next write sets the unpublished step 2 aside; pruning keeps the published step 1.
  expect_all_ok(write_on_ranks(dir_, 3, 3));
  for (int r = 0; r < 3; ++r) EXPECT_EQ(shard_steps(dir_, r), (std::vector<std::int64_t>{1, 3}));
  expect_shards_of_step(dir_, read_on_ranks(dir_, 3), 3);
}

TEST_F(ShardedCheckpointTest, ACorruptShardByteIsRefusedByEveryRank) {
  expect_all_ok(write_on_ranks(dir_, 4, 3));
  const std::string file = payload_file(dir_, 1, 4, "optimizer.decay.s0.adamw_m");
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    const char byte = static_cast<char>(f.get() ^ 0x01);
    f.seekp(100);
    f.put(byte);
  }
  expect_refused_by_every_rank(read_on_ranks(dir_, 3), StatusCode::kDataLoss,
                               {"no rank resumes from " + dir_,
                                "rank 1: checkpoint shard file " + file, "CRC32C", "corrupt"});
}

TEST_F(ShardedCheckpointTest, AMissingShardFileIsRefusedByEveryRank) {
  expect_all_ok(write_on_ranks(dir_, 4, 3));
  const std::string file = payload_file(dir_, 2, 4, "rng");
  ASSERT_TRUE(fs::remove(file));
  expect_refused_by_every_rank(read_on_ranks(dir_, 3), StatusCode::kNotFound,
                               {"rank 2: ", file, "missing"});
}

TEST_F(ShardedCheckpointTest, AShardManifestThatIsNotThePublishedOneIsRefused) {
  expect_all_ok(write_on_ranks(dir_, 4, 3));
  const std::string manifest = dir_ + "/rank-0/step-00000004/manifest.json";
  std::ofstream(manifest, std::ios::app) << "\n";  // still valid: only its CRC tells
  expect_refused_by_every_rank(read_on_ranks(dir_, 3), StatusCode::kDataLoss,
                               {"rank 0: checkpoint shard manifest " + manifest, "published"});
}

TEST_F(ShardedCheckpointTest, AnotherNumberOfRanksIsRefusedNamingBoth) {
  expect_all_ok(write_on_ranks(dir_, 4, 3));
  expect_refused_by_every_rank(read_on_ranks(dir_, 2), StatusCode::kInvalidArgument,
                               {"ranks 0, 1: ", "checkpoint written by 3 ranks, this run has 2"});
  expect_refused_by_every_rank(read_on_ranks(dir_, 4), StatusCode::kInvalidArgument,
                               {"checkpoint written by 3 ranks, this run has 4"});
}

TEST_F(ShardedCheckpointTest, AnotherModelIsRefused) {
  expect_all_ok(write_on_ranks(dir_, 4, 3));
  expect_refused_by_every_rank(read_on_ranks(dir_, 3, "gpt2 d=128"), StatusCode::kInvalidArgument,
                               {"model_fingerprint", kFingerprint, "gpt2 d=128"});
}

}  // namespace
}  // namespace ebb
