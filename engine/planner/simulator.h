// Simulator: the engine itself running one profiled iteration on a sim device (kernels/sim), to
// predict what a budget costs: peak reserved bytes (the real caching allocator's), replays,
// swapped bytes and the simulated time of the iteration. Ops run as empty closures whose cost
// is their profiled duration, and copies take the hardware model's link time, so the workload
// may be far larger than this machine. With a plan, the engine runs it (Engine::set_plan) with
// dynamic eviction off, so that a plan that does not fit fails instead of being rescued (unless
// plan_fallback asks for the rescue); with none, the dynamic eviction policy decides. Either
// way, what the iteration moved can be written down as a plan (evictions_taken).
//
// Thread safety: a pure function; each call builds its own device and engine.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "engine/engine.h"
#include "engine/residency/eviction.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

struct SimulationOptions {
  std::size_t budget_bytes = 0;  // the allocator's ceiling; REQUIRES: > 0
  // The host link of the sim device and the engine's swap estimates. Without a host link,
  // swapping is refused (a dynamic policy that swaps, or a plan with kSwap evictions).
  HardwareModel hardware;
  EvictionPolicy policy = EvictionPolicy::kNone;  // dynamic eviction; ignored with a plan
  bool expandable_segments = true;
  const Plan* plan = nullptr;  // not owned; nullptr: dynamic eviction only
  // With a plan: dynamic eviction by `policy` makes room where the plan does not (the planner
  // uses it to complete a plan; a plan is judged with this off).
  bool plan_fallback = false;
  // Not owned; receives what the iteration moved (dynamic eviction, the plan, or both) as plan
  // evictions sorted as Plan::evictions wants: each interval a tensor spent off the device,
  // from the moment it left to the op before which it came back (prefetch_at: the copy back or
  // the replay) and the op that read it next (needed_at). Made for as_engine_runs(profile).
  std::vector<Eviction>* evictions_taken = nullptr;
  // The thrash limit (EngineOptions::max_recompute_overhead) as a multiple of the profile's op
  // time: past it the iteration fails with kOutOfMemory ("thrashed"); 0 = no limit (the
  // default; the commands set 2).
  double max_recompute_overhead = 0;
};

struct SimulationResult {
  std::size_t budget_bytes = 0;           // the allocator's ceiling
  std::size_t peak_reserved_bytes = 0;    // the allocator's peak reserved over the iteration
  std::size_t peak_live_bytes = 0;        // the profile's own peak (no evictions)
  std::int64_t base_compute_ns = 0;       // the profile's op time
  EngineStats stats;                      // evictions, replays, swapped bytes
  std::chrono::nanoseconds simulated{0};  // the sim device's clock at the end of the iteration
};

// Runs one iteration of as_engine_runs(profile); a plan must be made for that profile (make_plan
// does so). kOutOfMemory when the iteration does not fit
// (naming the op and the bytes); kInvalidArgument for a budget of 0, swapping without a host
// link, or a plan that does not validate against the profile.
Result<SimulationResult> simulate_profile(const Profile& profile, const SimulationOptions& options);

// The profile as an engine runs it: a tensor of 0 bytes takes 1, and an op without outputs (the
// engine requires one) writes a 1-byte placeholder freed right after it. The executor matches the
// ops it runs against the plan's profile by their names and sizes, so plans for the sim are made
// for this profile (make_plan and simulate_profile apply it; a profile the engine recorded is
// returned unchanged).
Profile as_engine_runs(const Profile& profile);

// The HardwareModel of the link `ebb simulate --link-gbps G` models: G GB/s each way, 5 us per
// copy, duplex; G == 0: no host link.
HardwareModel link_hardware_model(double gbps);

}  // namespace ebb
