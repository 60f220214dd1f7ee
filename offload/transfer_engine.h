// TransferEngine: the one path by which tensor bytes move between the device, pinned host memory
// and the NVMe tier, asynchronously, each move with a deadline, and a handle that tells a waiter
// when it is done.
//
// Device<->host copies run on two copy streams, one per direction (a lane each), so a swap-out
// and a copy back overlap each other and the compute stream. A lane keeps at most
// `copies_in_flight` copies on its stream; further requests wait in the lane's queue, earliest
// deadline first (then higher priority, then first come), and the lane's dispatcher thread
// issues the next one as soon as a copy ahead of it completes. So a prefetch needed at op 5,
// asked for after one needed at op 9, overtakes it when the link is busy. A request whose
// deadline is TransferDeadline::now() (a swap-out, a copy back an op waits for) is issued when
// it is made, ahead of everything queued. On a sim device every copy is issued when it is made:
// its clock moves only when the host waits, so a thread that waits for copies would move it.
//
// NVMe requests (host->NVMe, NVMe->host, device->NVMe, NVMe->device) run on the I/O thread,
// earliest deadline first too. Device<->NVMe moves are pipelined through the tier's registered
// staging buffers: block k crosses the device link (as a copy of the lane, with the request's
// deadline) while blocks k+1.. are on their way from or to the disk. So host and NVMe traffic
// share one scheduler and one stream per direction.
//
// Ordering: a request's `after` stream (optional) orders it after the work queued on that stream
// when the request is made (an event is recorded there then): a swap-out waits for the tensor's
// writer, a copy back for the previous user of the block it fills. A copy's `after_copy` orders
// it after another transfer (a copy back after the swap-out that filled its host buffer).
//
// Waiting: Transfer::wait() blocks the host on the copy's event or a condition variable, never
// spins (on cuda, cudaEventSynchronize waits as the device's schedule flags say).
// TransferEngine::stream_wait() makes a stream wait for a copy instead, issuing it first if it
// is still queued. Cancelling: Transfer::cancel() on a request that has not been issued removes
// it (it will never touch its buffers); on one that has, it waits for the end. Either way, once
// cancel() returns the request touches nothing, so a prefetch whose tensor was freed can be
// cancelled safely.
//
// Collectives (ZeRO stage 3's parameter all-gathers) run on a third lane, the communication
// lane: collective() launches a kernel there, after the `after` stream's work, and the request
// is a Transfer like a copy (waited for, stream_wait()ed, with a completion event). The lane
// issues every request when it is made, in request order, and never reorders: every rank of a
// data-parallel job must run the same collectives in the same order, so no deadline, no
// expediting. Its stream is created on the first request.
//
// Ownership: owns its streams, events and threads; references the Device and the NvmeTier
// (optional), which must outlive it. The destructor cancels what has not been issued and joins.
// Thread safety: thread-safe; Transfer handles may be waited on from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kernels/device.h"
#include "kernels/event_pool.h"
#include "kernels/status.h"
#include "offload/nvme_tier.h"

namespace ebb {

// When a request's bytes are needed, and how urgent it is among requests due at the same op.
struct TransferDeadline {
  // The op by which the bytes must have arrived; lower runs first.
  std::int64_t op_index = 0;
  int priority = 0;  // among equal deadlines, higher runs first

