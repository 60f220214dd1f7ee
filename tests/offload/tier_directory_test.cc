// The private directory's life: made private, removed at close, and a killed run's leftover
// found and removed by the next start, while a live run's directory is left alone.
#include "offload/tier_directory.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "offload/nvme_tier.h"
#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_support::ScratchDir;

std::vector<std::string> tier_dirs(const std::string& base) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator(base)) {
    if (e.path().filename().string().starts_with("ebb-tier-")) found.push_back(e.path().string());
  }
  return found;
}

// Forks a child that creates an NVMe tier in `base`, tells the parent through a pipe, and then
// either kills itself with SIGKILL (nothing of it runs any cleanup) or waits to be killed.
pid_t start_child(const std::string& base, bool die_at_once) {
  int ready[2];
  EXPECT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    auto tier = NvmeTier::create({.directories = {base},
                                  .capacity_bytes = kMiB,
                                  .block_bytes = 64 * kKiB,
                                  .queue_depth = 2});
    const char byte = tier.ok() ? 1 : 0;
    (void)!write(ready[1], &byte, 1);
    if (die_at_once) raise(SIGKILL);
    for (;;) pause();
  }
  close(ready[1]);
  char byte = 0;
  EXPECT_EQ(read(ready[0], &byte, 1), 1);
  EXPECT_EQ(byte, 1) << "the child could not create its tier";
  close(ready[0]);
  return pid;
}

TEST(TierDirectoryTest, IsPrivateAndRemovedAtClose) {
  ScratchDir base;
  {
    auto dir = TierDirectory::create(base.path());
    ASSERT_TRUE(dir.ok()) << dir.status().to_string();
    struct stat st {};
    ASSERT_EQ(stat((*dir)->path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700U);
    auto fd = (*dir)->create_file("f", 8192);
    ASSERT_TRUE(fd.ok()) << fd.status().to_string();
    ASSERT_EQ(stat((*dir)->file_path("f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600U);
    EXPECT_EQ(st.st_size, 8192);
    EXPECT_FALSE((*dir)->create_file("f", 8192).ok()) << "O_EXCL: never reuses a file";
  }
  EXPECT_EQ(base.entries(), 0U);
}

TEST(TierDirectoryTest, LeftoverOfAKilledRunIsRemovedAtTheNextStart) {
  EBB_SKIP_WITHOUT_IO_URING();
  ScratchDir base;
  const pid_t child = start_child(base.path(), /*die_at_once=*/true);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  const std::vector<std::string> left = tier_dirs(base.path());
  ASSERT_EQ(left.size(), 1U) << "the killed child left its directory";

  {
    testing::internal::CaptureStderr();
    auto tier = NvmeTier::create({.directories = {base.path()},
                                  .capacity_bytes = kMiB,
                                  .block_bytes = 64 * kKiB,
                                  .queue_depth = 2});
    const std::string said = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(tier.ok()) << tier.status().to_string();
    EXPECT_FALSE(std::filesystem::exists(left[0])) << "leftover not removed";
    EXPECT_NE(said.find(left[0]), std::string::npos) << said;
    EXPECT_NE(said.find(std::to_string(child)), std::string::npos) << said;
    EXPECT_NE((*tier)->directories()[0], left[0]) << "a directory is never reused";
  }
  EXPECT_EQ(base.entries(), 0U);
}

TEST(TierDirectoryTest, DirectoryOfALiveRunIsLeftAlone) {
  EBB_SKIP_WITHOUT_IO_URING();
  ScratchDir base;
  const pid_t child = start_child(base.path(), /*die_at_once=*/false);
  const std::vector<std::string> theirs = tier_dirs(base.path());
  ASSERT_EQ(theirs.size(), 1U);
  Result<TierLeftovers> found = TierDirectory::clean_leftovers(base.path());
  ASSERT_TRUE(found.ok()) << found.status().to_string();
  EXPECT_TRUE(found->removed.empty());
  EXPECT_EQ(found->in_use, theirs);
  {
    auto tier = NvmeTier::create({.directories = {base.path()},
                                  .capacity_bytes = kMiB,
                                  .block_bytes = 64 * kKiB,
                                  .queue_depth = 2});
    ASSERT_TRUE(tier.ok()) << tier.status().to_string();
    EXPECT_TRUE(std::filesystem::exists(theirs[0]));
    EXPECT_NE((*tier)->directories()[0], theirs[0]);
  }
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  // Now dead: its directory goes at the next look.
  found = TierDirectory::clean_leftovers(base.path());
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->removed, theirs);
  EXPECT_EQ(base.entries(), 0U);
}

}  // namespace
}  // namespace ebb
