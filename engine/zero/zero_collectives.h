// Helpers of engine/zero/ shared by the reduction and gather code (zero.cc) and stage 3's
// gathers (zero_gather.cc): not part of the ZeRO API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/schema/tensor_kind.h"
#include "kernels/comm/communicator.h"
#include "kernels/device.h"
#include "kernels/nn.h"
#include "kernels/status.h"

namespace ebb::zero_internal {

// The communicator's dtype for a tensor dtype (f32 for anything not 16-bit).
CommDType comm_dtype(DType t);

// Collectives run inside kernels, whose failures are exceptions (the stream records them and
// names the op): throws `s` unless it is OK.
void check(const Status& s);

// The address of element `elements` of a buffer of `element_bytes`-byte elements.
std::byte* at(void* base, std::int64_t elements, std::size_t element_bytes);
const std::byte* at(const void* base, std::int64_t elements, std::size_t element_bytes);

// Every rank's range of a slice, gathered into `out` (the full slice) through `scratch`: this
// rank's range `own` (null when it owns none) is copied into scratch first when `copy_own` (it
// is sent from a buffer the gather does not write) or when the ranges are uneven (packed to
// the chunk size); uneven chunks are received after it and unpacked to their ranges.
void gather_chunks(Communicator& comm, const LaunchContext& ctx,
                   const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
                   std::int64_t chunk, int rank, nn::FloatType ft, CommDType ct, std::size_t eb,
                   bool even, const void* own_range, void* out, void* scratch, bool copy_own);

}  // namespace ebb::zero_internal
