#include "engine/schema/tensor_kind.h"

#include <array>
#include <utility>

namespace ebb {
namespace {

constexpr std::array<std::pair<TensorKind, std::string_view>, 6> kKindNames = {{
    {TensorKind::kParameter, "parameter"},
    {TensorKind::kGradient, "gradient"},
    {TensorKind::kActivation, "activation"},
    {TensorKind::kOptimizerState, "optimizer_state"},
    {TensorKind::kWorkspace, "workspace"},
    {TensorKind::kInput, "input"},
}};

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  std::size_t bytes;
};
constexpr std::array<DTypeEntry, 6> kDTypes = {{
    {DType::kF32, "f32", 4},
    {DType::kBF16, "bf16", 2},
    {DType::kF16, "f16", 2},
    {DType::kI32, "i32", 4},
    {DType::kI64, "i64", 8},
    {DType::kU8, "u8", 1},
}};

}  // namespace

std::string_view tensor_kind_name(TensorKind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

std::optional<TensorKind> tensor_kind_from_name(std::string_view name) {
  for (const auto& [k, n] : kKindNames) {
    if (n == name) return k;
  }
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "unknown";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

std::size_t dtype_bytes(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.bytes;
  }
  return 0;
}

}  // namespace ebb
