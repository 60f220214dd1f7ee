// `ebb bench chip` (bench_chip.cc): the cpu device of this machine as a hardware profile with a
// chip object, its fp32 throughput and memory bandwidth measured.
#pragma once

#include <cstddef>
#include <string>

#include "engine/schema/chip_spec.h"

namespace ebb::cli {

// The hardware profile JSON (profiles/README.md) of this machine's cpu device as a chip with
// `memory_bytes` of memory. Takes a few seconds: it measures.
std::string measured_cpu_chip_json(std::size_t memory_bytes);

}  // namespace ebb::cli
