#include "tools/report/memory_series.h"

#include <algorithm>

namespace ebb::report {
namespace {

// Adds `bytes` of `category` to every op in [first, last] of a per-category difference array.
void add_span(std::vector<CategoryBytes>& diff, MemoryCategory category, std::size_t bytes,
              std::size_t first, std::size_t last) {
  if (first > last) return;
  const auto c = static_cast<std::size_t>(category);
  diff[first][c] += bytes;
  diff[last + 1][c] -= bytes;
}

// Each tensor's bytes from its producer (op 0 when it has none) to the op after which the
// program frees it (the last op when none does).
void add_lifetimes(const Profile& profile, std::vector<CategoryBytes>& diff) {
  const std::vector<std::size_t> freed = freed_after_ops(profile);
  const std::size_t last = profile.ops.size() - 1;
  for (const ProfiledTensor& t : profile.tensors) {
    const std::size_t death = freed[t.id] == kNeverFreed ? last : freed[t.id];
    add_span(diff, category_of(t), t.bytes, t.producer.value_or(0), death);
  }
}

// An eviction takes the bytes off after evict_after until the copy back or the rebuild before
// prefetch_at (to the program's free when the tensor is never read again); a hold keeps them
// from the op after the free to `until`.
void apply_plan(const Profile& profile, const Plan& plan, std::vector<CategoryBytes>& diff) {
  const std::vector<std::size_t> freed = freed_after_ops(profile);
  const std::size_t last = profile.ops.size() - 1;
  for (const Eviction& e : plan.evictions) {
    const ProfiledTensor& t = profile.tensors[e.tensor];
    const std::size_t death = freed[t.id] == kNeverFreed ? last : freed[t.id];
    const std::size_t back = e.needed_at.has_value() ? e.prefetch_at - 1 : death;
    const auto c = static_cast<std::size_t>(category_of(t));
    if (e.evict_after + 1 > back) continue;
    diff[e.evict_after + 1][c] -= t.bytes;
    diff[back + 1][c] += t.bytes;
  }
  for (const Hold& h : plan.holds) {
    const ProfiledTensor& t = profile.tensors[h.tensor];
    if (freed[t.id] == kNeverFreed) continue;
    add_span(diff, category_of(t), t.bytes, freed[t.id] + 1, h.until);
  }
}

}  // namespace

std::string_view category_id(MemoryCategory category) {
  static constexpr std::string_view kIds[kMemoryCategories] = {
      "parameter", "gradient", "optimizer_state", "activation", "communication",
      "workspace", "input"};
  return kIds[static_cast<std::size_t>(category)];
}

std::string_view category_label(MemoryCategory category) {
  static constexpr std::string_view kLabels[kMemoryCategories] = {
      "parameters", "gradients", "optimizer state", "activations", "communication buffers",
      "workspace",  "inputs"};
  return kLabels[static_cast<std::size_t>(category)];
}

MemoryCategory category_of(const ProfiledTensor& tensor) {
  switch (tensor.kind) {
    case TensorKind::kParameter:
      return MemoryCategory::kParameter;
    case TensorKind::kGradient:
      return MemoryCategory::kGradient;
    case TensorKind::kOptimizerState:
      return MemoryCategory::kOptimizerState;
    case TensorKind::kActivation:
      return MemoryCategory::kActivation;
    case TensorKind::kWorkspace:
      return tensor.name.rfind("zero.", 0) == 0 ? MemoryCategory::kCommunication
                                                : MemoryCategory::kWorkspace;
    case TensorKind::kInput:
      return MemoryCategory::kInput;
  }
  return MemoryCategory::kWorkspace;
}

std::size_t total_bytes(const CategoryBytes& bytes) {
  std::size_t total = 0;
  for (std::size_t b : bytes) total += b;
  return total;
}

MemoryCurve memory_curve(const Profile& profile, const Plan* plan) {
  MemoryCurve curve;
  if (profile.ops.empty()) return curve;
  // Unsigned wrap-around is harmless: every span adds at its start what it takes at its end.
  std::vector<CategoryBytes> diff(profile.ops.size() + 1, CategoryBytes{});
  add_lifetimes(profile, diff);
  if (plan != nullptr) apply_plan(profile, *plan, diff);
  curve.after_op.resize(profile.ops.size());
  CategoryBytes running{};
  std::array<bool, kMemoryCategories> seen{};
  for (std::size_t k = 0; k < profile.ops.size(); ++k) {
    for (std::size_t c = 0; c < kMemoryCategories; ++c) {
      running[c] += diff[k][c];
      seen[c] = seen[c] || running[c] > 0;
    }
    curve.after_op[k] = running;
    const std::size_t total = total_bytes(running);
    if (total > curve.peak_bytes) {
      curve.peak_bytes = total;
      curve.peak_op = k;
    }
  }
  for (std::size_t c = 0; c < kMemoryCategories; ++c) {
    if (seen[c]) curve.present.push_back(static_cast<MemoryCategory>(c));
  }
  return curve;
}

std::vector<std::size_t> decimate_curve(const MemoryCurve& curve, std::size_t max_points) {
  const std::size_t n = curve.after_op.size();
  std::vector<std::size_t> ops;
  if (n <= max_points) {
    ops.resize(n);
    for (std::size_t k = 0; k < n; ++k) ops[k] = k;
    return ops;
  }
  ops.reserve(max_points);
  for (std::size_t b = 0; b < max_points; ++b) {
    const std::size_t first = b * n / max_points;
    const std::size_t end = (b + 1) * n / max_points;
    std::size_t best = first;
    for (std::size_t k = first + 1; k < end; ++k) {
      if (total_bytes(curve.after_op[k]) > total_bytes(curve.after_op[best])) best = k;
    }
    ops.push_back(best);
  }
  return ops;
}

}  // namespace ebb::report
