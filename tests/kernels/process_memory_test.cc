#include "kernels/cpu/process_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstring>

#include "kernels/device.h"

namespace ebb {
namespace {

// The resident set counts pages once they are touched and stops counting them once unmapped:
// what lets a soak (tools/soak.sh) see a leak in host memory. The bounds leave 10% for what the
// rest of the process maps or frees meanwhile.
TEST(ProcessMemoryTest, ResidentBytesFollowTouchedPages) {
  constexpr std::size_t kBytes = 64 * kMiB;
  constexpr std::size_t kSeen = kBytes / 10 * 9;
  const Result<std::size_t> before = process_resident_bytes();
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_GT(*before, 0U);

  void* region = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  std::memset(region, 1, kBytes);
  const Result<std::size_t> touched = process_resident_bytes();
  ASSERT_TRUE(touched.ok()) << touched.status().to_string();
  EXPECT_GE(*touched, *before + kSeen);

  ASSERT_EQ(munmap(region, kBytes), 0);
  const Result<std::size_t> released = process_resident_bytes();
  ASSERT_TRUE(released.ok()) << released.status().to_string();
  EXPECT_LE(*released + kSeen, *touched);
}

}  // namespace
}  // namespace ebb
