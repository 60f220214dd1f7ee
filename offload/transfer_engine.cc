#include "offload/transfer_engine.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace ebb {
namespace {

bool is_copy(TransferKind kind) {
  return kind == TransferKind::kDeviceToHost || kind == TransferKind::kHostToDevice ||
         kind == TransferKind::kCollective;
}

}  // namespace

// One direction of the device link: its stream, its queue and its dispatcher. Every enqueue on
// the stream happens under mu, so a copy's wait, copy and record are contiguous on it.
struct CopyLane {
  std::unique_ptr<Stream> stream;
  CopyKind kind = CopyKind::kDeviceToHost;
  std::size_t window = 0;  // copies_in_flight; 0 = every copy issued when requested
  std::mutex mu;
  std::condition_variable work;
  // GUARDED_BY(mu): queued copies, a heap with the earliest deadline at the front.
  std::vector<std::shared_ptr<Transfer>> queued;
  // GUARDED_BY(mu): issued copies that may not have completed, oldest first.
  std::deque<std::shared_ptr<Transfer>> in_flight;
  std::uint64_t issued = 0;  // GUARDED_BY(mu)
  bool stopping = false;     // GUARDED_BY(mu)
  std::thread dispatcher;

  // Issues `t` on the stream. REQUIRES: mu held; t queued and not in `queued`.
  Status issue_locked(const std::shared_ptr<Transfer>& t);
  // Drops completed copies from the front of in_flight. REQUIRES: mu held.
  void reap_locked();
  // Issues queued copies, earliest deadline first, while the window has room. REQUIRES: mu.
  void pump_locked();
  // Removes `t` from `queued` if it is there; whether it was. REQUIRES: mu held.
  bool unqueue_locked(const Transfer& t);
  // Issues `t` now if it is still queued; whether it was.
  Result<bool> expedite(Transfer& t);
  // The dispatcher thread: issues queued copies as the copies ahead of them complete.
  void dispatch_loop();
};

// --- Transfer ------------------------------------------------------------------------------

Transfer::~Transfer() {
  if (event_ != nullptr) events_->release(event_);
  if (after_event_ != nullptr) events_->release(after_event_);
}

Status Transfer::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  if (is_copy(kind_)) {
    cv_.wait(lock, [&] { return state_ != State::kQueued; });
    if (state_ == State::kDone) {
      // Cancelled, or failed to issue: nothing of its own to wait for, but a caller that waits
      // for the last copy of a buffer still needs the copy it followed to be over.
      Status own = status_;
      std::shared_ptr<Transfer> followed = after_copy_;
      lock.unlock();
      if (followed != nullptr) (void)followed->wait();
      return own;
    }
    lock.unlock();
    EBB_RETURN_IF_ERROR(event_->synchronize());
    lock.lock();
    return status_;
  }
  cv_.wait(lock, [&] { return state_ == State::kDone; });
  return status_;
}

bool Transfer::done() const {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kDone) return true;
  if (!is_copy(kind_) || state_ == State::kQueued) return false;
  lock.unlock();
  Result<bool> q = event_->query();
  return !q.ok() || *q;
}

bool Transfer::cancel_if_queued() {
  if (!is_copy(kind_)) return false;
  std::unique_lock<std::mutex> state_lock(mu_);
  const bool queued = state_ == State::kQueued;
  state_lock.unlock();
  // Only a queued copy touches its lane, which lives as long as the copy may be queued.
  if (!queued) return false;
  std::lock_guard<std::mutex> lane_lock(lane_->mu);
  if (!lane_->unqueue_locked(*this)) return false;  // issued meanwhile
  std::lock_guard<std::mutex> lock(mu_);
  state_ = State::kDone;
  status_ = failed_precondition("copy of " + std::to_string(bytes_) + " bytes was cancelled");
  cv_.notify_all();
  return true;
}

bool Transfer::cancel() {
  if (is_copy(kind_)) {
    if (cancel_if_queued()) return true;
    // Issued (or done): a copy on a stream cannot be taken back; wait for it instead.
    (void)wait();
    return false;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kQueued) {
    state_ = State::kDone;
    status_ = failed_precondition("transfer of tensor '" + tensor_ + "' was cancelled");
    cv_.notify_all();
    return true;
  }
  cv_.wait(lock, [&] { return state_ == State::kDone; });
  return false;
}

ExtentId Transfer::extent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return extent_;
}

