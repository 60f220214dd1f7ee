// The mpi backend of communicator.h, built as the plugin libebb_comm_mpi.so (mpi_plugin.h says
// why and how it is loaded). It is compiled with communicator.cc and status.cc and with hidden
// symbols, so that it needs nothing else of ebb and exports only its factory.
//
// MPI in the process: the first communicator initializes MPI (MPI_THREAD_MULTIPLE asked for,
// since collectives run on stream threads and host_all_gather on the caller's; with only
// MPI_THREAD_SERIALIZED every MPI call takes one process-wide mutex) and finalizes it at exit,
// only if it initialized it, and only if no collective failed: MPI_Finalize waits for every
// rank, and after a failure a peer may be gone, so the process exits without it and the
// launcher reports the job failed.
//
// Each communicator duplicates MPI_COMM_WORLD twice, with MPI_ERRORS_RETURN: one for the stream
// collectives, one for host_all_gather (called from another thread, it must not interleave with
// a stream collective on the same MPI communicator). Each collective starts the non-blocking
// form and tests it until done or until CommOptions::timeout passes (the watchdog); a timeout
// or an MPI error fails the collective with kUnavailable and marks the communicator failed.
// The request that timed out stays posted (MPI cannot cancel a collective), so the fp32 scratch
// it may still write is kept until the process exits.
//
// Counts: MPI counts are int; a collective of more than INT_MAX elements per rank (per MPI
// call) is refused with kInvalidArgument rather than split.
//
// 16-bit sums: each rank widens its buffer to fp32, the fp32 sum is reduced (MPI_FLOAT), and
// the result is rounded to nearest even once (kernels/nn_scalar.h's conversions). Byte sums go
// through fp32 too (exact below 65793 ranks) and wrap modulo 256, as NCCL's ncclUint8 does:
// Open MPI 4.1's vectorized MPI_SUM on MPI_UNSIGNED_CHAR saturates at 255 instead.
//
// Thread safety: as Communicator.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/comm/comm_backend.h"
#include "kernels/comm/communicator.h"
#include "kernels/comm/mpi_plugin.h"
#include "kernels/nn_scalar.h"

namespace ebb {
namespace {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    return "MPI error " + std::to_string(code);
  }
  return std::string(text, static_cast<std::size_t>(length));
}

// MPI's state in this process. Never destroyed: the atexit handler reads it.
struct MpiProcess {
  std::mutex init_mu;
  bool ready = false;             // MPI initialized (here or by the program) at a usable level
  bool initialized_here = false;  // this plugin called MPI_Init_thread: it finalizes
  bool serialized = false;        // only MPI_THREAD_SERIALIZED: every call under call_mu
  std::mutex call_mu;
  std::atomic<bool> failed{false};  // a collective failed or a rank aborted: no MPI_Finalize
  // Scratch that a request still posted after a failure may write: kept until exit.
  std::mutex kept_mu;
  std::vector<std::vector<float>> kept;
};

MpiProcess& mpi_process() {
  static auto* const kProcess = new MpiProcess();
  return *kProcess;
}

void finalize_mpi() {
  MpiProcess& p = mpi_process();
  if (p.failed.load()) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized == 0) MPI_Finalize();
}

Status init_mpi() {
  MpiProcess& p = mpi_process();
  std::lock_guard<std::mutex> lock(p.init_mu);
  if (p.ready) return ok_status();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized != 0) return unavailable("mpi backend: MPI was already finalized in this process");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (initialized == 0) {
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) {
      return unavailable("mpi backend: MPI_Init_thread failed: " + mpi_error_string(rc));
    }
    p.initialized_here = true;
    std::atexit(finalize_mpi);
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return unavailable("mpi backend: MPI gives thread level " + std::to_string(provided) +
                       "; collectives run on stream threads and need MPI_THREAD_SERIALIZED");
  }
  p.serialized = provided < MPI_THREAD_MULTIPLE;
  p.ready = true;
  return ok_status();
}

