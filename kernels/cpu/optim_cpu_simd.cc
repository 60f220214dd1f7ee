// The SimdLevel of the cpu optimizer kernels (kernels/optim.h): what the CPU supports, and the
// level in use, one process-wide atomic that the kernels read once per call.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kernels/optim.h"

namespace ebb::optim::cpu {
namespace {

constexpr SimdLevel kLevels[] = {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512};

SimdLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the ymm and zmm registers (XGETBV).
  if (__builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
      __builtin_cpu_supports("avx512vl") != 0) {
    return SimdLevel::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") != 0) return SimdLevel::kAvx2;
#endif
  return SimdLevel::kScalar;
}

SimdLevel at_most_detected(SimdLevel level) { return std::min(level, detected_simd_level()); }

// The level EBB_CPU_SIMD asks for, or the detected one when it is unset or empty.
SimdLevel level_from_environment() {
  const char* value = std::getenv("EBB_CPU_SIMD");
  if (value == nullptr || *value == '\0') return detected_simd_level();
  for (const SimdLevel level : kLevels) {
    if (simd_level_name(level) == value) return at_most_detected(level);
  }
  throw std::invalid_argument(std::string("optim: EBB_CPU_SIMD=") + value +
                              " is none of scalar, avx2, avx512");
}

std::atomic<SimdLevel>& level_in_use() {
  static std::atomic<SimdLevel> level{level_from_environment()};
  return level;
}

}  // namespace

SimdLevel detected_simd_level() {
  static const SimdLevel kDetected = detect();
  return kDetected;
}

SimdLevel simd_level() { return level_in_use().load(std::memory_order_relaxed); }

void set_simd_level(SimdLevel level) {
  level_in_use().store(at_most_detected(level), std::memory_order_relaxed);
}

std::string_view simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar:
      return "scalar";
    case SimdLevel::kAvx2:
      return "avx2";
    case SimdLevel::kAvx512:
      return "avx512";
  }
  throw std::invalid_argument("optim: SimdLevel " + std::to_string(static_cast<int>(level)) +
                              " is none of scalar, avx2, avx512");
}

}  // namespace ebb::optim::cpu
