// The nccl backend (nccl_communicator.h). <nccl.h> is used for its types only; every call goes
// through a pointer from dlsym.
#include "kernels/cuda/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <glob.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/comm/comm_backend.h"
#include "kernels/cuda/cuda_call.h"
#include "kernels/cuda/cuda_device.h"

namespace ebb {
namespace {

// The NCCL entry points used, at their nccl.h signatures.
struct NcclApi {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclReduceScatter) reduce_scatter = nullptr;
  decltype(&ncclAllGather) all_gather = nullptr;
  decltype(&ncclBroadcast) broadcast = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) recv = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclCommGetAsyncError) get_async_error = nullptr;
  decltype(&ncclCommAbort) comm_abort = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  std::string error;  // why loading failed; empty when every pointer above is set
};

// nccl_communicator.h's search order.
std::vector<std::string> nccl_candidates() {
  std::vector<std::string> candidates;
  if (const char* dirs = std::getenv("EBB_NCCL_PATH"); dirs != nullptr) {
    const std::string all(dirs);
    for (std::size_t begin = 0; begin <= all.size();) {
      std::size_t end = all.find(':', begin);
      if (end == std::string::npos) end = all.size();
      if (end > begin) {
        const std::string dir = all.substr(begin, end - begin);
        candidates.push_back(dir + "/libnccl.so.2");
        candidates.push_back(dir + "/libnccl.so");
      }
      begin = end + 1;
    }
  }
  candidates.emplace_back("libnccl.so.2");
  candidates.emplace_back("libnccl.so");
  std::vector<std::string> patterns = {
      "/usr/local/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so.2",
      "/usr/local/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
      "/usr/lib/python3/dist-packages/nvidia/nccl/lib/libnccl.so.2",
      "/usr/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
  };
  for (const char* prefix : {"VIRTUAL_ENV", "HOME"}) {
    const char* root = std::getenv(prefix);
    if (root == nullptr || *root == '\0') continue;
    const std::string lib = std::string(prefix) == "HOME" ? "/.local/lib" : "/lib";
    patterns.push_back(root + lib + "/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2");
  }
  if (const char* conda = std::getenv("CONDA_PREFIX"); conda != nullptr && *conda != '\0') {
    patterns.push_back(std::string(conda) + "/lib/libnccl.so.2");
  }
  for (const std::string& pattern : patterns) {
    glob_t found{};
    if (glob(pattern.c_str(), 0, nullptr, &found) == 0) {
      for (std::size_t i = 0; i < found.gl_pathc; i++) candidates.emplace_back(found.gl_pathv[i]);
    }
    globfree(&found);
  }
  return candidates;
}

template <typename Fn>
bool load_symbol(void* library, const char* name, Fn& fn, std::string& error) {
  void* address = dlsym(library, name);
  if (address == nullptr) {
    error = std::string("nccl backend: the loaded libnccl has no ") + name;
    return false;
  }
  fn = reinterpret_cast<Fn>(address);
  return true;
}

NcclApi load_nccl() {
  NcclApi api;
  void* library = nullptr;
  std::string tried;
  for (const std::string& path : nccl_candidates()) {
    // Never dlclose'd: communicators on other threads may outlive any point where it is safe.
    library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library != nullptr) break;
    const char* why = dlerror();
    tried += "\n  " + path + ": " + (why != nullptr ? why : "dlopen failed");
  }
  if (library == nullptr) {
    api.error =
        "nccl backend: could not load libnccl (set EBB_NCCL_PATH to the directory "
        "holding libnccl.so.2, or pip install nvidia-nccl-cu12). Tried:" +
        tried;
    return api;
  }
  // On a missing symbol api.error names it, and nccl_api() refuses the whole library.
  (void)(load_symbol(library, "ncclGetUniqueId", api.get_unique_id, api.error) ||
         !load_symbol(library, "ncclCommInitRank", api.comm_init_rank, api.error) ||
         !load_symbol(library, "ncclAllReduce", api.all_reduce, api.error) ||
         !load_symbol(library, "ncclReduceScatter", api.reduce_scatter, api.error) ||
         !load_symbol(library, "ncclAllGather", api.all_gather, api.error) ||
         !load_symbol(library, "ncclBroadcast", api.broadcast, api.error) ||
         !load_symbol(library, "ncclSend", api.send, api.error) ||
         !load_symbol(library, "ncclRecv", api.recv, api.error) ||
         !load_symbol(library, "ncclGroupStart", api.group_start, api.error) ||
         !load_symbol(library, "ncclGroupEnd", api.group_end, api.error) ||
         !load_symbol(library, "ncclCommGetAsyncError", api.get_async_error, api.error) ||
         !load_symbol(library, "ncclCommAbort", api.comm_abort, api.error) ||
         !load_symbol(library, "ncclCommDestroy", api.comm_destroy, api.error) ||
         !load_symbol(library, "ncclGetErrorString", api.error_string, api.error));
  return api;
}

