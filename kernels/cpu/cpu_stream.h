// CpuStream: the cpu backend's Stream, a worker thread that runs a FIFO queue of device work in
// order. Also CpuLink, the modelled copy link its copies are throttled by, and StreamSet, the
// live streams of one device.
//
// Work (copies, memsets, kernels, event records and waits) is checked when it is enqueued and
// runs later on the worker. A kernel that throws leaves a sticky error that the next
// synchronize() returns; work enqueued after it still runs.
//
// The host threads that enqueue and the worker never meet on a lock per op: producers serialise
// among themselves with enqueue_mu_ and push onto a lock-free single-consumer queue
// (SpscQueue), and the worker pops from it and publishes its progress in an atomic count. mu_ is
// taken by the worker only to sleep, to record an error, to complete an event's record point
// (so that stream and event state agree), or to wake a thread in synchronize().
//
// Waking the worker costs a futex syscall, microseconds on a VM, which is more than a small
// kernel takes: so a worker that runs out of work spins for kIdleSpin (looking at the queue's
// push count every kSpinPollInterval) before it sleeps, and enqueue() notifies only a worker that
// is asleep. A host thread launching a chain of small ops thus keeps the worker awake and never
// pays for a wake-up; an idle stream costs kIdleSpin of one core each time it runs dry.
//
// Thread safety: all three classes are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "kernels/cpu/cpu_event.h"
#include "kernels/cpu/cpu_memory.h"
#include "kernels/cpu/spsc_queue.h"
#include "kernels/device.h"

namespace ebb {

// One direction of a modelled copy link (host-to-device or device-to-host), shared by every
// stream of a device: like a GPU's copy engine, it carries one copy at a time, so copies on two
// streams in the same direction take turns instead of each getting the full bandwidth.
class CpuLink {
 public:
  explicit CpuLink(LinkModel model) : model_(model) {}

  bool throttled() const {
    return model_.bytes_per_second > 0 || model_.latency > std::chrono::nanoseconds::zero();
  }
  // Books the link for a copy of `bytes` starting no earlier than now; returns when that copy
  // completes: latency + bytes / bandwidth after the link is free.
  std::chrono::steady_clock::time_point book(std::size_t bytes);

 private:
  const LinkModel model_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point free_at_;  // GUARDED_BY(mu_)
};

class CpuStream;

// The live streams of one device, so that Device::synchronize can drain them all.
class StreamSet {
 public:
  void add(CpuStream* stream);
  void remove(CpuStream* stream);
  std::size_t size() const;
  // Drains every live stream; returns the first sticky error among them (clearing each).
  // REQUIRES: not called from a kernel (it would wait for itself).
  Status synchronize_all();

 private:
  // Held while draining, so that a stream cannot be destroyed under synchronize_all.
  mutable std::mutex mu_;
  std::set<CpuStream*> streams_;  // GUARDED_BY(mu_)
};

// Owned by the device (the default stream) or by the caller of create_stream; must be destroyed
// before its device. Destruction drains the queue, then joins the worker.
class CpuStream final : public Stream {
 public:
  // How long a worker that ran out of work polls for more before it sleeps on work_cv_.
  static constexpr std::chrono::microseconds kIdleSpin{50};
  // How often a worker that ran out of work looks at the queue while it spins. Not at every
  // pause: each look pulls the line the host writes to enqueue, and looking again only once
  // some ops have piled up hands them over a batch per look rather than a cache miss per op.
  static constexpr std::chrono::nanoseconds kSpinPollInterval{500};

  static constexpr std::size_t kCacheLineBytes = 64;  // x86 and most arm64

  // `device` identifies the owning device (for event checks); `memory`, the links and `streams`
  // belong to it and outlive this stream. Registers itself in `streams`.
  CpuStream(std::uint32_t id, const void* device, const CpuMemory& memory, CpuLink& host_to_device,
            CpuLink& device_to_host, StreamSet& streams);
  ~CpuStream() override;
  CpuStream(const CpuStream&) = delete;
  CpuStream& operator=(const CpuStream&) = delete;

  std::uint32_t id() const override { return id_; }
  Status copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) override;
  Status memset_async(void* dst, std::uint8_t value, std::size_t bytes) override;
  Status launch(Kernel kernel) override;
  Status record(Event& event) override;
  Status wait(Event& event) override;
  // Returns, and clears, the first error raised on this stream since the last synchronize().
  Status synchronize() override;
  Result<bool> query() override;

 private:
  // One unit of queued work, run by the worker: a kernel, or else `run`, or else nothing (a
  // bare record).
  struct Op {
    Kernel kernel;                // a throw becomes the sticky error
    std::function<Status()> run;  // a non-OK result becomes the sticky error
    // Completed together with the op's count, so that event and stream state agree (an event
    // complete, with nothing enqueued after it, means the stream is drained, as in CUDA).
    std::shared_ptr<RecordPoint> record_point;
  };

  void enqueue(Op op);
  void enqueue_work(std::function<Status()> run) { enqueue(Op{Kernel(), std::move(run), nullptr}); }
  void run_worker();
  // Runs one op on the worker; returns what becomes the sticky error.
  Status run_op(Op& op) const;
  // Publishes that the worker has finished `done` ops, the last of them `op` with `status`.
  void complete(Op& op, Status status, std::uint64_t done);
  // Returns true once more than `done` ops were pushed; false when stopping_ and none is left.
  // Spins for kIdleSpin without a lock, then sleeps on work_cv_.
  bool wait_for_work(std::uint64_t done);

  const std::uint32_t id_;
  const void* const device_;
  const CpuMemory& memory_;
  CpuLink& host_to_device_;
  CpuLink& device_to_host_;
  StreamSet& streams_;

  // Serialises producers (push is single-producer); the worker never takes it.
  std::mutex enqueue_mu_;
  SpscQueue<Op> queue_;  // pushed under enqueue_mu_; taken by the worker only
  // Set by the destructor under enqueue_mu_, after which nothing is pushed.
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable work_cv_;  // the worker sleeps here for work or stopping_
  std::condition_variable idle_cv_;  // synchronize() waits here for completed_
  // The worker is about to sleep, or sleeps, on work_cv_; enqueue() then wakes it. Read by every
  // enqueue and written only when the worker sleeps: on a line of its own, so that the worker's
  // per-op writes do not make each enqueue miss on it.
  alignas(kCacheLineBytes) std::atomic<bool> worker_asleep_{false};
  // Threads in synchronize(); the worker wakes them only when there are any.
  std::atomic<int> idle_waiters_{0};
  // Ops the worker has finished; written by the worker only, with error_ and record points set
  // first (under mu_ for those, so that query() under mu_ sees them together).
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> completed_{0};
  Status error_;  // GUARDED_BY(mu_); first error since last synchronize()

  std::thread worker_;  // last: started once everything above is initialised
};

}  // namespace ebb
