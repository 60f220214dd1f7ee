// What the .cc files of the cpu nn backend (kernels/cpu/nn_cpu*.cc) share: the task split that
// keeps them deterministic (tasks cut by shape alone, never by thread count; see nn_cpu.cc), and
// the block sizes of that split.
//
// Internal to kernels/cpu/. Thread safety: stateless; safe from any thread.
#pragma once

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdint>

namespace ebb::nn::cpu {

using Index = std::int64_t;

// Runs fn(task) for task in [0, count): inline when there is one task, since TBB's dispatch costs
// more than a small kernel, and always inline in a ThreadSanitizer build (EBB_SERIAL_KERNELS, see
// the root CMakeLists.txt), where TBB's uninstrumented scheduling reads as races.
template <typename Fn>
void for_each_task(Index count, const Fn& fn) {
#if EBB_SERIAL_KERNELS
  for (Index task = 0; task < count; ++task) fn(task);
#else
  if (count == 1) {
    fn(Index{0});
  } else if (count > 1) {
    tbb::parallel_for(Index{0}, count, fn);
  }
#endif
}

// Runs fn(begin, end) over fixed chunks of [0, n) in parallel.
template <typename Fn>
void for_each_chunk(Index n, Index chunk, const Fn& fn) {
  for_each_task((n + chunk - 1) / chunk,
                [&](Index task) { fn(task * chunk, std::min(n, (task + 1) * chunk)); });
}

constexpr Index kElementwiseChunk = 16384;  // 64 KiB of floats per task
constexpr int kChannelBlock = 16;           // columns per task where a sum runs over rows

}  // namespace ebb::nn::cpu