// Held around every MPI call after init: a no-op under MPI_THREAD_MULTIPLE.
class MpiCallLock {
 public:
  MpiCallLock() {
    if (mpi_process().serialized) lock_ = std::unique_lock<std::mutex>(mpi_process().call_mu);
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

// The MPI datatype that moves elements of t unchanged.
MPI_Datatype move_type(CommDType t) {
  switch (t) {
    case CommDType::kF32:
      return MPI_FLOAT;
    case CommDType::kBF16:
    case CommDType::kF16:
      return MPI_UINT16_T;
    case CommDType::kByte:
      return MPI_UNSIGNED_CHAR;
  }
  return MPI_BYTE;
}

void widen(const void* in, float* out, std::size_t n, CommDType t) {
  if (t == CommDType::kByte) {
    const auto* bytes = static_cast<const std::uint8_t*>(in);
    for (std::size_t i = 0; i < n; i++) out[i] = bytes[i];
    return;
  }
  const auto* bits = static_cast<const std::uint16_t*>(in);
  if (t == CommDType::kBF16) {
    for (std::size_t i = 0; i < n; i++) out[i] = nn::bf16_to_f32(bits[i]);
  } else {
    for (std::size_t i = 0; i < n; i++) out[i] = nn::f16_to_f32(bits[i]);
  }
}

// REQUIRES for kByte: each value a whole number in [0, 2^24).
void narrow(const float* in, void* out, std::size_t n, CommDType t) {
  if (t == CommDType::kByte) {
    auto* bytes = static_cast<std::uint8_t*>(out);
    for (std::size_t i = 0; i < n; i++) bytes[i] = static_cast<std::uint32_t>(in[i]) & 0xFFU;
    return;
  }
  auto* bits = static_cast<std::uint16_t*>(out);
  if (t == CommDType::kBF16) {
    for (std::size_t i = 0; i < n; i++) bits[i] = nn::f32_to_bf16(in[i]);
  } else {
    for (std::size_t i = 0; i < n; i++) bits[i] = nn::f32_to_f16(in[i]);
  }
}

// Between MPI_Test calls: yield at first (a collective among ranks on one node completes in
// microseconds), then sleep, so that oversubscribed ranks leave the cores to their peers.
void back_off(int polls) {
  if (polls < 200) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, MPI_Comm control, int rank, int size, int local_rank,
                  std::chrono::milliseconds timeout)
      : comm_(comm),
        control_(control),
        rank_(rank),
        size_(size),
        local_rank_(local_rank),
        timeout_(timeout) {}

  ~MpiCommunicator() override {
    if (failed_.load()) {
      // A request may still be posted over the scratch and the communicators: leave them be.
      std::lock_guard<std::mutex> lock(mpi_process().kept_mu);
      mpi_process().kept.push_back(std::move(wide_send_));
      mpi_process().kept.push_back(std::move(wide_recv_));
      return;
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized != 0) return;
    MpiCallLock lock;
    MPI_Comm_free(&comm_);
    MPI_Comm_free(&control_);
  }

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  CommBackend backend() const override { return CommBackend::kMpi; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }

  Status all_reduce(const LaunchContext& ctx, const void* send, void* recv, std::size_t n,
                    CommDType t) override {
    return reduce(CommOp::kAllReduce, ctx, send, recv, n, t);
  }

  Status reduce_scatter(const LaunchContext& ctx, const void* send, void* recv,
                        std::size_t recv_count, CommDType t) override {
    return reduce(CommOp::kReduceScatter, ctx, send, recv, recv_count, t);
  }

  Status all_gather(const LaunchContext& ctx, const void* send, void* recv, std::size_t send_count,
                    CommDType t) override {
    const CommOp op = CommOp::kAllGather;
    EBB_RETURN_IF_ERROR(check(op, ctx, send, recv, send_count, t, 0));
    if (ctx.kind == DeviceKind::kCpu && send_count > 0) {
      const auto n = static_cast<int>(send_count);
      MPI_Request request = MPI_REQUEST_NULL;
      int rc = MPI_SUCCESS;
      {
        MpiCallLock lock;
        rc = MPI_Iallgather(send, n, move_type(t), recv, n, move_type(t), comm_, &request);
      }
      EBB_RETURN_IF_ERROR(complete(words(op), "MPI_Iallgather", rc, request, comm_));
    }
    count(op, textbook_bytes_sent(op, send_count, t, size_, false));
    return ok_status();
  }

  Status all_to_all(const LaunchContext& ctx, const void* send, void* recv, std::size_t n,
                    CommDType t) override {
    const CommOp op = CommOp::kAllToAll;
    EBB_RETURN_IF_ERROR(check(op, ctx, send, recv, n, t, 0));
    if (ctx.kind == DeviceKind::kCpu && n > 0) {
      const auto chunk = static_cast<int>(n);
      MPI_Request request = MPI_REQUEST_NULL;
      int rc = MPI_SUCCESS;
      {
        MpiCallLock lock;
        rc = MPI_Ialltoall(send, chunk, move_type(t), recv, chunk, move_type(t), comm_, &request);
      }
      EBB_RETURN_IF_ERROR(complete(words(op), "MPI_Ialltoall", rc, request, comm_));
    }
    count(op, textbook_bytes_sent(op, n, t, size_, false));
    return ok_status();
  }

  Status broadcast(const LaunchContext& ctx, void* buffer, std::size_t n, CommDType t,
                   int root) override {
    const CommOp op = CommOp::kBroadcast;
    EBB_RETURN_IF_ERROR(check(op, ctx, nullptr, buffer, n, t, root));
    if (ctx.kind == DeviceKind::kCpu && n > 0) {
      MPI_Request request = MPI_REQUEST_NULL;
      int rc = MPI_SUCCESS;
      {
        MpiCallLock lock;
        rc = MPI_Ibcast(buffer, static_cast<int>(n), move_type(t), root, comm_, &request);
      }
      EBB_RETURN_IF_ERROR(complete(words(op), "MPI_Ibcast", rc, request, comm_));
    }
    count(op, textbook_bytes_sent(op, n, t, size_, rank_ == root));
    return ok_status();
  }

  Status barrier(const LaunchContext& ctx) override {
    const CommOp op = CommOp::kBarrier;
    EBB_RETURN_IF_ERROR(check(op, ctx, nullptr, nullptr, 0, CommDType::kByte, 0));
    if (ctx.kind == DeviceKind::kCpu) {
      MPI_Request request = MPI_REQUEST_NULL;
      int rc = MPI_SUCCESS;
      {
        MpiCallLock lock;
        rc = MPI_Ibarrier(comm_, &request);
      }
      EBB_RETURN_IF_ERROR(complete(words(op), "MPI_Ibarrier", rc, request, comm_));
    }
    count(op, 0);
    return ok_status();
  }

  Status host_all_gather(const void* send, void* recv, std::size_t bytes) override {
    const std::string what = "host_all_gather of " + std::to_string(bytes) + " bytes on rank " +
                             std::to_string(rank_) + " of " + std::to_string(size_) + " (mpi)";
    EBB_RETURN_IF_ERROR(refuse_if_failed(what));
    if (bytes == 0) return ok_status();
    if (send == nullptr || recv == nullptr) return invalid_argument(what + ": null buffer");
    if (bytes > INT_MAX) {
      return invalid_argument(what + ": more than INT_MAX bytes, MPI's int count; not split");
    }
    const auto n = static_cast<int>(bytes);
    MPI_Request request = MPI_REQUEST_NULL;
    int rc = MPI_SUCCESS;
    {
      MpiCallLock lock;
      rc = MPI_Iallgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, control_, &request);
    }
    return complete(what, "MPI_Iallgather", rc, request, control_);
  }

