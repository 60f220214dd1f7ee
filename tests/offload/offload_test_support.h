// Test support for the offload suites: a scratch directory under /tmp (ext4 here, so O_DIRECT
// works) removed with everything in it at the end, the io_uring probe that lets a suite skip
// where io_uring is disabled, and random bytes.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "offload/nvme_tier.h"

namespace ebb::test_support {

class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ebb-offload-XXXXXX").string();
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

// Skips the test, saying why, when io_uring is disabled here (EPERM, ENOSYS); any other probe
// failure fails the test.
#define EBB_SKIP_WITHOUT_IO_URING()                                                           \
  do {                                                                                        \
    ::ebb::Status probe_ = ::ebb::probe_io_uring();                                           \
    if (probe_.code() == ::ebb::StatusCode::kUnavailable) GTEST_SKIP() << probe_.to_string(); \
    ASSERT_TRUE(probe_.ok()) << probe_.to_string();                                           \
  } while (false)
