#include "engine/optim/precision.h"

#include <cstring>

#include "kernels/nn_scalar.h"

namespace ebb {

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::kF32:
      return "fp32";
    case Precision::kBF16:
      return "bf16";
    case Precision::kF16:
      return "fp16";
  }
  return "unknown";
}

std::optional<Precision> precision_from_name(std::string_view name) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kF16}) {
    if (precision_name(p) == name) return p;
  }
  return std::nullopt;
}

DType precision_dtype(Precision p) {
  switch (p) {
    case Precision::kF32:
      return DType::kF32;
    case Precision::kBF16:
      return DType::kBF16;
    case Precision::kF16:
      return DType::kF16;
  }
  return DType::kF32;
}

std::vector<std::byte> round_to_dtype(std::span<const float> values, DType dtype) {
  std::vector<std::byte> bytes(values.size() * dtype_bytes(dtype));
  if (dtype == DType::kF32) {
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
  }
  auto* out = reinterpret_cast<std::uint16_t*>(bytes.data());
  for (std::size_t i = 0; i < values.size(); ++i) {
    out[i] = dtype == DType::kBF16 ? nn::f32_to_bf16(values[i]) : nn::f32_to_f16(values[i]);
  }
  return bytes;
}

}  // namespace ebb