  // Issued when requested, ahead of everything queued: the caller is about to wait for it.
  static constexpr TransferDeadline now() {
    return {.op_index = std::numeric_limits<std::int64_t>::min(), .priority = 0};
  }
  bool is_now() const { return op_index == std::numeric_limits<std::int64_t>::min(); }
};

enum class TransferKind : std::uint8_t {
  kDeviceToHost,
  kHostToDevice,
  kHostToNvme,
  kNvmeToHost,
  kDeviceToNvme,
  kNvmeToDevice,
  kCollective,  // a kernel on the communication lane (collective())
};

struct TransferOptions {
  // Copies a lane keeps on its stream at once; the rest wait in its queue, earliest deadline
  // first. Two keep the stream busy while the dispatcher wakes for the next. 0: every copy is
  // issued when it is requested (no dispatcher thread); always so on a sim device.
  std::size_t copies_in_flight = 2;
};

class TransferEngine;
class Transfer;
struct CopyLane;  // one direction of the device link (transfer_engine.cc)

// Heap order of the transfer queues: true when `a` runs after `b` (later deadline, then lower
// priority, then requested later). Reads fields fixed before the transfer was queued.
struct RunsLater {
  bool operator()(const std::shared_ptr<Transfer>& a, const std::shared_ptr<Transfer>& b) const;
};

// One request's handle, shared by the caller and the engine.
class Transfer {
 public:
  ~Transfer();
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  // Blocks until the request completed (or was cancelled); returns its Status. A queued copy is
  // waited for in its turn (TransferEngine::stream_wait issues it at once). kFailedPrecondition
  // for a cancelled request.
  Status wait();
  // True once the request completed or was cancelled.
  bool done() const;
  // See the file comment. Returns true when the request was removed before it was issued.
  bool cancel();
  // cancel() that never waits: removes a queued copy (true); false for anything else.
  bool cancel_if_queued();
  // For host/device->NVMe requests, after wait() returned OK: the extent written.
  ExtentId extent() const;
  // The order in which NVMe requests finished (1, 2, ...); 0 for copies and unfinished ones.
  std::uint64_t finish_order() const;
  // The order in which a lane issued its copies to its stream (1, 2, ..., per lane): the order
  // in which they complete; 0 while queued, and for NVMe requests.
  std::uint64_t issue_order() const;
  // A copy's completion event, recorded on its lane's stream after the copy. REQUIRES: a copy
  // that has been issued (issue_order() > 0). For measuring arrival against another event.
  Event& completion() const { return *event_; }
  TransferKind kind() const { return kind_; }

 private:
  friend class TransferEngine;
  friend struct CopyLane;
  friend struct RunsLater;
  enum class State : std::uint8_t { kQueued, kIssued, kRunning, kDone };

  Transfer(TransferKind kind, std::shared_ptr<EventPool> events)
      : kind_(kind), events_(std::move(events)) {}
  void finish(Status status, ExtentId extent, std::uint64_t order);

  const TransferKind kind_;
  const std::shared_ptr<EventPool> events_;  // where event_ and after_event_ go back
  // Copies: completes when the copy has. NVMe requests: the `after` stream's work.
  Event* event_ = nullptr;
  // Copies: recorded on the `after` stream when the request was made; null without one.
  Event* after_event_ = nullptr;
  // Copies: an event of another request's the copy waits for (borrowed: the staging copies of
  // an NVMe request wait for its `after` event), and a transfer to wait for (owned).
  Event* borrowed_after_ = nullptr;
  std::shared_ptr<Transfer> after_copy_;
  CopyLane* lane_ = nullptr;  // copies: the lane that issues it

  // What the request does (set at creation, read by the thread that carries it out).
  Kernel kernel_;                     // a collective: launched instead of a copy
  std::chrono::nanoseconds cost_{0};  // its modelled cost
  std::string tensor_;
  void* dst_ = nullptr;
  const void* src_ = nullptr;
  std::size_t bytes_ = 0;
  ExtentId source_extent_ = kNoExtent;
  TransferDeadline deadline_;
  std::uint64_t sequence_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kQueued;  // GUARDED_BY(mu_)
  Status status_;                 // GUARDED_BY(mu_)
  ExtentId extent_ = kNoExtent;   // GUARDED_BY(mu_)
  std::uint64_t order_ = 0;       // GUARDED_BY(mu_): finish order (NVMe) or issue order (copy)
};

// Counters of the copy lanes since the engine was created.
struct TransferStats {
  std::int64_t copies = 0;         // device<->host copies requested
  std::int64_t queued_copies = 0;  // of those, held in a lane's queue before being issued
  std::int64_t expedited = 0;      // queued copies issued early because a stream waited for one
};

class TransferEngine {
 public:
  // nvme may be null: then only the device<->host copies are available.
  static Result<std::unique_ptr<TransferEngine>> create(Device& device, NvmeTier* nvme,
                                                        TransferOptions options = {});
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // Device<->host through the lanes. REQUIRES: the buffers stay valid until the transfer is
  // done or cancelled. `after` and `after_copy` may be null.
  Result<std::shared_ptr<Transfer>> copy_to_host(
      void* host, const void* device_src, std::size_t bytes, Stream* after,
      TransferDeadline deadline = TransferDeadline::now(),
      std::shared_ptr<Transfer> after_copy = nullptr);
  Result<std::shared_ptr<Transfer>> copy_to_device(
      void* device_dst, const void* host, std::size_t bytes, Stream* after,
      TransferDeadline deadline = TransferDeadline::now(),
      std::shared_ptr<Transfer> after_copy = nullptr);
  // Makes `stream` wait for the copy `t` (its later work runs after the copy): issues `t` now if
  // it is still queued. A cancelled copy needs no wait. REQUIRES: `t` is a copy of this engine.
  Status stream_wait(Stream& stream, Transfer& t);