std::uint64_t Transfer::finish_order() const {
  std::lock_guard<std::mutex> lock(mu_);
  return is_copy(kind_) ? 0 : order_;
}

std::uint64_t Transfer::issue_order() const {
  std::lock_guard<std::mutex> lock(mu_);
  return is_copy(kind_) ? order_ : 0;
}

void Transfer::finish(Status status, ExtentId extent, std::uint64_t order) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(status);
  extent_ = extent;
  order_ = order;
  state_ = State::kDone;
  cv_.notify_all();
}

// --- CopyLane ------------------------------------------------------------------------------

Status CopyLane::issue_locked(const std::shared_ptr<Transfer>& t) {
  Status s;
  if (t->after_copy_ != nullptr) {
    // The copy it follows was issued when this one was requested (copy() saw to it). Once the
    // wait is on the stream, the link is no longer needed: dropping it keeps a tensor's copies
    // from holding each other in a chain.
    s = stream->wait(*t->after_copy_->event_);
    t->after_copy_.reset();
  }
  if (s.ok() && t->after_event_ != nullptr) s = stream->wait(*t->after_event_);
  if (s.ok() && t->borrowed_after_ != nullptr) s = stream->wait(*t->borrowed_after_);
  if (s.ok()) {
    s = t->kernel_ ? stream->launch(t->kernel_, t->cost_)
                   : stream->copy_async(t->dst_, t->src_, t->bytes_, kind);
  }
  if (s.ok()) s = stream->record(*t->event_);
  std::lock_guard<std::mutex> lock(t->mu_);
  if (!s.ok()) {
    t->status_ = s;
    t->state_ = Transfer::State::kDone;
  } else {
    t->order_ = ++issued;
    t->state_ = Transfer::State::kIssued;
  }
  t->cv_.notify_all();
  if (s.ok()) in_flight.push_back(t);
  return s;
}

void CopyLane::reap_locked() {
  while (!in_flight.empty()) {
    Result<bool> done = in_flight.front()->event_->query();
    if (done.ok() && !*done) return;
    in_flight.pop_front();  // complete, or its stream failed: either way no longer in flight
  }
}

void CopyLane::pump_locked() {
  reap_locked();
  while (!queued.empty() && in_flight.size() < window) {
    std::pop_heap(queued.begin(), queued.end(), RunsLater{});
    std::shared_ptr<Transfer> next = std::move(queued.back());
    queued.pop_back();
    (void)issue_locked(next);  // a failure is the transfer's status, seen by its waiter
  }
}

bool CopyLane::unqueue_locked(const Transfer& t) {
  auto it = std::find_if(queued.begin(), queued.end(),
                         [&](const std::shared_ptr<Transfer>& q) { return q.get() == &t; });
  if (it == queued.end()) return false;
  queued.erase(it);
  std::make_heap(queued.begin(), queued.end(), RunsLater{});
  return true;
}

Result<bool> CopyLane::expedite(Transfer& t) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = std::find_if(queued.begin(), queued.end(),
                         [&](const std::shared_ptr<Transfer>& q) { return q.get() == &t; });
  if (it == queued.end()) return false;
  std::shared_ptr<Transfer> held = std::move(*it);
  queued.erase(it);
  std::make_heap(queued.begin(), queued.end(), RunsLater{});
  EBB_RETURN_IF_ERROR(issue_locked(held));
  return true;
}

void CopyLane::dispatch_loop() {
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    work.wait(lock, [&] { return stopping || !queued.empty(); });
    if (stopping) return;
    pump_locked();
    if (queued.empty()) continue;
    // The window is full: wait for its oldest copy, then issue the most urgent queued one.
    std::shared_ptr<Transfer> oldest = in_flight.front();
    lock.unlock();
    (void)oldest->event_->synchronize();
    lock.lock();
  }
}

// --- TransferEngine ------------------------------------------------------------------------

bool RunsLater::operator()(const std::shared_ptr<Transfer>& a,
                           const std::shared_ptr<Transfer>& b) const {
  if (a->deadline_.op_index != b->deadline_.op_index) {
    return a->deadline_.op_index > b->deadline_.op_index;
  }
  if (a->deadline_.priority != b->deadline_.priority) {
    return a->deadline_.priority < b->deadline_.priority;
  }
  return a->sequence_ > b->sequence_;
}

TransferEngine::TransferEngine(Device& device, NvmeTier* nvme)
    : device_(device),
      nvme_(nvme),
      events_(std::make_shared<EventPool>(device)),
      to_host_(std::make_unique<CopyLane>()),
      to_device_(std::make_unique<CopyLane>()),
      comm_(std::make_unique<CopyLane>()) {}

