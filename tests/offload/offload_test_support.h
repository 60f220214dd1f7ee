// Test support for the offload suites: a scratch directory in the build tree removed with
// everything in it at the end, the io_uring and O_DIRECT probes that let a suite skip where the
// machine cannot run it, and random bytes.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "offload/nvme_tier.h"

namespace ebb::test_support {

// Where the tests put their files: the build tree, on the checkout's file system, rather than
// /tmp, which is a tmpfs on some machines (no O_DIRECT there before Linux 6.6).
inline std::filesystem::path scratch_base() {
  const std::filesystem::path base = std::filesystem::path(EBB_BINARY_DIR) / "test-scratch";
  std::error_code ignored;
  std::filesystem::create_directories(base, ignored);
  return base;
}

// Empty when a file in `dir` can be opened with O_DIRECT; otherwise why not.
inline std::string direct_io_unsupported(const std::string& dir) {
  const std::string path = dir + "/.ebb-direct-io-probe";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return "O_DIRECT is not supported in " + dir + " (" + std::strerror(errno) + ")";
  }
  close(fd);
  unlink(path.c_str());
  return {};
}

class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (scratch_base() / "ebb-offload-XXXXXX").string();
    const char* made = mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << pattern;
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  // Entries directly inside, recursively counted (files and directories).
  std::size_t entries() const {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(path_)) {
      (void)e;
      ++n;
    }
    return n;
  }

 private:
  std::string path_;
};

inline std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> bytes(n);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  return bytes;
}

}  // namespace ebb::test_support

// Skips the test, saying why, when io_uring is disabled here (EPERM, ENOSYS) or the scratch
// directory's file system refuses O_DIRECT; any other probe failure fails the test.
#define EBB_SKIP_WITHOUT_IO_URING()                                                           \
  do {                                                                                        \
    ::ebb::Status probe_ = ::ebb::probe_io_uring();                                           \
    if (probe_.code() == ::ebb::StatusCode::kUnavailable) GTEST_SKIP() << probe_.to_string(); \
    ASSERT_TRUE(probe_.ok()) << probe_.to_string();                                           \
    const std::string direct_ =                                                               \
        ::ebb::test_support::direct_io_unsupported(::ebb::test_support::scratch_base());      \
    if (!direct_.empty()) GTEST_SKIP() << direct_;                                            \
  } while (false)
