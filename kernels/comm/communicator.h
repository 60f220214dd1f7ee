// Communicator: the collectives ZeRO needs (engine/zero/), over one of four backends:
//  - single: one rank, no communication (every collective is a local copy);
//  - mpi: CPU ranks under mpirun, on host memory (pinned or not) and the cpu device's memory.
//    MPI is not linked into any ebb library: the backend lives in a plugin (libebb_comm_mpi.so,
//    built when CMake finds MPI) that make_communicator() loads with dlopen only when the
//    process runs under an MPI launcher, so that every binary starts where no MPI is installed;
//  - nccl: GPU ranks, on device memory; libnccl.so.2 is loaded at run time (as cuBLAS is), and
//    the unique id is made locally with one rank, or broadcast over MPI with several;
//  - sim: rank 0 of N on the sim device, standing for every rank (kernels/comm/sim_communicator.h).
//
// A collective is a kernel: it takes the LaunchContext of the stream it runs on (a closure
// launched on a Stream, or an engine op's OpArgs::launch). On cpu the closure runs on the
// stream's worker thread, and the mpi backend starts non-blocking MPI calls there and progresses
// them to completion (so the calling thread never blocks on the network), with a watchdog; on
// cuda the nccl backend enqueues on ctx.native_stream. The *_on(stream, ...) helpers launch one
// collective as a closure on a stream; the stream's event then completes with it.
//
// Determinism: the sum reductions here (all_reduce, reduce_scatter) are the library's, whose
// summation order may depend on the message size and the algorithm it picks. ZeRO does not use
// them for gradients: it reduces with all_to_all and a local fold in rank order
// (engine/zero/zero.h), which gives the same bits whatever the library does.
//
// bf16 and fp16 sums: OpenMPI 4.1 has no 16-bit float datatype, so the mpi backend reduces them
// through fp32 (each rank widens its buffer to fp32, the fp32 sum is reduced, and the result is
// rounded to nearest even once); nccl reduces them natively.
//
// Byte counters: per operation kind, the payload this rank sends, by the textbook count of each
// collective over `size()` ranks (ring algorithms send exactly these): all_reduce 2(N-1)/N of
// the buffer, reduce_scatter and all_gather (N-1)/N of the full buffer, all_to_all (N-1)/N,
// broadcast the buffer from the root (N-1 copies counted at the root, 0 elsewhere), barrier 0.
//
// Errors: a collective that fails (a peer that died, a timeout of the watchdog, an NCCL
// asynchronous error) returns kUnavailable naming the operation and, when known, the rank; the
// closure helpers throw it as an exception, which the stream records (engine ops name the op).
// After an error the communicator is aborted: every later call fails at once.
//
// Thread safety: one collective at a time per communicator (they are ordered on one stream);
// stats() and rank()/size() may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

enum class CommBackend : std::uint8_t { kSingle, kMpi, kNccl, kSim };
// "single", "mpi", "nccl", "sim".
std::string_view comm_backend_name(CommBackend backend);
std::optional<CommBackend> comm_backend_from_name(std::string_view name);

enum class CommDType : std::uint8_t { kF32, kBF16, kF16, kByte };
std::size_t comm_dtype_bytes(CommDType t);

enum class CommOp : std::uint8_t {
  kAllReduce,
  kReduceScatter,
  kAllGather,
  kAllToAll,
  kBroadcast,
  kBarrier,
};
inline constexpr std::size_t kCommOpCount = 6;
std::string_view comm_op_name(CommOp op);

struct CommStats {
  std::array<std::int64_t, kCommOpCount> bytes_sent{};  // payload this rank sent, per kind
  std::array<std::int64_t, kCommOpCount> calls{};
  std::int64_t total_bytes_sent() const;
};

// Where this process stands among the ranks, from the launcher's environment
// (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK, or PMI_RANK / PMI_SIZE / MPI_LOCALRANKID); one
// rank of one when none is set.
struct RankEnv {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  bool under_launcher = false;  // one of the variables was set
};
RankEnv rank_env_from_environment();

