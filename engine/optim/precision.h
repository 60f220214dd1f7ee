// Precision: the dtype a training run computes in. kF32 keeps everything in fp32. kBF16 and
// kF16 run forward and backward on 16-bit parameter copies and 16-bit activations (every kernel
// accumulates in fp32) and keep fp32 master weights that the optimizer updates; fp16 also needs
// dynamic loss scaling (engine/optim/loss_scaler.h) because its range is narrow.
//
// Thread safety: constants and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/schema/tensor_kind.h"

namespace ebb {

enum class Precision : std::uint8_t { kF32, kBF16, kF16 };

// "fp32", "bf16", "fp16": the names --precision takes.
std::string_view precision_name(Precision p);
std::optional<Precision> precision_from_name(std::string_view name);

// The dtype of the working parameter copies and activations.
DType precision_dtype(Precision p);
// Whether the precision keeps separate fp32 master weights (every precision but kF32).
inline bool has_master_weights(Precision p) { return p != Precision::kF32; }

// `values` (fp32) as the bytes of a buffer of `dtype` (kF32, kBF16 or kF16), rounded to nearest
// even when narrower: how working parameters are rounded from master weights on the host.
std::vector<std::byte> round_to_dtype(std::span<const float> values, DType dtype);

}  // namespace ebb
