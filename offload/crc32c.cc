#include "offload/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ebb {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78;  // CRC32C, reflected

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ kPolynomial : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

// Polynomial arithmetic mod P on reflected 32-bit values (bit 31 is x^0), to combine the CRCs of
// pieces: crc(A || B) = crc(A) * x^(8 |B|) + crc(B) mod P.
std::uint32_t multiply_mod_p(std::uint32_t a, std::uint32_t b) {
  std::uint32_t product = 0;
  for (std::uint32_t m = std::uint32_t{1} << 31; m != 0; m >>= 1) {
    if ((a & m) != 0) product ^= b;
    b = (b & 1) != 0 ? (b >> 1) ^ kPolynomial : b >> 1;
  }
  return product;
}

// x^(2^k) mod P for k = 0..63.
std::array<std::uint32_t, 64> make_powers() {
  std::array<std::uint32_t, 64> powers{};
  powers[0] = std::uint32_t{1} << 30;  // x^1
  for (std::size_t k = 1; k < powers.size(); ++k) {
    powers[k] = multiply_mod_p(powers[k - 1], powers[k - 1]);
  }
  return powers;
}

// x^(8 bytes) mod P.
std::uint32_t x_to_8n_mod_p(std::size_t bytes) {
  static const std::array<std::uint32_t, 64> kPowers = make_powers();
  std::uint32_t result = std::uint32_t{1} << 31;  // x^0
  for (std::size_t k = 3; bytes != 0; bytes >>= 1, ++k) {
    if ((bytes & 1) != 0) result = multiply_mod_p(kPowers[k], result);
  }
  return result;
}

// The CRC of A || B from crc(A), crc(B) and |B|.
std::uint32_t crc32c_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::size_t bytes_b) {
  return multiply_mod_p(x_to_8n_mod_p(bytes_b), crc_a) ^ crc_b;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42_one_lane(const unsigned char* p,
                                                                      std::size_t bytes,
                                                                      std::uint32_t crc) {
  std::uint64_t c = ~crc;
  for (; bytes >= 8; p += 8, bytes -= 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; bytes > 0; --bytes) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}

// The crc32 instruction has a latency of three cycles and a throughput of one: three lanes over
// three thirds of the buffer keep it busy, and their CRCs are combined. About three times the
// speed of one lane on a large block, which matters when every block of the NVMe tier is
// checksummed on the I/O path.
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const void* data, std::size_t bytes,
                                                             std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  constexpr std::size_t kMinLaneBytes = 4096;
  const std::size_t lane = bytes / 3 / 8 * 8;
  if (lane < kMinLaneBytes) return crc32c_sse42_one_lane(p, bytes, crc);
  std::uint64_t c0 = ~crc;
  std::uint64_t c1 = 0xFFFFFFFF;
  std::uint64_t c2 = 0xFFFFFFFF;
  for (std::size_t i = 0; i < lane; i += 8) {
    std::uint64_t w0 = 0;
    std::uint64_t w1 = 0;
    std::uint64_t w2 = 0;
    std::memcpy(&w0, p + i, 8);
    std::memcpy(&w1, p + lane + i, 8);
    std::memcpy(&w2, p + 2 * lane + i, 8);
    c0 = _mm_crc32_u64(c0, w0);
    c1 = _mm_crc32_u64(c1, w1);
    c2 = _mm_crc32_u64(c2, w2);
  }
  std::uint32_t combined =
      crc32c_combine(~static_cast<std::uint32_t>(c0), ~static_cast<std::uint32_t>(c1), lane);
  combined = crc32c_combine(combined, ~static_cast<std::uint32_t>(c2), lane);
  return crc32c_sse42_one_lane(p + 3 * lane, bytes - 3 * lane, combined);
}
#endif

}  // namespace

std::uint32_t crc32c_portable(const void* data, std::size_t bytes, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  for (std::size_t i = 0; i < bytes; ++i) c = kTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return ~c;
}

bool crc32c_hardware() {
#if defined(__x86_64__)
  static const bool kHas = __builtin_cpu_supports("sse4.2") != 0;
  return kHas;
#else
  return false;
#endif
}

std::uint32_t crc32c(const void* data, std::size_t bytes, std::uint32_t crc) {
#if defined(__x86_64__)
  if (crc32c_hardware()) return crc32c_sse42(data, bytes, crc);
#endif
  return crc32c_portable(data, bytes, crc);
}

}  // namespace ebb