Result<const NcclApi*> nccl_api() {
  static const NcclApi kApi = load_nccl();  // C++ static init: once, thread-safe
  if (!kApi.error.empty()) return unavailable(kApi.error);
  return &kApi;
}

ncclDataType_t nccl_type(CommDType t) {
  switch (t) {
    case CommDType::kF32:
      return ncclFloat32;
    case CommDType::kBF16:
      return ncclBfloat16;
    case CommDType::kF16:
      return ncclFloat16;
    case CommDType::kByte:
      return ncclUint8;
  }
  return ncclUint8;
}

// The GPU behind a cuda Device: the device of a pointer it allocates.
Result<int> device_ordinal(Device& device) {
  EBB_ASSIGN_OR_RETURN(void* probe, device.allocate(sizeof(float)));
  cudaPointerAttributes attributes{};
  const Status status =
      cuda_status(cudaPointerGetAttributes(&attributes, probe), {"cudaPointerGetAttributes"});
  EBB_RETURN_IF_ERROR(device.free(probe));
  EBB_RETURN_IF_ERROR(status);
  return attributes.device;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const NcclApi& api, ncclComm_t comm, float* scratch, int gpu, const RankEnv& env,
                   std::chrono::milliseconds timeout, std::unique_ptr<Communicator> bootstrap)
      : api_(api),
        comm_(comm),
        scratch_(scratch),
        gpu_(gpu),
        rank_(env.rank),
        size_(env.size),
        local_rank_(env.local_rank),
        timeout_(timeout),
        bootstrap_(std::move(bootstrap)) {
    if (const char* inject = std::getenv("EBB_NCCL_INJECT_ERROR"); inject != nullptr) {
      inject_at_ = std::strtoll(inject, nullptr, 10);
    }
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    {
      // The watchdog retires what is in flight, or aborts it at its deadline.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return pending_.empty() || failed_.load(); });
      stopping_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    (void)cudaSetDevice(gpu_);
    if (!comm_aborted_.load()) api_.comm_destroy(comm_);
    for (const Pending& p : pending_) (void)cudaEventDestroy(p.event);
    for (cudaEvent_t event : free_events_) (void)cudaEventDestroy(event);
    (void)cudaFree(scratch_);
  }

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  CommBackend backend() const override { return CommBackend::kNccl; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }

  Status all_reduce(const LaunchContext& ctx, const void* send, void* recv, std::size_t n,
                    CommDType t) override {
    return run(CommOp::kAllReduce, ctx, send, recv, n, t, 0, "ncclAllReduce", [&](auto stream) {
      return api_.all_reduce(send, recv, n, nccl_type(t), ncclSum, comm_, stream);
    });
  }

  Status reduce_scatter(const LaunchContext& ctx, const void* send, void* recv,
                        std::size_t recv_count, CommDType t) override {
    return run(CommOp::kReduceScatter, ctx, send, recv, recv_count, t, 0, "ncclReduceScatter",
               [&](auto stream) {
                 return api_.reduce_scatter(send, recv, recv_count, nccl_type(t), ncclSum, comm_,
                                            stream);
               });
  }

  Status all_gather(const LaunchContext& ctx, const void* send, void* recv, std::size_t send_count,
                    CommDType t) override {
    return run(CommOp::kAllGather, ctx, send, recv, send_count, t, 0, "ncclAllGather",
               [&](auto stream) {
                 return api_.all_gather(send, recv, send_count, nccl_type(t), comm_, stream);
               });
  }

  // Grouped point-to-point: chunk r of send to rank r, chunk r of recv from it.
  Status all_to_all(const LaunchContext& ctx, const void* send, void* recv, std::size_t n,
                    CommDType t) override {
    const std::size_t chunk_bytes = n * comm_dtype_bytes(t);
    return run(
        CommOp::kAllToAll, ctx, send, recv, n, t, 0, "ncclSend/ncclRecv group", [&](auto stream) {
          ncclResult_t result = api_.group_start();
          for (int r = 0; r < size_ && result == ncclSuccess; r++) {
            const std::size_t offset = static_cast<std::size_t>(r) * chunk_bytes;
            result = api_.send(static_cast<const char*>(send) + offset, n, nccl_type(t), r, comm_,
                               stream);
            if (result == ncclSuccess) {
              result =
                  api_.recv(static_cast<char*>(recv) + offset, n, nccl_type(t), r, comm_, stream);
            }
          }
          const ncclResult_t ended = api_.group_end();
          return result != ncclSuccess ? result : ended;
        });
  }

  Status broadcast(const LaunchContext& ctx, void* buffer, std::size_t n, CommDType t,
                   int root) override {
    return run(CommOp::kBroadcast, ctx, nullptr, buffer, n, t, root, "ncclBroadcast",
               [&](auto stream) {
                 return api_.broadcast(buffer, buffer, n, nccl_type(t), root, comm_, stream);
               });
  }

  // A one-element all_reduce over the communicator's scratch: no rank passes it before all
  // have reached it.
  Status barrier(const LaunchContext& ctx) override {
    return run(CommOp::kBarrier, ctx, nullptr, nullptr, 0, CommDType::kF32, 0, "ncclAllReduce",
               [&](auto stream) {
                 return api_.all_reduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream);
               });
  }

  Status host_all_gather(const void* send, void* recv, std::size_t bytes) override {
    if (bootstrap_ != nullptr) return bootstrap_->host_all_gather(send, recv, bytes);
    if (bytes == 0) return ok_status();
    if (send == nullptr || recv == nullptr) {
      return invalid_argument("host_all_gather of " + std::to_string(bytes) +
                              " bytes on rank 0 of 1 (nccl): null buffer");
    }
    if (send != recv) std::memmove(recv, send, bytes);
    return ok_status();
  }

  void abort(std::string_view reason) override {
    if (abort_called_.exchange(true)) return;
    (void)fail_from_outside("aborted on rank " + std::to_string(rank_) + ": " +
                            std::string(reason));
    if (bootstrap_ != nullptr) bootstrap_->abort(reason);
  }

 private:
  // One collective launched, and the event after it that the watchdog watches.
  struct Pending {
    cudaEvent_t event;
    CommOp op;
    std::chrono::steady_clock::time_point deadline;
  };

  std::string words(CommOp op) const {
    return collective_words(op, CommBackend::kNccl, rank_, size_);
  }

  std::string nccl_words(ncclResult_t result) const {
    return std::string(api_.error_string(result)) + " (ncclResult_t " +
           std::to_string(static_cast<int>(result)) + ")";
  }

  // Checks, enqueues with `enqueue(stream)`, polls for an asynchronous error, hands the
  // collective to the watchdog, and counts it.
  template <typename Enqueue>
  Status run(CommOp op, const LaunchContext& ctx, const void* send, const void* recv, std::size_t n,
             CommDType t, int root, const char* call, Enqueue&& enqueue) {
    if (ctx.kind != DeviceKind::kCuda) {
      return invalid_argument(words(op) + ": not a cuda stream; nccl moves device memory");
    }
    EBB_RETURN_IF_ERROR(
        check_collective(op, CommBackend::kNccl, rank_, size_, send, recv, n, t, root));
    // Held while this thread uses comm_, so that the watchdog does not abort it meanwhile (unless
    // an enqueue blocks past the timeout: then it aborts anyway, which is what
    // ncclCommAbort is for).
    std::lock_guard<std::timed_mutex> comm_lock(comm_mu_);
    EBB_RETURN_IF_ERROR(refuse_if_failed(words(op)));
    if (n > 0 || op == CommOp::kBarrier) {
      EBB_RETURN_IF_ERROR(use_device(gpu_));
      auto* stream = static_cast<cudaStream_t>(ctx.native_stream);
      const ncclResult_t result = enqueue(stream);
      const std::int64_t index = launched_++;
      if (result != ncclSuccess) {
        return fail(words(op) + ": " + call + " failed: " + nccl_words(result));
      }
      EBB_RETURN_IF_ERROR(poll_async_error(words(op), index));
      EBB_RETURN_IF_ERROR(watch_after(op, stream));
    }
    count(op, textbook_bytes_sent(op, n, t, size_, rank_ == root));
    return ok_status();
  }

  // REQUIRES: comm_mu_ held.
  Status poll_async_error(const std::string& what, std::int64_t index) {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t result = api_.get_async_error(comm_, &async);
    if (result != ncclSuccess) {
      return fail(what + ": ncclCommGetAsyncError failed: " + nccl_words(result));
    }
    std::string injected;
    if (index >= 0 && index == inject_at_) {
      async = ncclInternalError;
      injected = " (injected by EBB_NCCL_INJECT_ERROR=" + std::to_string(inject_at_) + ")";
    }
    if (async == ncclSuccess || async == ncclInProgress) return ok_status();
    return fail(what + ": NCCL asynchronous error: " + nccl_words(async) + injected +
                "; a peer rank may have died");
  }

  // Records an event after the collective on `stream` for the watchdog.
  Status watch_after(CommOp op, cudaStream_t stream) {
    cudaEvent_t event = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_events_.empty()) {
        event = free_events_.back();
        free_events_.pop_back();
      }
    }
    if (event == nullptr) {
      EBB_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                                      {"cudaEventCreateWithFlags"}));
    }
    EBB_RETURN_IF_ERROR(cuda_status(cudaEventRecord(event, stream), {"cudaEventRecord"}));
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back({event, op, std::chrono::steady_clock::now() + timeout_});
    }
    cv_.notify_all();
    return ok_status();
  }

  // The watchdog thread: while collectives are in flight, every millisecond, polls the
  // asynchronous error and retires the completed ones in order; aborts at a deadline.
  void watch() {
    (void)cudaSetDevice(gpu_);
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (stopping_) return;
      if (pending_.empty() || failed_.load()) {
        cv_.wait(lock);
        continue;
      }
      lock.unlock();
      poll_pending();
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(1));
    }
  }

  void poll_pending() {
    {
      // A stream thread inside run() polls for itself; comm_ is not touched after an abort.
      std::unique_lock<std::timed_mutex> comm_lock(comm_mu_, std::try_to_lock);
      if (comm_lock.owns_lock() && !failed_.load() &&
          !poll_async_error("a collective in flight on rank " + std::to_string(rank_), -1).ok()) {
        return;
      }
    }
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      if (pending_.empty()) {
        cv_.notify_all();  // a destructor may be waiting for this
        return;
      }
      const Pending front = pending_.front();
      lock.unlock();
      const cudaError_t query = cudaEventQuery(front.event);
      if (query == cudaSuccess) {
        lock.lock();
        pending_.pop_front();
        free_events_.push_back(front.event);
        continue;
      }
      if (query != cudaErrorNotReady) {
        (void)fail_from_outside(words(front.op) + ": " +
                                cuda_status(query, {"cudaEventQuery"}).message());
      } else if (std::chrono::steady_clock::now() >= front.deadline) {
        (void)fail_from_outside(
            words(front.op) + ": not complete after " + std::to_string(timeout_.count()) +
            " ms (the watchdog, CommOptions::timeout); a peer rank may have died");
      }
      return;
    }
  }

  // Records the first failure, aborts the NCCL communicator once, and returns the failure.
  // REQUIRES: comm_mu_ held, or given up on (fail_from_outside).
  Status fail(std::string message) {
    {
      std::lock_guard<std::mutex> lock(failure_mu_);
      if (failure_.empty()) failure_ = message;
    }
    failed_.store(true);
    if (!comm_aborted_.exchange(true)) (void)api_.comm_abort(comm_);
    // Through mu_, so that a destructor between its check of failed_ and its wait gets the
    // wake-up.
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
    return unavailable(std::move(message));
  }

  // fail() from a thread other than a collective's (the watchdog, abort()): waits up to the
  // timeout for a collective's thread to leave comm_, then aborts regardless, since a thread
  // blocked in NCCL for that long waits for a dead peer, and ncclCommAbort (which NCCL allows
  // from another thread) is what ends that wait.
  Status fail_from_outside(std::string message) {
    std::unique_lock<std::timed_mutex> comm_lock(comm_mu_, std::defer_lock);
    (void)comm_lock.try_lock_for(timeout_);
    return fail(std::move(message));
  }

  Status refuse_if_failed(const std::string& what) {
    if (!failed_.load()) return ok_status();
    std::lock_guard<std::mutex> lock(failure_mu_);
    return unavailable(what + ": the communicator is aborted after an earlier failure (" +
                       failure_ + ")");
  }

  const NcclApi& api_;
  ncclComm_t comm_;
  float* scratch_;  // one float on the GPU, for barrier
  const int gpu_;
  const int rank_;
  const int size_;
  const int local_rank_;
  const std::chrono::milliseconds timeout_;
  std::unique_ptr<Communicator> bootstrap_;  // null with one rank
  std::int64_t inject_at_ = -1;              // EBB_NCCL_INJECT_ERROR
  std::int64_t launched_ = 0;                // collectives enqueued; by the stream's thread only

  std::mutex mu_;  // guards the three below and stopping_
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> free_events_;
  bool stopping_ = false;
  std::thread watchdog_;

  std::timed_mutex comm_mu_;  // held by whoever calls NCCL on comm_ (see run and fail)
  std::atomic<bool> failed_{false};
  std::atomic<bool> comm_aborted_{false};  // ncclCommAbort was called: comm_ is gone
  std::atomic<bool> abort_called_{false};
  std::mutex failure_mu_;
  std::string failure_;  // the first failure, repeated by every later call
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_nccl_communicator(
    Device& device, const CommOptions& options, const RankEnv& env,
    std::unique_ptr<Communicator> bootstrap) {
  const std::string where =
      "nccl backend on rank " + std::to_string(env.rank) + " of " + std::to_string(env.size);
  if (device.kind() != DeviceKind::kCuda) {
    return invalid_argument(where + ": " + device.name() + " is not a cuda device");
  }
  EBB_ASSIGN_OR_RETURN(const NcclApi* api, nccl_api());
  EBB_ASSIGN_OR_RETURN(const int gpu, device_ordinal(device));
  if (env.size > 1) {
    const int visible = cuda_device_count();
    if (env.local_rank >= visible) {
      return unavailable(where + ": local rank " + std::to_string(env.local_rank) +
                         " has no GPU of its own (" + std::to_string(visible) +
                         " visible); run at most that many ranks per node");
    }
    if (gpu != env.local_rank) {
      return invalid_argument(where + ": the Device is GPU " + std::to_string(gpu) +
                              ", the local rank's is GPU " + std::to_string(env.local_rank) +
                              "; create the Device with ordinal = local rank");
    }
    if (bootstrap == nullptr || bootstrap->size() != env.size || bootstrap->rank() != env.rank) {
      return invalid_argument(where +
                              ": several ranks need a bootstrap communicator of the same "
                              "ranks to share NCCL's unique id");
    }
  }
  EBB_RETURN_IF_ERROR(use_device(gpu));
  ncclUniqueId id{};
  if (env.rank == 0) {
    const ncclResult_t result = api->get_unique_id(&id);
    if (result != ncclSuccess) {
      return unavailable(where + ": ncclGetUniqueId failed: " + api->error_string(result));
    }
  }
  if (env.size > 1) {
    std::vector<char> ids(sizeof(id) * static_cast<std::size_t>(env.size));
    EBB_RETURN_IF_ERROR(bootstrap->host_all_gather(&id, ids.data(), sizeof(id)));
    std::memcpy(&id, ids.data(), sizeof(id));  // rank 0's
  }
  ncclComm_t comm = nullptr;
  const ncclResult_t result = api->comm_init_rank(&comm, env.size, id, env.rank);
  if (result != ncclSuccess) {
    return unavailable(where + ": ncclCommInitRank failed: " + api->error_string(result));
  }
  void* scratch = nullptr;
  const Status allocated =
      cuda_status(cudaMalloc(&scratch, sizeof(float)), {"cudaMalloc", sizeof(float)});
  if (!allocated.ok()) {
    (void)api->comm_destroy(comm);
    return allocated;
  }
  return std::unique_ptr<Communicator>(std::make_unique<NcclCommunicator>(
      *api, comm, static_cast<float*>(scratch), gpu, env, options.timeout, std::move(bootstrap)));
}

}  // namespace ebb
