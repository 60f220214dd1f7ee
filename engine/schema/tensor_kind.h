// TensorKind and DType: what a tensor is for and how its elements are stored, with the names
// ebb writes in files (profiles, reports). Shared by the Profile and by the engine's Tensor
// handles, so that a profile and a live engine speak of tensors the same way.
//
// Thread safety: constants and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ebb {

// What a tensor is for. Parameters, inputs and optimizer state exist before an iteration and
// cannot be recomputed; the others are made by the iteration's ops.
enum class TensorKind : std::uint8_t {
  kParameter,
  kGradient,
  kActivation,
  kOptimizerState,
  kWorkspace,
  kInput,
};

enum class DType : std::uint8_t { kF32, kBF16, kF16, kI32, kI64, kU8 };

// "parameter", "gradient", "activation", "optimizer_state", "workspace", "input".
std::string_view tensor_kind_name(TensorKind kind);
// The kind a name above stands for; nullopt for any other string.
std::optional<TensorKind> tensor_kind_from_name(std::string_view name);

// "f32", "bf16", "f16", "i32", "i64", "u8".
std::string_view dtype_name(DType dtype);
// The dtype a name above stands for; nullopt for any other string.
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes per element: 4, 2, 2, 4, 8, 1.
std::size_t dtype_bytes(DType dtype);

}  // namespace ebb