Result<std::unique_ptr<TransferEngine>> TransferEngine::create(Device& device, NvmeTier* nvme,
                                                               TransferOptions options) {
  std::unique_ptr<TransferEngine> engine(new TransferEngine(device, nvme));
  const std::size_t window = device.kind() == DeviceKind::kSim ? 0 : options.copies_in_flight;
  for (CopyLane* lane : {engine->to_host_.get(), engine->to_device_.get()}) {
    EBB_ASSIGN_OR_RETURN(lane->stream, device.create_stream());
    lane->window = window;
  }
  engine->to_host_->kind = CopyKind::kDeviceToHost;
  engine->to_device_->kind = CopyKind::kHostToDevice;
  if (window > 0) {
    for (CopyLane* lane : {engine->to_host_.get(), engine->to_device_.get()}) {
      lane->dispatcher = std::thread([lane] { lane->dispatch_loop(); });
    }
  }
  if (nvme != nullptr) engine->io_thread_ = std::thread([e = engine.get()] { e->io_loop(); });
  return engine;
}

TransferEngine::~TransferEngine() {
  std::vector<std::shared_ptr<Transfer>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    queued.swap(queue_);
  }
  work_.notify_all();
  for (const auto& t : queued) t->cancel();
  if (io_thread_.joinable()) io_thread_.join();
  for (CopyLane* lane : {to_host_.get(), to_device_.get(), comm_.get()}) {
    std::vector<std::shared_ptr<Transfer>> held;
    {
      std::lock_guard<std::mutex> lock(lane->mu);
      lane->stopping = true;
      held.swap(lane->queued);
    }
    lane->work.notify_all();
    if (lane->dispatcher.joinable()) lane->dispatcher.join();
    for (const auto& t : held) {
      t->finish(failed_precondition("transfer engine closed before the copy was issued"), kNoExtent,
                0);
    }
    if (lane->stream != nullptr) (void)lane->stream->synchronize();
  }
}

Status TransferEngine::synchronize() {
  Status first;
  for (CopyLane* lane : {to_host_.get(), to_device_.get(), comm_.get()}) {
    if (lane->stream == nullptr) continue;
    {
      std::lock_guard<std::mutex> lock(lane->mu);
      while (!lane->queued.empty()) {
        std::pop_heap(lane->queued.begin(), lane->queued.end(), RunsLater{});
        std::shared_ptr<Transfer> next = std::move(lane->queued.back());
        lane->queued.pop_back();
        (void)lane->issue_locked(next);  // a failure is the transfer's status
      }
    }
    if (Status s = lane->stream->synchronize(); !s.ok() && first.ok()) first = std::move(s);
  }
  return first;
}

Stream& TransferEngine::device_to_host_stream() { return *to_host_->stream; }
Stream& TransferEngine::host_to_device_stream() { return *to_device_->stream; }

TransferStats TransferEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Result<std::shared_ptr<Transfer>> TransferEngine::copy(CopyLane& lane, TransferKind kind, void* dst,
                                                       const void* src, std::size_t bytes,
                                                       Stream* after, Event* borrowed_after,
                                                       TransferDeadline deadline,
                                                       std::shared_ptr<Transfer> after_copy) {
  std::shared_ptr<Transfer> t(new Transfer(kind, events_));
  t->lane_ = &lane;
  t->dst_ = dst;
  t->src_ = src;
  t->bytes_ = bytes;
  t->deadline_ = deadline;
  t->borrowed_after_ = borrowed_after;
  EBB_ASSIGN_OR_RETURN(t->event_, events_->acquire());
  if (after != nullptr) {
    EBB_ASSIGN_OR_RETURN(t->after_event_, events_->acquire());
    EBB_RETURN_IF_ERROR(after->record(*t->after_event_));
  }
  // What this copy follows must be on a stream before it: issued now if it is queued. A copy
  // that never ran (cancelled, or failed to issue) is passed over for the one it followed.
  while (after_copy != nullptr) {
    if (after_copy->lane_ != nullptr) {
      EBB_ASSIGN_OR_RETURN(bool expedited, after_copy->lane_->expedite(*after_copy));
      (void)expedited;
    }
    std::unique_lock<std::mutex> lock(after_copy->mu_);
    const bool issued = after_copy->state_ == Transfer::State::kIssued;
    lock.unlock();
    if (issued) break;
    after_copy = after_copy->after_copy_;
  }
  t->after_copy_ = std::move(after_copy);
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    t->sequence_ = next_sequence_++;
    ++stats_.copies;
  }
  {
    std::lock_guard<std::mutex> lock(lane.mu);
    if (lane.stopping) return failed_precondition("transfer engine is closing");
    lane.reap_locked();
    if (deadline.is_now() || lane.window == 0 ||
        (lane.queued.empty() && lane.in_flight.size() < lane.window)) {
      EBB_RETURN_IF_ERROR(lane.issue_locked(t));
    } else {
      lane.queued.push_back(t);
      std::push_heap(lane.queued.begin(), lane.queued.end(), RunsLater{});
      lane.pump_locked();
      queued = true;
    }
  }
  if (queued) {
    lane.work.notify_one();
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.queued_copies;
  }
  return t;
}

