#include "engine/optim/precision.h"

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

}  // namespace ebb
