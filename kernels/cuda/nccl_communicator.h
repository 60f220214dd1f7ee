// The nccl backend of kernels/comm/communicator.h: GPU ranks, on device memory. Plain C++: no
// CUDA or NCCL header leaks out of kernels/cuda/.
//
// libnccl is loaded at run time (dlopen, as cuBLAS is), never linked, so that every binary
// starts where NCCL is not installed. Looked for, in order: each directory of $EBB_NCCL_PATH
// (colon-separated; libnccl.so.2, then libnccl.so); the dynamic loader's search for
// libnccl.so.2 and libnccl.so (LD_LIBRARY_PATH, ldconfig: the CUDA toolkit's or the
// distribution's copy); pip's nvidia-nccl wheel (site-packages/nvidia/nccl/lib) under the usual
// Python prefixes, $VIRTUAL_ENV and ~/.local; $CONDA_PREFIX/lib.
//
// Ranks: one rank makes its unique id itself and needs no MPI. With several, rank 0 makes it and
// the others get it through `bootstrap`'s host_all_gather (the mpi backend), which the
// communicator keeps for its own host_all_gather and abort. Each rank uses its local rank's GPU,
// which must be the Device's.
//
// Errors and the watchdog: after each enqueue the communicator polls ncclCommGetAsyncError, and
// a watchdog thread polls it too while collectives are in flight, with an event recorded after
// each; an asynchronous error, a failed event, or a collective not complete after
// CommOptions::timeout aborts the NCCL communicator (ncclCommAbort) and fails the collective (or,
// from the watchdog, the next call) with kUnavailable naming the rank. abort() also aborts the
// bootstrap, which ends the job (MPI_Abort): peers blocked in NCCL would otherwise wait for
// their own watchdogs.
//
// Test hook: EBB_NCCL_INJECT_ERROR=k (read when the communicator is made) makes the async-error
// poll after this communicator's collective number k (from 0) report ncclInternalError, so the
// abort path runs with one rank.
//
// Thread safety: as Communicator.
#pragma once

#include <memory>

#include "kernels/comm/communicator.h"
#include "kernels/device.h"

namespace ebb {

// REQUIRES: device is a cuda device; env.size == 1 or bootstrap spans env.size ranks, with this
// process at env.rank.
Result<std::unique_ptr<Communicator>> make_nccl_communicator(
    Device& device, const CommOptions& options, const RankEnv& env,
    std::unique_ptr<Communicator> bootstrap);

}  // namespace ebb
