#include "allocator/replay.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "allocator/dtr_log.h"

namespace ebb {
namespace {

const std::string kReplayLogs = EBB_SOURCE_DIR "/../shared/external/dtr_logs/";
const std::string kWorkloads = EBB_SOURCE_DIR "/profiles/workloads/";

// A cpu device of twice the workload's peak (at least 1 GiB): the replay never touches the
// memory, so this costs address space only.
std::unique_ptr<Device> device_for(std::size_t peak_live_bytes) {
  DeviceOptions options;
  options.capacity_bytes =
      std::max(kGiB, (2 * peak_live_bytes + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB));
  Result<std::unique_ptr<Device>> device = create_device(options);
  EBB_CHECK(device.ok(), device.status().to_string());
  return std::move(device).value();
}

AllocEvent alloc(std::uint64_t id, std::size_t bytes, std::uint32_t stream = 0) {
  return AllocEvent{AllocEvent::Op::kAlloc, id, bytes, stream, 0, "t" + std::to_string(id)};
}
AllocEvent free_of(std::uint64_t id, std::uint32_t stream = 0) {
  return AllocEvent{AllocEvent::Op::kFree, id, 0, stream, 0, {}};
}

TEST(Replay, CountsLiveBytesAndEvents) {
  std::vector<AllocEvent> events = {alloc(0, 1000), alloc(1, 3 * kMiB), free_of(0),   alloc(2, 500),
                                    free_of(1),     alloc(3, 100, 1),   free_of(3, 0)};
  EXPECT_EQ(events_peak_live_bytes(events), 3 * kMiB + 1000);
  std::unique_ptr<Device> device = device_for(0);
  const auto start = std::chrono::steady_clock::now();
  Result<ReplayResult> r = replay(events, *device, CachingAllocatorOptions{});
  const double wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->peak_live_bytes, 3 * kMiB + 1000);
  EXPECT_EQ(r->allocs, 4u);
  EXPECT_EQ(r->frees, 3u);
  EXPECT_EQ(r->streams, 2u);
  EXPECT_GE(r->peak_reserved_bytes, r->peak_live_bytes);
  EXPECT_DOUBLE_EQ(r->reserved_over_live, static_cast<double>(r->peak_reserved_bytes) /
                                              static_cast<double>(r->peak_live_bytes));
  EXPECT_EQ(r->stats.all.allocation.current, 1);  // id 2 is still live at the end
  // The replay loop's own wall time: some (it maps device memory), within the call's.
  EXPECT_GT(r->seconds, 0.0);
  EXPECT_LE(r->seconds, wall_seconds);
  // Everything was handed back when the replay ended.
  EXPECT_EQ(device->committed_bytes(), 0u);
}

TEST(Replay, RejectsAMalformedEventSequence) {
  std::unique_ptr<Device> device = device_for(0);
  Result<ReplayResult> r = replay({alloc(0, 64), free_of(1)}, *device, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("event 1"), std::string::npos) << r.status().message();
  r = replay({alloc(0, 64), alloc(0, 64)}, *device, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("already live"), std::string::npos) << r.status().message();
  r = replay({alloc(0, 0)}, *device, {});
  ASSERT_FALSE(r.ok());
}

TEST(Replay, UnderABudgetBelowThePeakFailsNamingTheEvent) {
  std::vector<AllocEvent> events;
  for (std::uint64_t i = 0; i < 8; ++i) events.push_back(alloc(i, 8 * kMiB));
  std::unique_ptr<Device> device = device_for(0);
  CachingAllocatorOptions options;
  options.budget_bytes = 40 * kMiB;
  Result<ReplayResult> r = replay(events, *device, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfMemory);
  // 8 MiB blocks: the sixth (event 5) no longer fits in 40 MiB.
  EXPECT_NE(r.status().message().find("event 5 (alloc of id 5, 8388608 bytes"), std::string::npos)
      << r.status().message();
}

// Loads a workload as alloc events: an ebb trace or a DTR log.
Result<std::vector<AllocEvent>> load(const std::string& path) {
  if (path.ends_with(".jsonl")) return read_alloc_trace(path);
  EBB_ASSIGN_OR_RETURN(DtrLog log, read_dtr_log(path));
  return dtr_to_alloc_events(log);
}

struct Workload {
  const char* name;
  std::string path;
  std::size_t peak_live_bytes;
};

class WorkloadReplayTest : public testing::TestWithParam<std::tuple<Workload, bool>> {};

TEST_P(WorkloadReplayTest, ReservesCloseToLiveWithExpandableSegments) {
  const auto& [workload, expandable] = GetParam();
  if (!std::filesystem::exists(workload.path)) GTEST_SKIP() << workload.path << " is not present";
  Result<std::vector<AllocEvent>> events = load(workload.path);
  ASSERT_TRUE(events.ok()) << events.status().to_string();
  std::unique_ptr<Device> device = device_for(events_peak_live_bytes(*events));
  CachingAllocatorOptions options;
  options.expandable_segments = expandable;
  Result<ReplayResult> r = replay(*events, *device, options);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->peak_live_bytes, workload.peak_live_bytes);
  EXPECT_GE(r->peak_reserved_bytes, r->peak_live_bytes);
  if (expandable) {
    EXPECT_LE(r->reserved_over_live, 1.10);
  }
  EXPECT_GT(r->allocs, 0u);
  EXPECT_EQ(r->stats.num_ooms, 0);
  std::printf("  %s %s: peak live %zu, peak reserved %zu, ratio %.4f, %.4f s\n", workload.name,
              expandable ? "expandable" : "classic", r->peak_live_bytes, r->peak_reserved_bytes,
              r->reserved_over_live, r->seconds);
}

INSTANTIATE_TEST_SUITE_P(
    Replay, WorkloadReplayTest,
    testing::Combine(
        testing::Values(
            Workload{"mlp4", kWorkloads + "mlp4_train.dtr.log", 720'043'656},
            // Swap-ins allocated on a copy stream (1) and last used on the compute stream (0).
            Workload{"gpt_block", kWorkloads + "gpt_block_train.trace.jsonl", 344'064'004},
            Workload{"unet", kReplayLogs + "unet.log", 8'415'764'640},
            Workload{"resnet32", kReplayLogs + "resnet32.log", 10'061'179'152},
            Workload{"lstm", kReplayLogs + "lstm.log", 5'595'127'736}),
        testing::Bool()),
    [](const testing::TestParamInfo<std::tuple<Workload, bool>>& info) {
      return std::string(std::get<0>(info.param).name) +
             (std::get<1>(info.param) ? "_expandable" : "_classic");
    });

}  // namespace
}  // namespace ebb
