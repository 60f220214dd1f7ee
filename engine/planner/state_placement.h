// plan_state_placement: where each slice of model state's master weights and optimizer state
// lives (--optimizer-state auto), chosen to fit a device budget at the least predicted step time.
//
// The model. To the planner, a slice's state (fp32 master weights and moments) is read and
// written once per step, by the optimizer, and by nothing else; so it is the cheapest thing to
// move. Per slice, four choices, each with a predicted time for the optimizer's part of a step:
//  - kResident: on the device throughout; the device step updates its bytes at the device's
//    state rate (bytes of state updated per second).
//  - kSwapped: on the device only for its update: swapped to the host tier during forward and
//    backward and back for the device step (2 x its bytes over the host link, plus the device
//    step). Only one swapped slice is in at a time, so the step's peak counts the largest.
//  - kHost: updated by the CPU from pinned host memory: its gradients go to the host and its
//    working parameters come back over the link, and the CPU touches its state at the CPU's
//    state bandwidth.
//  - kNvme: as kHost, with the state streamed from and back to NVMe: plus its bytes over the
//    NVMe read and write bandwidths (the streaming bound; overlap would only lower it).
// Memory: during forward and backward, other_peak_bytes plus every resident slice; at the step,
// step_other_bytes plus every resident slice plus the largest swapped one. Both must be within
// budget_bytes.
//
// The search is exact on its own model: for each choice of the largest swapped slice (or none),
// the rest is a 0/1 knapsack (keep a slice resident, or give it its cheapest move), solved by
// dynamic programming over the free bytes in at most kGranules steps of equal size, with every
// slice's bytes rounded up to a whole step (so a plan it returns always fits; with bytes that are
// whole steps, it is the optimum). Work: O(slices^2 x kGranules).
//
// Thread safety: a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "engine/optim/placement.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

struct StateSliceCost {
  std::string name;
  std::size_t state_bytes = 0;      // master weights and optimizer state, on the device if kept
  std::size_t gradient_bytes = 0;   // what goes to the host for a host step
  std::size_t parameter_bytes = 0;  // what comes back after it
};

struct StatePlacementInputs {
  std::vector<StateSliceCost> slices;
  std::size_t budget_bytes = 0;
  std::size_t other_peak_bytes = 0;     // forward and backward's peak without any slice's state
  std::size_t step_other_bytes = 0;     // the step's device bytes without any slice's state
  double link_bytes_per_s = 0;          // host link, each way; > 0
  double device_state_bytes_per_s = 0;  // bytes of state the device step updates per second; > 0
  double cpu_state_bytes_per_s = 0;     // the same for the CPU step; > 0
  double nvme_read_bytes_per_s = 0;     // 0: no NVMe tier
  double nvme_write_bytes_per_s = 0;
  bool allow_swap = true;  // the engine may swap (its eviction policy swaps)
};

enum class StateChoice : std::uint8_t { kResident, kSwapped, kHost, kNvme };
std::string_view state_choice_name(StateChoice c);  // "device", "swapped", "host", "nvme"
// What the optimizer is told: kResident and kSwapped are kDevice (the engine swaps).
StatePlacement placement_of(StateChoice c);

struct StateSliceChoice {
  std::string name;
  StateChoice choice = StateChoice::kResident;
  std::size_t state_bytes = 0;
  double predicted_s = 0;  // the slice's part of the optimizer's time
};

struct StatePlacementPlan {
  std::vector<StateSliceChoice> slices;
  double predicted_s = 0;                 // sum over slices
  std::size_t forward_peak_bytes = 0;     // predicted device peak during forward and backward
  std::size_t step_peak_bytes = 0;        // predicted device peak at the step
  std::size_t smallest_budget_bytes = 0;  // the least budget any placement fits
};

// kInvalidArgument for a non-positive bandwidth or no slices; kOutOfMemory, saying the smallest
// feasible budget, when even with every slice off the device the budget is too small.
Result<StatePlacementPlan> plan_state_placement(const StatePlacementInputs& in);

// The predicted time of every slice's choices, for tests and for `ebb plan` to show: the cost
// of `choice` for slice i.
double state_choice_seconds(const StatePlacementInputs& in, std::size_t i, StateChoice choice);

// The inputs from a profile of a step whose state is all on the device (`ebb plan
// --optimizer-state auto`): one slice per name prefix "<group>.s<k>" of the optimizer-state
// tensors (kind kOptimizerState: master weights and moments), with the gradient and parameter
// tensors of the same prefix; forward and backward's peak is the profile's peak live bytes less
// the state, the step's the parameters and gradients; the device's state rate is the state bytes
// the ops that write state update over their measured time. The link and NVMe rates come from
// `hardware`, the CPU's from the caller. kInvalidArgument when the profile has no optimizer
// state or no time for the ops that write it (a DTR log).
Result<StatePlacementInputs> state_placement_inputs(const Profile& profile,
                                                    std::size_t budget_bytes,
                                                    const HardwareModel& hardware,
                                                    double cpu_state_bytes_per_s);
// The plan's choices as a Plan file records them (Plan::state_placement).
std::vector<StateSliceDecision> state_decisions(const StatePlacementPlan& plan);

}  // namespace ebb
