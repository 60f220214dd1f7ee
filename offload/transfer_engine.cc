#include "offload/transfer_engine.h"

#include <algorithm>
#include <utility>

namespace ebb {
namespace {

bool is_copy(TransferKind kind) {
  return kind == TransferKind::kDeviceToHost || kind == TransferKind::kHostToDevice;
}

}  // namespace

// --- Transfer ------------------------------------------------------------------------------

Status Transfer::wait() {
  if (is_copy(kind_)) {
    EBB_RETURN_IF_ERROR(event_->synchronize());
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return state_ == State::kDone; });
  return status_;
}

bool Transfer::done() const {
  if (is_copy(kind_)) {
    Result<bool> q = event_->query();
    return !q.ok() || *q;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kDone;
}

bool Transfer::cancel() {
  if (is_copy(kind_)) {
    // A queued stream copy cannot be taken back: wait for it instead.
    (void)event_->synchronize();
    return false;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kQueued) {
    state_ = State::kDone;
    cancelled_ = true;
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
  return order_;
}

void Transfer::finish(Status status, ExtentId extent, std::uint64_t order) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(status);
  extent_ = extent;
  order_ = order;
  state_ = State::kDone;
  cv_.notify_all();
}

// --- TransferEngine ------------------------------------------------------------------------

bool TransferEngine::runs_later(const std::shared_ptr<Transfer>& a,
                                const std::shared_ptr<Transfer>& b) {
  if (a->deadline_.op_index != b->deadline_.op_index) {
    return a->deadline_.op_index > b->deadline_.op_index;
  }
  if (a->deadline_.priority != b->deadline_.priority) {
    return a->deadline_.priority < b->deadline_.priority;
  }
  return a->sequence_ > b->sequence_;
}

Result<std::unique_ptr<TransferEngine>> TransferEngine::create(Device& device, NvmeTier* nvme) {
  std::unique_ptr<TransferEngine> engine(new TransferEngine(device, nvme));
  EBB_ASSIGN_OR_RETURN(engine->d2h_, device.create_stream());
  EBB_ASSIGN_OR_RETURN(engine->h2d_, device.create_stream());
  EBB_ASSIGN_OR_RETURN(engine->staged_, device.create_event());
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
  if (d2h_ != nullptr) (void)d2h_->synchronize();
  if (h2d_ != nullptr) (void)h2d_->synchronize();
}

Result<std::shared_ptr<Transfer>> TransferEngine::copy(TransferKind kind, void* dst,
                                                       const void* src, std::size_t bytes,
                                                       Stream* after) {
  std::shared_ptr<Transfer> t(new Transfer(kind));
  EBB_ASSIGN_OR_RETURN(t->event_, device_.create_event());
  Stream& stream = kind == TransferKind::kDeviceToHost ? *d2h_ : *h2d_;
  if (after != nullptr) {
    EBB_RETURN_IF_ERROR(after->record(*t->event_));
    EBB_RETURN_IF_ERROR(stream.wait(*t->event_));
  }
  EBB_RETURN_IF_ERROR(stream.copy_async(
      dst, src, bytes,
      kind == TransferKind::kDeviceToHost ? CopyKind::kDeviceToHost : CopyKind::kHostToDevice));
  EBB_RETURN_IF_ERROR(stream.record(*t->event_));
  return t;
}

Result<std::shared_ptr<Transfer>> TransferEngine::copy_to_host(void* host, const void* device_src,
                                                               std::size_t bytes, Stream* after) {
  return copy(TransferKind::kDeviceToHost, host, device_src, bytes, after);
}

Result<std::shared_ptr<Transfer>> TransferEngine::copy_to_device(void* device_dst, const void* host,
                                                                 std::size_t bytes, Stream* after) {
  return copy(TransferKind::kHostToDevice, device_dst, host, bytes, after);
}

Result<std::shared_ptr<Transfer>> TransferEngine::enqueue(std::shared_ptr<Transfer> t,
                                                          Stream* after) {
  if (nvme_ == nullptr) {
    return failed_precondition("transfer of tensor '" + t->tensor_ +
                               "': this transfer engine has no NVMe tier");
  }
  if (after != nullptr) {
    EBB_ASSIGN_OR_RETURN(t->event_, device_.create_event());
    EBB_RETURN_IF_ERROR(after->record(*t->event_));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return failed_precondition("transfer engine is closing");
    t->sequence_ = next_sequence_++;
    queue_.push_back(t);
    std::push_heap(queue_.begin(), queue_.end(), runs_later);
  }
  work_.notify_one();
  return t;
}

Result<std::shared_ptr<Transfer>> TransferEngine::host_to_nvme(std::string_view tensor,
                                                               const void* host, std::size_t bytes,
                                                               TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kHostToNvme));
  t->tensor_ = std::string(tensor);
  t->src_ = host;
  t->bytes_ = bytes;
  t->deadline_ = deadline;
  return enqueue(std::move(t), nullptr);
}

