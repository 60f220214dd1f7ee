// What the three Communicator backends (single, mpi, nccl) share: the argument checks of each
// collective, the textbook byte counts of communicator.h, and the words of their messages.
// Internal to kernels/: the layers above include communicator.h only.
//
// Defined in communicator.cc, which the mpi plugin (libebb_comm_mpi.so) compiles in as well, so
// that the plugin needs nothing else of ebb.
//
// Thread safety: stateless functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/comm/communicator.h"
#include "kernels/status.h"

namespace ebb {

// Elements of the send and the receive buffer of one collective over `size` ranks, from its
// count argument (communicator.h): all_reduce count and count; reduce_scatter size * count and
// count; all_gather count and size * count; all_to_all size * count twice; broadcast count (one
// buffer); barrier none.
struct CollectiveExtent {
  std::size_t send_elements = 0;
  std::size_t recv_elements = 0;
};
CollectiveExtent collective_extent(CommOp op, std::size_t count, int size);

// "all_reduce on rank 1 of 4 (mpi)": how every message about one collective starts.
std::string collective_words(CommOp op, CommBackend backend, int rank, int size);

// kInvalidArgument naming the collective for: a null buffer with a non-zero count, a buffer of
// more than SIZE_MAX bytes, send and recv that overlap (all_reduce may pass send == recv), a
// broadcast root outside [0, size). recv is the broadcast's buffer; send is unused there.
Status check_collective(CommOp op, CommBackend backend, int rank, int size, const void* send,
                        const void* recv, std::size_t count, CommDType t, int root);

// The payload this rank sends in one collective, by communicator.h's textbook count; `count`
// and `t` describe the buffer as the backend hands it to its library (so the mpi backend's
// 16-bit and byte sums, reduced in fp32, count fp32 bytes).
std::int64_t textbook_bytes_sent(CommOp op, std::size_t count, CommDType t, int size, bool is_root);

}  // namespace ebb
