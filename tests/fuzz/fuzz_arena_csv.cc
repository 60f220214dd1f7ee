// libFuzzer's entry point for fuzz_arena_csv (tests/fuzz/fuzz_targets.h).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ebb::fuzz::fuzz_arena_csv(data, size);
  return 0;
}
