#include "kernels/cpu/cpu_stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "kernels/cpu/cpu_event.h"
#include "kernels/cpu/memory_device.h"

namespace ebb {
namespace {

// Tells the core that this is a spin-wait loop (x86: pause), so that it yields the pipeline to
// a sibling hyperthread and does not flood the memory system with speculative loads.
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

std::chrono::steady_clock::time_point CpuLink::book(std::size_t bytes) {
  const auto busy = model_.transfer_time(static_cast<double>(bytes));
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  free_at_ = std::max(free_at_, now) + busy;
  return free_at_;
}

void StreamSet::add(CpuStream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.insert(stream);
}

void StreamSet::remove(CpuStream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(stream);
}

std::size_t StreamSet::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_.size();
}

Status StreamSet::synchronize_all() {
  std::lock_guard<std::mutex> lock(mu_);
  Status first;
  for (CpuStream* stream : streams_) {
    Status status = stream->synchronize();
    if (first.ok() && !status.ok()) first = std::move(status);
  }
  return first;
}

CpuStream::CpuStream(std::uint32_t id, const void* device, const CpuMemory& memory,
                     CpuLink& host_to_device, CpuLink& device_to_host, StreamSet& streams)
    : id_(id),
      device_(device),
      memory_(memory),
      host_to_device_(host_to_device),
      device_to_host_(device_to_host),
      streams_(streams) {
  worker_ = std::thread([this] { run_worker(); });
  streams_.add(this);
}

CpuStream::~CpuStream() {
  // Leave the set first: Device::synchronize may be draining this stream right now, and it
  // holds the set while it does.
  streams_.remove(this);
  {
    std::lock_guard<std::mutex> lock(enqueue_mu_);
    stopping_.store(true, std::memory_order_release);
  }
  // Through mu_: a worker that checked stopping_ before the store is waiting on work_cv_ by now.
  { std::lock_guard<std::mutex> lock(mu_); }
  work_cv_.notify_one();
  worker_.join();
}

void CpuStream::enqueue(Op op) {
  {
    std::lock_guard<std::mutex> lock(enqueue_mu_);
    EBB_CHECK(
        !stopping_.load(std::memory_order_relaxed),
        "work enqueued on cpu stream " + std::to_string(id_) + " while it is being destroyed");
    queue_.push(std::move(op));
  }
  // The push count is stored, and worker_asleep_ set, sequentially consistently: either the
  // worker sees this op before it sleeps or this sees the flag. Taking mu_ before notifying
  // makes sure a worker that has seen no op is waiting on work_cv_ (not between its check and
  // its wait), so the wake-up is not lost.
  if (worker_asleep_.load(std::memory_order_seq_cst)) {
    { std::lock_guard<std::mutex> lock(mu_); }
    work_cv_.notify_one();
  }
}

bool CpuStream::wait_for_work(std::uint64_t done) {
  const auto started = std::chrono::steady_clock::now();
  for (auto now = started; now - started < kIdleSpin;) {
    const auto next_poll = now + kSpinPollInterval;
    while ((now = std::chrono::steady_clock::now()) < next_poll) spin_pause();
    if (queue_.pushed() != done) return true;
    if (stopping_.load(std::memory_order_acquire)) break;
  }
  std::unique_lock<std::mutex> lock(mu_);
  bool more = true;
  for (;;) {
    worker_asleep_.store(true, std::memory_order_seq_cst);
    if (queue_.pushed() != done) break;
    // Once stopping_ is seen, nothing more is pushed: the count read after it is final.
    if (stopping_.load(std::memory_order_acquire)) {
      more = queue_.pushed() != done;
      break;
    }
    work_cv_.wait(lock);
  }
  worker_asleep_.store(false, std::memory_order_relaxed);
  return more;
}

Status CpuStream::run_op(Op& op) const {
  if (op.kernel) {
    const auto where = [this] { return "kernel on cpu stream " + std::to_string(id_) + " threw"; };
    try {
      op.kernel(LaunchContext{DeviceKind::kCpu, nullptr});
    } catch (const std::exception& e) {
      return internal_error(where() + ": " + e.what());
    } catch (...) {
      return internal_error(where() + " an exception not derived from std::exception");
    }
    return ok_status();
  }
  return op.run ? op.run() : ok_status();
}

void CpuStream::complete(Op& op, Status status, std::uint64_t done) {
  if (status.ok() && op.record_point == nullptr) {
    completed_.store(done, std::memory_order_seq_cst);
  } else {
    // Under mu_, so that no one sees the stream drained before its events complete or its error
    // is set, nor an event complete before the stream counts the record done. Lock order:
    // stream, then point.
    std::lock_guard<std::mutex> lock(mu_);
    if (!status.ok() && error_.ok()) error_ = std::move(status);
    if (op.record_point != nullptr) op.record_point->complete();
    completed_.store(done, std::memory_order_seq_cst);
  }
  // Read after the count is stored, as synchronize() counts itself in before it reads the
  // count: one of the two sees the other. Taking mu_ first makes sure a waiter that has read an
  // older count is waiting on idle_cv_, so the notification is not lost.
  if (idle_waiters_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    idle_cv_.notify_all();
  }
}

void CpuStream::run_worker() {
  std::uint64_t done = 0;
  for (;;) {
    if (queue_.pushed() == done && !wait_for_work(done)) return;  // stopping, and drained
    Op op = queue_.take();
    Status status = run_op(op);
    // Release what the op captured before reporting it done.
    op.kernel = nullptr;
    op.run = nullptr;
    complete(op, std::move(status), ++done);
  }
}

Status CpuStream::copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) {
  if (bytes == 0) return ok_status();
  EBB_RETURN_IF_ERROR(check_copy_arguments(memory_, dst, src, bytes, kind, "cpu", id_));
  CpuLink* link = kind == CopyKind::kHostToDevice   ? &host_to_device_
                  : kind == CopyKind::kDeviceToHost ? &device_to_host_
                                                    : nullptr;
  if (link != nullptr && !link->throttled()) link = nullptr;
  enqueue_work([dst, src, bytes, link]() -> Status {
    // Book the link before copying: the copy is done no earlier than the model says, and the
    // memcpy's own time counts towards it.
    const auto done_at = link != nullptr ? link->book(bytes) : std::chrono::steady_clock::now();
    std::memmove(dst, src, bytes);
    if (link != nullptr) std::this_thread::sleep_until(done_at);
    return ok_status();
  });
  return ok_status();
}