  void abort(std::string_view reason) override {
    if (abort_called_.exchange(true)) return;
    std::fprintf(stderr, "ebb: rank %d of %d (mpi) aborts the job: %.*s\n", rank_, size_,
                 static_cast<int>(reason.size()), reason.data());
    std::fflush(stderr);
    mark_failed("aborted on this rank: " + std::string(reason));
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized != 0) return;
    MpiCallLock lock;
    MPI_Abort(comm_, 1);
  }

 private:
  std::string words(CommOp op) const {
    return collective_words(op, CommBackend::kMpi, rank_, size_);
  }

  // The checks every collective makes before it starts: a usable context, the arguments, a
  // count MPI can take, and no earlier failure.
  Status check(CommOp op, const LaunchContext& ctx, const void* send, const void* recv,
               std::size_t n, CommDType t, int root) {
    if (ctx.kind == DeviceKind::kCuda) {
      return invalid_argument(words(op) +
                              ": a cuda stream; the mpi backend moves host memory "
                              "only (use nccl for a cuda device)");
    }
    EBB_RETURN_IF_ERROR(
        check_collective(op, CommBackend::kMpi, rank_, size_, send, recv, n, t, root));
    if (n > INT_MAX) {
      return invalid_argument(words(op) + ": " + std::to_string(n) +
                              " elements per rank pass INT_MAX, MPI's int count; the mpi "
                              "backend does not split collectives");
    }
    return refuse_if_failed(words(op));
  }

  // all_reduce and reduce_scatter: sums, through fp32 for 16-bit types and bytes.
  Status reduce(CommOp op, const LaunchContext& ctx, const void* send, void* recv, std::size_t n,
                CommDType t) {
    EBB_RETURN_IF_ERROR(check(op, ctx, send, recv, n, t, 0));
    const bool wide = t != CommDType::kF32;
    const CommDType wire = wide ? CommDType::kF32 : t;
    if (ctx.kind == DeviceKind::kCpu && n > 0) {
      const CollectiveExtent extent = collective_extent(op, n, size_);
      const void* mpi_send = send;
      void* mpi_recv = recv;
      if (wide) {
        wide_send_.resize(extent.send_elements);
        wide_recv_.resize(extent.recv_elements);
        widen(send, wide_send_.data(), extent.send_elements, t);
        mpi_send = wide_send_.data();
        mpi_recv = wide_recv_.data();
      } else if (send == recv) {
        mpi_send = MPI_IN_PLACE;
      }
      const MPI_Datatype type = wide ? MPI_FLOAT : move_type(t);
      const auto count_arg = static_cast<int>(n);
      MPI_Request request = MPI_REQUEST_NULL;
      int rc = MPI_SUCCESS;
      const char* call = op == CommOp::kAllReduce ? "MPI_Iallreduce" : "MPI_Ireduce_scatter_block";
      {
        MpiCallLock lock;
        rc = op == CommOp::kAllReduce
                 ? MPI_Iallreduce(mpi_send, mpi_recv, count_arg, type, MPI_SUM, comm_, &request)
                 : MPI_Ireduce_scatter_block(mpi_send, mpi_recv, count_arg, type, MPI_SUM, comm_,
                                             &request);
      }
      EBB_RETURN_IF_ERROR(complete(words(op), call, rc, request, comm_));
      if (wide) narrow(wide_recv_.data(), recv, extent.recv_elements, t);
    }
    count(op, textbook_bytes_sent(op, n, wire, size_, false));
    return ok_status();
  }

  // The result of starting `call`, then the watchdog: tests the request until it completes or
  // the timeout passes.
  Status complete(const std::string& what, const char* call, int rc, MPI_Request& request,
                  MPI_Comm comm) {
    if (rc != MPI_SUCCESS) return fail(what, std::string(call) + ": " + mpi_error_string(rc));
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (int polls = 0;; polls++) {
      int done = 0;
      {
        MpiCallLock lock;
        rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      }
      if (rc != MPI_SUCCESS) {
        return fail(what, std::string("MPI_Test after ") + call + ": " + mpi_error_string(rc));
      }
      if (done != 0) return ok_status();
      if (std::chrono::steady_clock::now() >= deadline) {
        return fail(what, std::string(call) + " not complete after " +
                              std::to_string(timeout_.count()) +
                              " ms (the watchdog, CommOptions::timeout)");
      }
      back_off(polls);
    }
  }

  Status fail(const std::string& what, const std::string& why) {
    std::string message =
        what + ": " + why + "; a peer rank may have died or skipped this collective";
    mark_failed(message);
    return unavailable(std::move(message));
  }

  void mark_failed(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(failure_mu_);
      if (failure_.empty()) failure_ = message;
    }
    failed_.store(true);
    mpi_process().failed.store(true);
  }

  Status refuse_if_failed(const std::string& what) {
    if (!failed_.load()) return ok_status();
    std::lock_guard<std::mutex> lock(failure_mu_);
    return unavailable(what + ": the communicator is aborted after an earlier failure (" +
                       failure_ + ")");
  }

  MPI_Comm comm_;     // the stream collectives
  MPI_Comm control_;  // host_all_gather
  const int rank_;
  const int size_;
  const int local_rank_;
  const std::chrono::milliseconds timeout_;
  // fp32 copies of a 16-bit or byte sum's buffers; used by one collective at a time.
  std::vector<float> wide_send_;
  std::vector<float> wide_recv_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> abort_called_{false};
  std::mutex failure_mu_;
  std::string failure_;  // the first failure, repeated by every later call
};

