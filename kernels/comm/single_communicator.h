// The single backend of communicator.h: one rank of one, for the cpu and sim devices. Every
// collective is a local copy (memcpy on a cpu stream's thread); on sim, whose closures never
// run, a collective called directly copies nothing and is only counted. Byte counters count no
// payload (N - 1 = 0 peers), calls as usual.
//
// A cuda device is served by the nccl backend with one rank (make_communicator): this layer
// cannot copy device memory without CUDA.
//
// Thread safety: as Communicator.
#pragma once

#include <memory>

#include "kernels/comm/communicator.h"

namespace ebb {

std::unique_ptr<Communicator> make_single_communicator();

}  // namespace ebb