struct CommOptions {
  // nullopt: nccl on a cuda device, else mpi under a launcher, else single. sim is chosen only
  // when asked, on a sim device.
  std::optional<CommBackend> backend;
  int sim_ranks = 1;  // the sim backend: how many ranks its one rank stands for
  // How long one collective may wait for its peers before the watchdog fails it (and the job:
  // a rank that died leaves the others waiting). mpi and nccl.
  std::chrono::milliseconds timeout{30000};
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual CommBackend backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;

  // Collectives, each a kernel on ctx's stream. Counts are elements of `t`; send and recv may
  // not overlap unless stated. REQUIRES: every rank calls the same collectives in the same order
  // with the same counts.
  // recv[i] = sum over ranks of send[i], i < count. send == recv allowed.
  virtual Status all_reduce(const LaunchContext& ctx, const void* send, void* recv,
                            std::size_t count, CommDType t) = 0;
  // recv[i] = sum over ranks of send[rank * recv_count + i], i < recv_count.
  virtual Status reduce_scatter(const LaunchContext& ctx, const void* send, void* recv,
                                std::size_t recv_count, CommDType t) = 0;
  // recv[r * send_count + i] = rank r's send[i].
  virtual Status all_gather(const LaunchContext& ctx, const void* send, void* recv,
                            std::size_t send_count, CommDType t) = 0;
  // recv[r * count + i] = rank r's send[rank * count + i]: chunk j of each send goes to rank j.
  virtual Status all_to_all(const LaunchContext& ctx, const void* send, void* recv,
                            std::size_t count, CommDType t) = 0;
  // buffer = root's buffer, on every rank.
  virtual Status broadcast(const LaunchContext& ctx, void* buffer, std::size_t count, CommDType t,
                           int root) = 0;
  virtual Status barrier(const LaunchContext& ctx) = 0;

  // Small control messages between host buffers, blocking the calling thread (configuration
  // hashes, checkpoint votes): recv[r * bytes + i] = rank r's send[i]. Outside any stream.
  virtual Status host_all_gather(const void* send, void* recv, std::size_t bytes) = 0;

  // Ends the job's communication after a local failure, so that peers waiting on this rank fail
  // instead of hanging (MPI_Abort would kill the job; ncclCommAbort for nccl). Idempotent.
  virtual void abort(std::string_view reason) = 0;

  CommStats stats() const;

  // A modelled link, for measuring on one machine how much communication a schedule hides:
  // every collective of the cpu backends (single, mpi) then also takes latency + the bytes it
  // sends / bytes_per_second, its stream's thread sleeping that long. nccl ignores it; on sim it
  // is the cost ZeRO gives its collective ops (the sim clock's, nothing sleeps). Default: none.
  // Set it before any collective runs.
  void set_link_model(LinkModel link) { link_ = link; }
  const LinkModel& link_model() const { return link_; }

 protected:
  // Backends count each collective they run.
  void count(CommOp op, std::int64_t bytes_sent);

 private:
  std::array<std::atomic<std::int64_t>, kCommOpCount> bytes_{};
  std::array<std::atomic<std::int64_t>, kCommOpCount> calls_{};
  LinkModel link_{};
};

// The communicator for this process: kUnavailable naming what is missing (no MPI plugin, no
// libnccl, a cuda device without NCCL), kInvalidArgument for a backend the device cannot serve
// (nccl on a cpu device; mpi on a cuda device).
Result<std::unique_ptr<Communicator>> make_communicator(Device& device,
                                                        const CommOptions& options = {});

// Launches one collective as a closure on `stream` (throwing its error there).
Status all_reduce_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                     std::size_t count, CommDType t);
Status reduce_scatter_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                         std::size_t recv_count, CommDType t);
Status all_gather_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                     std::size_t send_count, CommDType t);
Status all_to_all_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                     std::size_t count, CommDType t);
Status broadcast_on(Stream& stream, Communicator& comm, void* buffer, std::size_t count,
                    CommDType t, int root);
Status barrier_on(Stream& stream, Communicator& comm);

}  // namespace ebb
