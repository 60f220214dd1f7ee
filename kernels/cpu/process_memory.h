// The host memory of this process as the operating system counts it: the resident set.
//
// `ebb train --json` reports it with every step, so that a long run (tools/soak.sh) can tell a
// leak in host memory (the pinned host tier, staging buffers, bookkeeping) from a flat line.
//
// Thread safety: thread-safe (reads /proc, holds no state).
#pragma once

#include <cstddef>

#include "kernels/status.h"

namespace ebb {

// The bytes of this process's pages now resident in RAM: /proc/self/statm's resident page count
// times the page size. kIoError naming the file when it cannot be read (not Linux, no /proc).
Result<std::size_t> process_resident_bytes();

}  // namespace ebb