Result<std::unique_ptr<Communicator>> make(const CommOptions& options) {
  EBB_RETURN_IF_ERROR(init_mpi());
  MPI_Comm comms[2] = {MPI_COMM_NULL, MPI_COMM_NULL};
  int rank = 0;
  int size = 1;
  {
    MpiCallLock lock;
    for (MPI_Comm& comm : comms) {
      const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
      if (rc != MPI_SUCCESS) {
        return unavailable("mpi backend: MPI_Comm_dup(MPI_COMM_WORLD): " + mpi_error_string(rc));
      }
      MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    }
    MPI_Comm_rank(comms[0], &rank);
    MPI_Comm_size(comms[0], &size);
  }
  const RankEnv env = rank_env_from_environment();
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(
      comms[0], comms[1], rank, size, env.local_rank, options.timeout));
}

}  // namespace
}  // namespace ebb

extern "C" __attribute__((visibility("default"))) ebb::Communicator* ebb_make_mpi_communicator(
    int abi, const ebb::CommOptions* options, ebb::Status* error) {
  if (abi != ebb::kMpiPluginAbi) {
    *error = ebb::unavailable("mpi backend: " + std::string(ebb::kMpiPluginFile) +
                              " speaks plugin ABI " + std::to_string(ebb::kMpiPluginAbi) +
                              ", the program " + std::to_string(abi) + "; rebuild them together");
    return nullptr;
  }
  ebb::Result<std::unique_ptr<ebb::Communicator>> comm = ebb::make(*options);
  if (!comm.ok()) {
    *error = comm.status();
    return nullptr;
  }
  return std::move(comm).value().release();
}
