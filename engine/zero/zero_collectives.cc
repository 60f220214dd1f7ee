#include "engine/zero/zero_collectives.h"

#include <stdexcept>

namespace ebb::zero_internal {

CommDType comm_dtype(DType t) {
  switch (t) {
    case DType::kBF16:
      return CommDType::kBF16;
    case DType::kF16:
      return CommDType::kF16;
    default:
      return CommDType::kF32;
  }
}

void check(const Status& s) {
  if (!s.ok()) throw std::runtime_error(s.to_string());
}

std::byte* at(void* base, std::int64_t elements, std::size_t element_bytes) {
  return static_cast<std::byte*>(base) + static_cast<std::size_t>(elements) * element_bytes;
}
const std::byte* at(const void* base, std::int64_t elements, std::size_t element_bytes) {
  return static_cast<const std::byte*>(base) + static_cast<std::size_t>(elements) * element_bytes;
}

// Every rank's range of a slice, gathered into `out` (the full slice) through `scratch`: this
// rank's range `own` (null when it owns none) is copied into scratch first when `copy_own` (it
// is sent from a buffer the gather does not write) or when the ranges are uneven (packed to
// the chunk size); uneven chunks are received after it and unpacked to their ranges.
void gather_chunks(Communicator& comm, const LaunchContext& ctx,
                   const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
                   std::int64_t chunk, int rank, nn::FloatType ft, CommDType ct, std::size_t eb,
                   bool even, const void* own_range, void* out, void* scratch, bool copy_own) {
  const std::pair<std::int64_t, std::int64_t> mine = ranges[static_cast<std::size_t>(rank)];
  const std::int64_t own = mine.second - mine.first;
  const void* send = own_range;
  if (copy_own || !even || own_range == nullptr) {
    if (own > 0) nn::cast(ctx, ft, scratch, ft, own_range, own);
    send = scratch;
  }
  if (even) {
    check(comm.all_gather(ctx, send, out, static_cast<std::size_t>(chunk), ct));
    return;
  }
  void* recv = at(scratch, chunk, eb);
  check(comm.all_gather(ctx, send, recv, static_cast<std::size_t>(chunk), ct));
  for (std::size_t j = 0; j < ranges.size(); ++j) {
    nn::cast(ctx, ft, at(out, ranges[j].first, eb), ft,
             at(recv, static_cast<std::int64_t>(j) * chunk, eb),
             ranges[j].second - ranges[j].first);
  }
}

}  // namespace ebb::zero_internal