Result<std::shared_ptr<Transfer>> TransferEngine::nvme_to_host(ExtentId extent, void* host,
                                                               std::size_t bytes,
                                                               TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kNvmeToHost));
  t->tensor_ = "extent " + std::to_string(extent);
  t->dst_ = host;
  t->bytes_ = bytes;
  t->source_extent_ = extent;
  t->deadline_ = deadline;
  return enqueue(std::move(t), nullptr);
}

Result<std::shared_ptr<Transfer>> TransferEngine::device_to_nvme(std::string_view tensor,
                                                                 const void* device_src,
                                                                 std::size_t bytes, Stream* after,
                                                                 TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kDeviceToNvme));
  t->tensor_ = std::string(tensor);
  t->src_ = device_src;
  t->bytes_ = bytes;
  t->deadline_ = deadline;
  return enqueue(std::move(t), after);
}

Result<std::shared_ptr<Transfer>> TransferEngine::nvme_to_device(ExtentId extent, void* device_dst,
                                                                 std::size_t bytes, Stream* after,
                                                                 TransferDeadline deadline) {
  std::shared_ptr<Transfer> t(new Transfer(TransferKind::kNvmeToDevice));
  t->tensor_ = "extent " + std::to_string(extent);
  t->dst_ = device_dst;
  t->bytes_ = bytes;
  t->source_extent_ = extent;
  t->deadline_ = deadline;
  return enqueue(std::move(t), after);
}

void TransferEngine::io_loop() {
  for (;;) {
    std::shared_ptr<Transfer> t;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      std::pop_heap(queue_.begin(), queue_.end(), runs_later);
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

Status TransferEngine::staged_copy(Stream& stream, void* dst, const void* src, std::size_t bytes,
                                   CopyKind kind) {
  EBB_RETURN_IF_ERROR(stream.copy_async(dst, src, bytes, kind));
  EBB_RETURN_IF_ERROR(stream.record(*staged_));
  return staged_->synchronize();
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
      if (t.event_ != nullptr) EBB_RETURN_IF_ERROR(d2h_->wait(*t.event_));
      const auto* src = static_cast<const std::byte*>(t.src_);
      EBB_ASSIGN_OR_RETURN(
          written,
          nvme_->write(t.tensor_, t.bytes_, [&](std::size_t offset, std::span<std::byte> block) {
            return staged_copy(*d2h_, block.data(), src + offset, block.size(),
                               CopyKind::kDeviceToHost);
          }));
      return ok_status();
    }
    case TransferKind::kNvmeToDevice: {
      if (nvme_->extent_bytes(t.source_extent_) != t.bytes_) {
        return invalid_argument("NVMe to device: extent " + std::to_string(t.source_extent_) +
                                " does not hold " + std::to_string(t.bytes_) + " bytes");
      }
      if (t.event_ != nullptr) EBB_RETURN_IF_ERROR(h2d_->wait(*t.event_));
      auto* dst = static_cast<std::byte*>(t.dst_);
      return nvme_->read(t.source_extent_,
                         [&](std::size_t offset, std::span<const std::byte> block) {
                           return staged_copy(*h2d_, dst + offset, block.data(), block.size(),
                                              CopyKind::kHostToDevice);
                         });
    }
    case TransferKind::kDeviceToHost:
    case TransferKind::kHostToDevice:
      break;
  }
  return internal_error("transfer engine: a stream copy reached the I/O thread");
}

}  // namespace ebb
