#include "offload/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

TEST(Crc32c, StandardCheckValue) {
  const char* text = "123456789";
  EXPECT_EQ(crc32c(text, std::strlen(text)), 0xE3069283U);
  EXPECT_EQ(crc32c_portable(text, std::strlen(text)), 0xE3069283U);
}

TEST(Crc32c, HardwareAgreesWithPortableAtEveryLengthAndAlignment) {
  const std::vector<std::uint8_t> bytes = test_support::random_bytes(kMiB + 64, 7);
  for (std::size_t offset = 0; offset < 9; ++offset) {
    // Short ones take one lane; from 3 x 4 KiB on, three lanes whose CRCs are combined.
    for (std::size_t n : {0UL, 1UL, 7UL, 8UL, 9UL, 63UL, 1000UL, 4096UL, 12287UL, 12288UL, 12289UL,
                          12296UL, 99999UL, kMiB - 1, kMiB, kMiB + 13}) {
      EXPECT_EQ(crc32c(bytes.data() + offset, n), crc32c_portable(bytes.data() + offset, n))
          << "offset " << offset << " length " << n;
    }
  }
}

TEST(Crc32c, ContinuesAcrossPieces) {
  const std::vector<std::uint8_t> bytes = test_support::random_bytes(1000, 3);
  const std::uint32_t whole = crc32c(bytes.data(), bytes.size());
  EXPECT_EQ(crc32c(bytes.data() + 333, 667, crc32c(bytes.data(), 333)), whole);
}

TEST(Crc32c, DetectsOneFlippedBit) {
  std::vector<std::uint8_t> bytes = test_support::random_bytes(kMiB, 5);
  const std::uint32_t before = crc32c(bytes.data(), bytes.size());
  bytes[12345] ^= 0x08;
  EXPECT_NE(crc32c(bytes.data(), bytes.size()), before);
}

}  // namespace
}  // namespace ebb
