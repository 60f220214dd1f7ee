#include "kernels/cpu/cpu_event.h"

#include <string>

namespace ebb {

void RecordPoint::complete() {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    completed_at_ = now;
  }
  done_cv_.notify_all();
}

bool RecordPoint::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void RecordPoint::wait() const {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return done_; });
}

std::chrono::steady_clock::time_point RecordPoint::completed_at() const {
  std::lock_guard<std::mutex> lock(mu_);
  EBB_CHECK(done_, "completed_at() of a record point not yet reached");
  return completed_at_;
}

std::shared_ptr<RecordPoint> CpuEvent::begin_record() {
  auto point = std::make_shared<RecordPoint>();
  std::lock_guard<std::mutex> lock(mu_);
  latest_ = point;
  return point;
}

std::shared_ptr<RecordPoint> CpuEvent::latest_record() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

Result<bool> CpuEvent::query() {
  const std::shared_ptr<RecordPoint> point = latest_record();
  return point == nullptr || point->done();
}

Status CpuEvent::synchronize() {
  if (const std::shared_ptr<RecordPoint> point = latest_record()) point->wait();
  return ok_status();
}

Result<double> CpuEvent::elapsed_ms_since(Event& start) {
  EBB_ASSIGN_OR_RETURN(CpuEvent * start_event, as_cpu_event(start, device_, "elapsed_ms_since"));
  const std::shared_ptr<RecordPoint> from = start_event->latest_record();
  const std::shared_ptr<RecordPoint> to = latest_record();
  if (from == nullptr || to == nullptr) {
    return failed_precondition(std::string("elapsed_ms_since: the ") +
                               (to == nullptr ? "end" : "start") + " event was never recorded");
  }
  if (!from->done() || !to->done()) {
    return failed_precondition(std::string("elapsed_ms_since: the ") +
                               (!to->done() ? "end" : "start") +
                               " event's recorded work has not completed");
  }
  const std::chrono::duration<double, std::milli> elapsed =
      to->completed_at() - from->completed_at();
  return elapsed.count();
}

Result<CpuEvent*> as_cpu_event(Event& event, const void* device, const char* call) {
  auto* cpu_event = dynamic_cast<CpuEvent*>(&event);
  if (cpu_event == nullptr) {
    return invalid_argument(std::string(call) + ": the event belongs to another backend");
  }
  if (cpu_event->device() != device) {
    return invalid_argument(std::string(call) + ": the event belongs to another cpu device");
  }
  return cpu_event;
}

}  // namespace ebb
