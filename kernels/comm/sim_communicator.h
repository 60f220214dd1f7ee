// The sim backend of communicator.h: rank 0 of N ranks on the sim device, standing for all of
// them. Data parallelism with ZeRO is symmetric: every rank holds 1/N of the partitioned state,
// runs the same ops on the same shapes and sends the same bytes, so one simulated rank's step is
// every rank's, and a configuration of N GPUs is planned in one process (issue 18).
//
// On the sim device no closure runs, so no collective moves data: a collective launched there is
// accounted by its launch's cost (the caller's, from the link model), and one called directly
// counts its textbook bytes and nothing else. Called on a cpu or cuda stream it is
// kFailedPrecondition: this backend moves no data. host_all_gather gives every rank this rank's
// bytes (the ranks are symmetric). Byte counters count as for N ranks; the link model never
// sleeps (the sim's clock is virtual).
//
// Thread safety: as Communicator.
#pragma once

#include <memory>

#include "kernels/comm/communicator.h"

namespace ebb {

// REQUIRES: ranks >= 1.
std::unique_ptr<Communicator> make_sim_communicator(int ranks);

}  // namespace ebb