Status CpuStream::memset_async(void* dst, std::uint8_t value, std::size_t bytes) {
  if (bytes == 0) return ok_status();
  auto what = [&] {
    return "memset_async (" + std::to_string(bytes) + " bytes) on cpu stream " +
           std::to_string(id_);
  };
  if (dst == nullptr) return invalid_argument(what() + ": dst is null");
  if (Status s = memory_.check_device_range(dst, bytes); !s.ok()) {
    return invalid_argument(what() + ": dst " + s.message());
  }
  enqueue_work([dst, value, bytes]() -> Status {
    std::memset(dst, value, bytes);
    return ok_status();
  });
  return ok_status();
}

Status CpuStream::launch(Kernel kernel) {
  if (!kernel)
    return invalid_argument("launch of an empty kernel on cpu stream " + std::to_string(id_));
  enqueue(Op{std::move(kernel), nullptr, nullptr});
  return ok_status();
}

Status CpuStream::record(Event& event) {
  EBB_ASSIGN_OR_RETURN(CpuEvent * cpu_event, as_cpu_event(event, device_, "record"));
  enqueue(Op{Kernel(), nullptr, cpu_event->begin_record()});
  return ok_status();
}

Status CpuStream::wait(Event& event) {
  EBB_ASSIGN_OR_RETURN(CpuEvent * cpu_event, as_cpu_event(event, device_, "wait"));
  // The record is captured now, so a later record() of the same event does not move this wait.
  std::shared_ptr<RecordPoint> point = cpu_event->latest_record();
  if (point == nullptr) return ok_status();  // never recorded: no wait, as in CUDA
  enqueue_work([point = std::move(point)]() -> Status {
    point->wait();
    return ok_status();
  });
  return ok_status();
}

Status CpuStream::synchronize() {
  // The work enqueued before this call; work other threads enqueue meanwhile is not waited for.
  const std::uint64_t target = queue_.pushed();
  std::unique_lock<std::mutex> lock(mu_);
  idle_waiters_.fetch_add(1, std::memory_order_seq_cst);
  idle_cv_.wait(lock, [&] { return completed_.load(std::memory_order_seq_cst) >= target; });
  idle_waiters_.fetch_sub(1, std::memory_order_relaxed);
  return std::exchange(error_, ok_status());
}

Result<bool> CpuStream::query() {
  const std::uint64_t pushed = queue_.pushed();
  // Under mu_: an event seen complete, or an error seen set, is counted in completed_ too.
  std::lock_guard<std::mutex> lock(mu_);
  return completed_.load(std::memory_order_seq_cst) >= pushed;
}

}  // namespace ebb
