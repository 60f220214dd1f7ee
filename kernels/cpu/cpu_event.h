// CpuEvent: the cpu backend's Event, and RecordPoint, the one record() it stands for.
//
// As in CUDA, an event names its latest record: record() captures the recording stream's
// position at enqueue time, and a wait() enqueued later captures that record, so recording the
// event again does not move an earlier wait. Each record is a RecordPoint shared by the event,
// the recording stream's queue and every wait that captured it; the stream's worker completes
// it when it reaches it and stamps the time then.
//
// Thread safety: thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "kernels/device.h"

namespace ebb {

// One record() of an event: done once the recording stream's worker has passed it.
// Thread-safe.
class RecordPoint {
 public:
  // Called by the recording stream's worker when it reaches this point.
  void complete();
  bool done() const;
  // Blocks until done().
  void wait() const;
  // REQUIRES: done().
  std::chrono::steady_clock::time_point completed_at() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable done_cv_;
  bool done_ = false;                                   // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point completed_at_;  // GUARDED_BY(mu_); set with done_
};

// Owned by the caller of Device::create_event; must not outlive its Device's use of it.
class CpuEvent final : public Event {
 public:
  // `device` identifies the creating device, so that a stream rejects another device's event.
  explicit CpuEvent(const void* device) : device_(device) {}

  const void* device() const { return device_; }
  // Makes a fresh record the event's latest and returns it, for the recording stream to enqueue.
  std::shared_ptr<RecordPoint> begin_record();
  // The latest record; nullptr when the event was never recorded.
  std::shared_ptr<RecordPoint> latest_record() const;

  Result<bool> query() override;
  Status synchronize() override;
  Result<double> elapsed_ms_since(Event& start) override;

 private:
  const void* const device_;
  mutable std::mutex mu_;
  std::shared_ptr<RecordPoint> latest_;  // GUARDED_BY(mu_)
};

// `event` as a CpuEvent of `device`; kInvalidArgument when it is another backend's event or
// another device's. `call` names the caller in the message.
Result<CpuEvent*> as_cpu_event(Event& event, const void* device, const char* call);

}  // namespace ebb
