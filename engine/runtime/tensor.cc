#include "engine/runtime/tensor.h"

#include <limits>

namespace ebb {

std::size_t tensor_bytes(const std::vector<std::int64_t>& shape, DType dtype) {
  std::size_t bytes = dtype_bytes(dtype);
  if (shape.empty() || bytes == 0) return 0;
  for (std::int64_t d : shape) {
    if (d <= 0) return 0;
    const auto dim = static_cast<std::size_t>(d);
    if (bytes > std::numeric_limits<std::size_t>::max() / dim) return 0;
    bytes *= dim;
  }
  return bytes;
}

}  // namespace ebb
