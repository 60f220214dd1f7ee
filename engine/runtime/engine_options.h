// EngineOptions: how an Engine is configured. Defined below the facade so that each sub-layer
// reads the options it acts on (the pager its budget, tiers and policy; the executor its
// planner) from the one struct a training loop fills in.
//
// Thread safety: a plain value.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/device.h"
#include "kernels/status.h"
#include "offload/fault_injector.h"

namespace ebb {

// The words every thrash-limit error carries (EngineOptions::max_recompute_overhead), after the
// op's name: "OP: thrashed under the budget of N bytes: ...".
inline constexpr std::string_view kThrashedUnderBudget = ": thrashed under the budget of ";
// True for the error of a run stopped by the thrash limit.
inline bool is_thrash_error(const Status& status) {
  return status.code() == StatusCode::kOutOfMemory &&
         status.message().find(kThrashedUnderBudget) != std::string::npos;
}

// Which tensors dynamic eviction may evict, and how (engine/residency/eviction.h).
enum class EvictionPolicy : std::uint8_t { kNone, kSwap, kRecompute, kBoth };

struct EngineOptions {
  Device& device;  // not owned; must outlive the engine
  // Ceiling on device memory the engine's allocator reserves; 0 = the device's capacity.
  std::size_t budget_bytes = 0;
  bool expandable_segments = true;
  // Capacity of the pinned host tier that swapped tensors live in.
  std::size_t host_tier_bytes = kGiB;
  EvictionPolicy policy = EvictionPolicy::kBoth;
  // Iterations the profiler records (engine/runtime/profiler.h) before a plan is made; 0 = none.
  int warmup_iterations = 2;
  // Device<->host bandwidth assumed for swap-in estimates; 0 = 10 GB/s.
  double host_link_bytes_per_s = 0;
  // The thrash limit: a replay that would take the iteration's recompute time past this multiple
  // of its base compute fails the op with kOutOfMemory ("thrashed") instead of running, as DTR's
  // simulator gives up; 0 = no limit. The base is iteration_compute_ns when set (the simulator
  // sets the profile's op time), else the larger of the previous iteration's op time and the
  // op time launched so far in this one. Off by default in the library: a fixed policy
  // (recompute-all, sqrt) or a tight budget may recompute more than twice its compute and still
  // be bounded; `ebb plan` and `ebb simulate` default to 2 (--max-overhead), as DTR does.
  double max_recompute_overhead = 0;
  std::int64_t iteration_compute_ns = 0;
  // Debugging closures: the first run of every op (not a recompute replay) runs its closure
  // twice, once on outputs filled with 0xA5 and once on outputs filled with 0x5A, and compares
  // the results; a byte that differs was left unwritten by the closure (or the closure is not
  // deterministic), and run() fails with kFailedPrecondition naming the op, the output, the
  // first differing byte offset and how many bytes differ (the op's outputs are freed, nothing
  // is registered). The checked first run costs about three runs of the op (the two checked
  // runs, then the recorded one), two device->host copies of its outputs and a synchronize; it
  // is for debugging closures only. kInvalidArgument on a sim device, which does not run
  // closures.
  bool check_outputs = false;
  // Makes a plan from a profile (say, engine/planner/planner.h's make_plan, checked on the sim).
  // The engine calls it when the warm-up's profile is complete, and again for the profile of an
  // iteration that matched no cached plan; what it returns is given to set_plan. An error (an
  // infeasible budget) is counted in ExecutorStats and leaves the engine on dynamic eviction.
  // Empty: the engine plans nothing by itself; set_plan still works.
  std::function<Result<Plan>(const Profile&)> planner = nullptr;
  // The NVMe tier below the host tier (offload/nvme_tier.h): directories for its files, striped
  // over them; empty = no NVMe tier. A swap-out that does not fit the host tier spills there,
  // from the device through staging buffers, and comes back the same way.
  std::vector<std::string> nvme_directories = {};
  std::size_t nvme_tier_bytes = 4 * kGiB;  // reserved on disk up front, over all directories
  std::size_t nvme_block_bytes = kMiB;     // request size and stripe unit
  unsigned nvme_queue_depth = 32;          // requests in flight
  FaultInjector* nvme_faults = nullptr;    // tests: fails chosen NVMe requests; not owned
  // Device<->host copies each direction keeps in flight before later requests queue, earliest
  // deadline first (offload/transfer_engine.h, TransferOptions).
  std::size_t copies_in_flight = 2;
};

}  // namespace ebb
