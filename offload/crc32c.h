// CRC32C (Castagnoli), the checksum the NVMe tier keeps per block: computed with the SSE4.2
// crc32 instruction where the CPU has it, else by a portable table-driven loop. Both give the
// same value (the standard one: crc32c("123456789") == 0xE3069283).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebb {

// The CRC32C of `bytes` bytes at `data`, continuing from `crc` (0 to start).
std::uint32_t crc32c(const void* data, std::size_t bytes, std::uint32_t crc = 0);
// The portable version, for tests and for CPUs without SSE4.2.
std::uint32_t crc32c_portable(const void* data, std::size_t bytes, std::uint32_t crc = 0);
// True when crc32c() uses the hardware instruction on this CPU.
bool crc32c_hardware();

}  // namespace ebb