Result<std::shared_ptr<Transfer>> TransferEngine::copy_to_host(
    void* host, const void* device_src, std::size_t bytes, Stream* after, TransferDeadline deadline,
    std::shared_ptr<Transfer> after_copy) {
  return copy(*to_host_, TransferKind::kDeviceToHost, host, device_src, bytes, after, nullptr,
              deadline, std::move(after_copy));
}

Result<std::shared_ptr<Transfer>> TransferEngine::copy_to_device(
    void* device_dst, const void* host, std::size_t bytes, Stream* after, TransferDeadline deadline,
    std::shared_ptr<Transfer> after_copy) {
  return copy(*to_device_, TransferKind::kHostToDevice, device_dst, host, bytes, after, nullptr,
              deadline, std::move(after_copy));
}

Result<std::shared_ptr<Transfer>> TransferEngine::collective(std::string_view name, Kernel kernel,
                                                             std::chrono::nanoseconds cost,
                                                             Stream* after) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kCollective, events_));
  t->lane_ = comm_.get();
  t->kernel_ = std::move(kernel);
  t->cost_ = cost;
  t->tensor_ = std::string(name);
  t->deadline_ = TransferDeadline::now();
  EBB_ASSIGN_OR_RETURN(t->event_, events_->acquire());
  if (after != nullptr) {
    EBB_ASSIGN_OR_RETURN(t->after_event_, events_->acquire());
    EBB_RETURN_IF_ERROR(after->record(*t->after_event_));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    t->sequence_ = next_sequence_++;
  }
  std::lock_guard<std::mutex> lock(comm_->mu);
  if (comm_->stopping) return failed_precondition("transfer engine is closing");
  if (comm_->stream == nullptr) {
    EBB_ASSIGN_OR_RETURN(comm_->stream, device_.create_stream());
  }
  comm_->reap_locked();
  EBB_RETURN_IF_ERROR(comm_->issue_locked(t));
  return t;
}

Status TransferEngine::stream_wait(Stream& stream, Transfer& t) {
  EBB_CHECK(t.lane_ == to_host_.get() || t.lane_ == to_device_.get() || t.lane_ == comm_.get(),
            "stream_wait on a transfer that is not a copy of this engine");
  EBB_ASSIGN_OR_RETURN(bool expedited, t.lane_->expedite(t));
  if (expedited) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.expedited;
  }
  std::unique_lock<std::mutex> lock(t.mu_);
  if (t.state_ == Transfer::State::kDone) return t.status_;  // cancelled or failed: no copy
  lock.unlock();
  return stream.wait(*t.event_);
}

Result<std::shared_ptr<Transfer>> TransferEngine::enqueue_nvme(std::shared_ptr<Transfer> t,
                                                               Stream* after) {
  if (nvme_ == nullptr) {
    return failed_precondition("transfer of tensor '" + t->tensor_ +
                               "': this transfer engine has no NVMe tier");
  }
  if (after != nullptr) {
    EBB_ASSIGN_OR_RETURN(t->event_, events_->acquire());
    EBB_RETURN_IF_ERROR(after->record(*t->event_));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return failed_precondition("transfer engine is closing");
    t->sequence_ = next_sequence_++;
    queue_.push_back(t);
    std::push_heap(queue_.begin(), queue_.end(), RunsLater{});
  }
  work_.notify_one();
  return t;
}