  // NVMe requests on the I/O thread. `tensor` names the bytes in the tier and in errors.
  // REQUIRES: an NVMe tier; the buffers stay valid until the transfer is done or cancelled.
  Result<std::shared_ptr<Transfer>> host_to_nvme(std::string_view tensor, const void* host,
                                                 std::size_t bytes, TransferDeadline deadline);
  Result<std::shared_ptr<Transfer>> nvme_to_host(ExtentId extent, void* host, std::size_t bytes,
                                                 TransferDeadline deadline);
  Result<std::shared_ptr<Transfer>> device_to_nvme(std::string_view tensor, const void* device_src,
                                                   std::size_t bytes, Stream* after,
                                                   TransferDeadline deadline);
  Result<std::shared_ptr<Transfer>> nvme_to_device(ExtentId extent, void* device_dst,
                                                   std::size_t bytes, Stream* after,
                                                   TransferDeadline deadline);

  // Launches `kernel` on the communication lane now, after the work queued on `after` (may be
  // null), with `cost` for a sim device's clock (Stream::launch). REQUIRES: whatever the kernel
  // touches stays valid until the transfer is done. `name` names it in errors.
  Result<std::shared_ptr<Transfer>> collective(std::string_view name, Kernel kernel,
                                               std::chrono::nanoseconds cost, Stream* after);

  // Issues every queued copy, then waits until the lanes' streams (the communication lane's
  // too) have drained; returns the first stream error. NVMe requests are not waited for.
  Status synchronize();

  NvmeTier* nvme() const { return nvme_; }
  // The lanes' streams, for a caller that frees a block whose last use was a copy on one
  // (CachingAllocator::free(ptr, stream)). Enqueue nothing else on them.
  Stream& device_to_host_stream();
  Stream& host_to_device_stream();
  TransferStats stats() const;

 private:
  TransferEngine(Device& device, NvmeTier* nvme);

  // A copy on `lane`, issued now or queued (see the file comment).
  Result<std::shared_ptr<Transfer>> copy(CopyLane& lane, TransferKind kind, void* dst,
                                         const void* src, std::size_t bytes, Stream* after,
                                         Event* borrowed_after, TransferDeadline deadline,
                                         std::shared_ptr<Transfer> after_copy);
  Result<std::shared_ptr<Transfer>> enqueue_nvme(std::shared_ptr<Transfer> transfer, Stream* after);
  void io_loop();
  Status run_nvme(Transfer& t, ExtentId& written);
  // One block of a device<->NVMe request through `lane`, waited for.
  Status staged_copy(CopyLane& lane, Transfer& request, void* dst, const void* src,
                     std::size_t bytes);

  Device& device_;
  NvmeTier* const nvme_;
  std::shared_ptr<EventPool> events_;
  std::unique_ptr<CopyLane> to_host_;
  std::unique_ptr<CopyLane> to_device_;
  std::unique_ptr<CopyLane> comm_;  // its stream is made by the first collective()

  mutable std::mutex mu_;
  std::condition_variable work_;
  // GUARDED_BY(mu_): queued NVMe requests, kept as a heap, earliest deadline at the front.
  std::vector<std::shared_ptr<Transfer>> queue_;
  std::uint64_t next_sequence_ = 0;  // GUARDED_BY(mu_): request order, copies and NVMe alike
  std::uint64_t finished_ = 0;       // GUARDED_BY(mu_)
  bool stopping_ = false;            // GUARDED_BY(mu_)
  TransferStats stats_;              // GUARDED_BY(mu_)
  std::thread io_thread_;
};

}  // namespace ebb
