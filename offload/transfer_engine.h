// TransferEngine: moves tensor bytes between the device, pinned host memory and the NVMe tier,
// asynchronously, and tells a waiter when each move is done.
//
// Device<->host copies run on two dedicated copy streams, one per direction, so a swap-out and
// a swap-in overlap each other and the compute stream. NVMe requests (host->NVMe, NVMe->host,
// device->NVMe, NVMe->device) run on the engine's I/O thread, taken earliest deadline first
// (then higher priority, then first come): a deadline is the op index by which the bytes must
// be where they are going, so prefetches finish in the order they are needed when bandwidth
// allows. Device<->NVMe moves are pipelined through the tier's registered staging buffers: block
// k crosses the device link while blocks k+1.. are on their way from or to the disk.
//
// A request's `after` stream (optional) orders it after the work queued on that stream so far
// (an event is recorded there when the request is made): a swap-out waits for the tensor's
// writer, a swap-in for the previous user of the block it fills.
//
// Waiting: Transfer::wait() blocks on the copy's Event or on a condition variable, never spins.
// Cancelling: Transfer::cancel() on a request that has not started removes it (it will never
// touch its buffers); on one that has, it waits for the end. Either way, once cancel() returns
// the request touches nothing, so a prefetch whose tensor was freed can be cancelled safely.
//
// Ownership: owns its streams, events and I/O thread; references the Device and the NvmeTier
// (optional), which must outlive it. The destructor cancels what has not started and joins.
// Thread safety: thread-safe; Transfer handles may be waited on from any thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kernels/device.h"
#include "kernels/status.h"
#include "offload/nvme_tier.h"

namespace ebb {

// When a request's bytes are needed, and how urgent it is among requests due at the same op.
struct TransferDeadline {
  std::int64_t op_index = 0;  // the op by which the bytes must have arrived; lower runs first
  int priority = 0;           // among equal deadlines, higher runs first
};

enum class TransferKind : std::uint8_t {
  kDeviceToHost,
  kHostToDevice,
  kHostToNvme,
  kNvmeToHost,
  kDeviceToNvme,
  kNvmeToDevice,
};

class TransferEngine;

// One request's handle, shared by the caller and the engine.
class Transfer {
 public:
  // Blocks until the request completed (or was cancelled); returns its Status. kFailedPrecondition
  // for a cancelled request.
  Status wait();
  // True once the request completed or was cancelled.
  bool done() const;
  // See the file comment. Returns true when the request was removed before it started.
  bool cancel();
  // For host/device->NVMe requests, after wait() returned OK: the extent written.
  ExtentId extent() const;
  // The order in which NVMe requests finished (1, 2, ...); 0 for copies and unfinished ones.
  std::uint64_t finish_order() const;
  TransferKind kind() const { return kind_; }

 private:
  friend class TransferEngine;
  enum class State : std::uint8_t { kQueued, kRunning, kDone };

  explicit Transfer(TransferKind kind) : kind_(kind) {}
  void finish(Status status, ExtentId extent, std::uint64_t order);

  const TransferKind kind_;
  // Copies: completes when the copy has. NVMe requests: the `after` stream's work.
  std::unique_ptr<Event> event_;

  // What an NVMe request does (set at creation, read by the I/O thread).
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
  bool cancelled_ = false;        // GUARDED_BY(mu_)
  Status status_;                 // GUARDED_BY(mu_)
  ExtentId extent_ = kNoExtent;   // GUARDED_BY(mu_)
  std::uint64_t order_ = 0;       // GUARDED_BY(mu_)
};

class TransferEngine {
 public:
  // nvme may be null: then only the device<->host copies are available.
  static Result<std::unique_ptr<TransferEngine>> create(Device& device, NvmeTier* nvme);
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // Device<->host on the dedicated copy streams. REQUIRES: the buffers stay valid until the
  // transfer is done. `after` may be null.
  Result<std::shared_ptr<Transfer>> copy_to_host(void* host, const void* device_src,
                                                 std::size_t bytes, Stream* after);
  Result<std::shared_ptr<Transfer>> copy_to_device(void* device_dst, const void* host,
                                                   std::size_t bytes, Stream* after);

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

  NvmeTier* nvme() const { return nvme_; }
  Stream& device_to_host_stream() { return *d2h_; }
  Stream& host_to_device_stream() { return *h2d_; }

 private:
  TransferEngine(Device& device, NvmeTier* nvme) : device_(device), nvme_(nvme) {}

  Result<std::shared_ptr<Transfer>> copy(TransferKind kind, void* dst, const void* src,
                                         std::size_t bytes, Stream* after);
  // Heap order of queue_: true when `a` runs after `b` (later deadline, then lower priority,
  // then queued later). Reads fields fixed before the transfer was queued.
  static bool runs_later(const std::shared_ptr<Transfer>& a, const std::shared_ptr<Transfer>& b);
  Result<std::shared_ptr<Transfer>> enqueue(std::shared_ptr<Transfer> transfer, Stream* after);
  void io_loop();
  Status run_nvme(Transfer& t, ExtentId& written);
  // Waits for `after`'s event on `stream` (when there is one), then does one staged copy.
  Status staged_copy(Stream& stream, void* dst, const void* src, std::size_t bytes, CopyKind kind);

  Device& device_;
  NvmeTier* const nvme_;
  std::unique_ptr<Stream> d2h_;
  std::unique_ptr<Stream> h2d_;
  std::unique_ptr<Event> staged_;  // the I/O thread's: completion of its last staged copy

  std::mutex mu_;
  std::condition_variable work_;
  // GUARDED_BY(mu_): queued NVMe requests, kept as a heap, earliest deadline at the front.
  std::vector<std::shared_ptr<Transfer>> queue_;
  std::uint64_t next_sequence_ = 0;  // GUARDED_BY(mu_)
  std::uint64_t finished_ = 0;       // GUARDED_BY(mu_)
  bool stopping_ = false;            // GUARDED_BY(mu_)
  std::thread io_thread_;
};

}  // namespace ebb