Result<std::shared_ptr<Transfer>> TransferEngine::host_to_nvme(std::string_view tensor,
                                                               const void* host, std::size_t bytes,
                                                               TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kHostToNvme, events_));
  t->tensor_ = std::string(tensor);
  t->src_ = host;
  t->bytes_ = bytes;
  t->deadline_ = deadline;
  return enqueue_nvme(std::move(t), nullptr);
}

Result<std::shared_ptr<Transfer>> TransferEngine::nvme_to_host(ExtentId extent, void* host,
                                                               std::size_t bytes,
                                                               TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kNvmeToHost, events_));
  t->tensor_ = "extent " + std::to_string(extent);
  t->dst_ = host;
  t->bytes_ = bytes;
  t->source_extent_ = extent;
  t->deadline_ = deadline;
  return enqueue_nvme(std::move(t), nullptr);
}

Result<std::shared_ptr<Transfer>> TransferEngine::device_to_nvme(std::string_view tensor,
                                                                 const void* device_src,
                                                                 std::size_t bytes, Stream* after,
                                                                 TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kDeviceToNvme, events_));
  t->tensor_ = std::string(tensor);
  t->src_ = device_src;
  t->bytes_ = bytes;
  t->deadline_ = deadline;
  return enqueue_nvme(std::move(t), after);
}

Result<std::shared_ptr<Transfer>> TransferEngine::nvme_to_device(ExtentId extent, void* device_dst,
                                                                 std::size_t bytes, Stream* after,
                                                                 TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kNvmeToDevice, events_));
  t->tensor_ = "extent " + std::to_string(extent);
  t->dst_ = device_dst;
  t->bytes_ = bytes;
  t->source_extent_ = extent;
  t->deadline_ = deadline;
  return enqueue_nvme(std::move(t), after);
}

void TransferEngine::io_loop() {
  for (;;) {
    std::shared_ptr<Transfer> t;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      std::pop_heap(queue_.begin(), queue_.end(), RunsLater{});
      t = std::move(queue_.back());
      queue_.pop_back();
    }
    {
      std::lock_guard<std::mutex> lock(t->mu_);
      if (t->state_ != Transfer::State::kQueued) continue;  // cancelled
      t->state_ = Transfer::State::kRunning;
    }
    ExtentId written = kNoExtent;
    Status s = run_nvme(*t, written);
    std::uint64_t order = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      order = ++finished_;
    }
    t->finish(std::move(s), written, order);
  }
}

Status TransferEngine::staged_copy(CopyLane& lane, Transfer& request, void* dst, const void* src,
                                   std::size_t bytes) {
  const TransferKind kind =
      &lane == to_host_.get() ? TransferKind::kDeviceToHost : TransferKind::kHostToDevice;
  EBB_ASSIGN_OR_RETURN(
      std::shared_ptr<Transfer> block,
      copy(lane, kind, dst, src, bytes, nullptr, request.event_, request.deadline_, nullptr));
  return block->wait();
}

Status TransferEngine::run_nvme(Transfer& t, ExtentId& written) {
  switch (t.kind_) {
    case TransferKind::kHostToNvme: {
      EBB_ASSIGN_OR_RETURN(written, nvme_->write(t.tensor_, t.src_, t.bytes_));
      return ok_status();
    }
    case TransferKind::kNvmeToHost:
      return nvme_->read(t.source_extent_, t.dst_, t.bytes_);
    case TransferKind::kDeviceToNvme: {
      const auto* src = static_cast<const std::byte*>(t.src_);
      EBB_ASSIGN_OR_RETURN(
          written,
          nvme_->write(t.tensor_, t.bytes_, [&](std::size_t offset, std::span<std::byte> block) {
            return staged_copy(*to_host_, t, block.data(), src + offset, block.size());
          }));
      return ok_status();
    }
    case TransferKind::kNvmeToDevice: {
      if (nvme_->extent_bytes(t.source_extent_) != t.bytes_) {
        return invalid_argument("NVMe to device: extent " + std::to_string(t.source_extent_) +
                                " does not hold " + std::to_string(t.bytes_) + " bytes");
      }
      auto* dst = static_cast<std::byte*>(t.dst_);
      return nvme_->read(
          t.source_extent_, [&](std::size_t offset, std::span<const std::byte> block) {
            return staged_copy(*to_device_, t, dst + offset, block.data(), block.size());
          });
    }
    case TransferKind::kDeviceToHost:
    case TransferKind::kHostToDevice:
    case TransferKind::kCollective:
      break;
  }
  return internal_error("transfer engine: a stream request reached the I/O thread");
}

}  // namespace ebb
