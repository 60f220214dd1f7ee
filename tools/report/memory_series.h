// MemoryCurve: the device bytes of one profiled iteration after each op, by what the bytes are
// for (the report's stacked chart). Without a plan it is the profile's live-bytes curve split by
// tensor kind; with one, each eviction takes its tensor's bytes off for the ops it is away and
// each hold keeps a freed tensor on, as the plan says (engine/schema/plan.h).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>
#include <vector>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"

namespace ebb::report {

// What a tensor's bytes are for, as the report groups them. Communication buffers are the ZeRO
// collectives' scratch tensors (workspace named "zero.*"); every other tensor goes by its kind.
enum class MemoryCategory : std::size_t {
  kParameter,
  kGradient,
  kOptimizerState,
  kActivation,
  kCommunication,
  kWorkspace,
  kInput,
};
inline constexpr std::size_t kMemoryCategories = 7;

// "parameter", "gradient", "optimizer_state", "activation", "communication", "workspace",
// "input": the ids the HTML and the trace use.
std::string_view category_id(MemoryCategory category);
// "parameters", "gradients", "optimizer state", "activations", "communication buffers",
// "workspace", "inputs".
std::string_view category_label(MemoryCategory category);
MemoryCategory category_of(const ProfiledTensor& tensor);

using CategoryBytes = std::array<std::size_t, kMemoryCategories>;

struct MemoryCurve {
  std::vector<CategoryBytes> after_op;  // after_op[k]: bytes right after op k, before its frees
  std::size_t peak_bytes = 0;           // the largest total over after_op
  std::size_t peak_op = 0;              // the first op where it is reached
  // Categories with bytes at some op, in enum order.
  std::vector<MemoryCategory> present;
};

std::size_t total_bytes(const CategoryBytes& bytes);

// REQUIRES: validate_profile passes; a plan passes validate_plan against `profile`.
MemoryCurve memory_curve(const Profile& profile, const Plan* plan);

// At most `max_points` op indices to draw the curve with: every op when there are few enough;
// otherwise the ops are cut into max_points buckets of consecutive ops and each bucket is drawn
// with its op of the largest total, so the peak is always among them. Ascending.
// REQUIRES: max_points >= 1.
std::vector<std::size_t> decimate_curve(const MemoryCurve& curve, std::size_t max_points);

}  // namespace ebb::report
