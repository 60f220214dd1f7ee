// Where a slice of model state's fp32 master weights and optimizer state live, and how a run
// chooses (--optimizer-state device|host|nvme|auto).
//
// kDevice: engine tensors (kind kOptimizerState) that the engine keeps, swaps or plans like any
// other, updated by a device op. kHost: pinned host buffers (the engine's host tier), updated by
// the CPU (kernels/optim.h's cpu backend) from a host copy of the gradients; the updated working
// parameters go back to the device as a swapped tensor does. kNvme: files of the engine's NVMe
// tier, streamed through the CPU step in chunks (offload/chunk_store.h). The working parameters
// and the gradient buffers stay engine tensors in every placement.
//
// Thread safety: constants and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ebb {

enum class StatePlacement : std::uint8_t { kDevice, kHost, kNvme };
// What a run asks for: one placement for every slice, or kAuto, the planner's choice per slice
// (engine/planner/state_placement.h).
enum class StatePolicy : std::uint8_t { kDevice, kHost, kNvme, kAuto };

// "device", "host", "nvme" (and "auto" for a policy): the names --optimizer-state takes.
std::string_view placement_name(StatePlacement p);
std::string_view state_policy_name(StatePolicy p);
std::optional<StatePlacement> placement_from_name(std::string_view name);
std::optional<StatePolicy> state_policy_from_name(std::string_view name);

}  // namespace ebb
