#include "kernels/sim/sim_stream.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <utility>

#include "kernels/cpu/memory_device.h"

namespace ebb {
namespace {

// latency + bytes / bandwidth, to the nearest nanosecond; no transfer time on an unthrottled
// link.
SimClock::Duration copy_duration(const LinkModel& model, std::size_t bytes) {
  return model.transfer_time(static_cast<double>(bytes));
}

// `event` as a SimEvent of `device`; kInvalidArgument when it is another backend's event or
// another device's. `call` names the caller in the message.
Result<SimEvent*> as_sim_event(Event& event, const void* device, const char* call) {
  auto* sim_event = dynamic_cast<SimEvent*>(&event);
  if (sim_event == nullptr) {
    return invalid_argument(std::string(call) + ": the event belongs to another backend");
  }
  if (sim_event->device() != device) {
    return invalid_argument(std::string(call) + ": the event belongs to another sim device");
  }
  return sim_event;
}

}  // namespace

// --- SimClock -----------------------------------------------------------------------------

SimClock::SimClock(LinkModel host_to_device, LinkModel device_to_host)
    : host_to_device_{host_to_device, {}}, device_to_host_{device_to_host, {}} {}

void SimClock::add_stream(std::uint32_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool added = ready_.emplace(stream, now_).second;
  EBB_CHECK(added, "sim stream id " + std::to_string(stream) + " added twice");
}

void SimClock::remove_stream(std::uint32_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_.erase(stream);  // its work still counts in latest_end_, as a destroyed CUDA stream's
}

std::size_t SimClock::stream_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ready_.size();
}

SimClock::Duration& SimClock::start_of(std::uint32_t stream) {
  auto it = ready_.find(stream);
  EBB_CHECK(it != ready_.end(), "sim stream id " + std::to_string(stream) + " has no timeline");
  it->second = std::max(it->second, now_);
  return it->second;
}

SimClock::Duration SimClock::book(Link& link, Duration earliest, Duration duration) {
  // Every later copy starts at or after now_, so intervals that end by then cannot matter.
  while (!link.busy.empty() && link.busy.begin()->second <= now_)
    link.busy.erase(link.busy.begin());
  if (duration == Duration::zero()) return earliest;
  Duration start = earliest;
  auto next = link.busy.upper_bound(start);
  if (next != link.busy.begin()) start = std::max(start, std::prev(next)->second);
  // Intervals do not overlap, so their ends ascend with their starts: walk until a gap fits.
  for (; next != link.busy.end() && next->first < start + duration; ++next) {
    start = std::max(start, next->second);
  }
  link.busy.emplace(start, start + duration);
  return start + duration;
}

void SimClock::run(std::uint32_t stream, Duration cost) {
  EBB_CHECK(cost >= Duration::zero(), "negative cost " + std::to_string(cost.count()) + " ns");
  std::lock_guard<std::mutex> lock(mu_);
  Duration& ready = start_of(stream);
  ready += cost;
  latest_end_ = std::max(latest_end_, ready);
}

void SimClock::copy(std::uint32_t stream, CopyKind kind, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  Duration& ready = start_of(stream);
  Link* link = kind == CopyKind::kHostToDevice   ? &host_to_device_
               : kind == CopyKind::kDeviceToHost ? &device_to_host_
                                                 : nullptr;
  if (link != nullptr) ready = book(*link, ready, copy_duration(link->model, bytes));
  latest_end_ = std::max(latest_end_, ready);
}

SimClock::Duration SimClock::record(std::uint32_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  return start_of(stream);
}

void SimClock::wait(std::uint32_t stream, Duration time) {
  std::lock_guard<std::mutex> lock(mu_);
  Duration& ready = start_of(stream);
  ready = std::max(ready, time);
}

void SimClock::synchronize_stream(std::uint32_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ready_.find(stream);
  EBB_CHECK(it != ready_.end(), "sim stream id " + std::to_string(stream) + " has no timeline");
  now_ = std::max(now_, it->second);
}

void SimClock::synchronize_until(Duration time) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ = std::max(now_, time);
}

void SimClock::advance(Duration duration) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ += duration;
}

void SimClock::synchronize_all() {
  std::lock_guard<std::mutex> lock(mu_);
  now_ = std::max(now_, latest_end_);
}

SimClock::Duration SimClock::now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

bool SimClock::reached(Duration time) const {
  std::lock_guard<std::mutex> lock(mu_);
  return time <= now_;
}

bool SimClock::stream_done(std::uint32_t stream) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ready_.find(stream);
  EBB_CHECK(it != ready_.end(), "sim stream id " + std::to_string(stream) + " has no timeline");
  return it->second <= now_;
}

// --- SimEvent -----------------------------------------------------------------------------

void SimEvent::set_time(SimClock::Duration time) {
  std::lock_guard<std::mutex> lock(mu_);
  time_ = time;
}

std::optional<SimClock::Duration> SimEvent::time() const {
  std::lock_guard<std::mutex> lock(mu_);
  return time_;
}

Result<bool> SimEvent::query() {
  const std::optional<SimClock::Duration> t = time();
  return !t.has_value() || clock_.reached(*t);
}

Status SimEvent::synchronize() {
  if (const std::optional<SimClock::Duration> t = time()) clock_.synchronize_until(*t);
  return ok_status();
}

Result<double> SimEvent::elapsed_ms_since(Event& start) {
  EBB_ASSIGN_OR_RETURN(SimEvent * start_event, as_sim_event(start, device_, "elapsed_ms_since"));
  const std::optional<SimClock::Duration> from = start_event->time();
  const std::optional<SimClock::Duration> to = time();
  if (!from.has_value() || !to.has_value()) {
    return failed_precondition(std::string("elapsed_ms_since: the ") +
                               (to.has_value() ? "start" : "end") + " event was never recorded");
  }
  const bool to_done = clock_.reached(*to);
  if (!to_done || !clock_.reached(*from)) {
    return failed_precondition(std::string("elapsed_ms_since: the ") + (to_done ? "start" : "end") +
                               " event's recorded work has not completed");
  }
  return std::chrono::duration<double, std::milli>(*to - *from).count();
}

// --- SimStream ----------------------------------------------------------------------------

SimStream::SimStream(std::uint32_t id, const void* device, const CpuMemory& memory, SimClock& clock)
    : id_(id), device_(device), memory_(memory), clock_(clock) {
  clock_.add_stream(id_);
}

SimStream::~SimStream() { clock_.remove_stream(id_); }

Status SimStream::copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) {
  if (bytes == 0) return ok_status();
  EBB_RETURN_IF_ERROR(check_copy_arguments(memory_, dst, src, bytes, kind, "sim", id_));
  clock_.copy(id_, kind, bytes);
  return ok_status();
}

Status SimStream::memset_async(void* dst, std::uint8_t /*value*/, std::size_t bytes) {
  if (bytes == 0) return ok_status();
  auto what = [&] {
    return "memset_async (" + std::to_string(bytes) + " bytes) on sim stream " +
           std::to_string(id_);
  };
  if (dst == nullptr) return invalid_argument(what() + ": dst is null");
  if (Status s = memory_.check_device_range(dst, bytes); !s.ok()) {
    return invalid_argument(what() + ": dst " + s.message());
  }
  clock_.run(id_, SimClock::Duration::zero());
  return ok_status();
}

Status SimStream::launch(Kernel kernel) {
  return launch(std::move(kernel), SimClock::Duration::zero());
}

Status SimStream::launch(Kernel kernel, std::chrono::nanoseconds cost) {
  if (!kernel) {
    return invalid_argument("launch of an empty kernel on sim stream " + std::to_string(id_));
  }
  if (cost < std::chrono::nanoseconds::zero()) {
    return invalid_argument("launch on sim stream " + std::to_string(id_) + " with a cost of " +
                            std::to_string(cost.count()) + " ns: a cost cannot be negative");
  }
  clock_.run(id_, cost);
  return ok_status();  // `kernel` is destroyed unrun, releasing what it captured
}

Status SimStream::record(Event& event) {
  EBB_ASSIGN_OR_RETURN(SimEvent * sim_event, as_sim_event(event, device_, "record"));
  sim_event->set_time(clock_.record(id_));
  return ok_status();
}

Status SimStream::wait(Event& event) {
  EBB_ASSIGN_OR_RETURN(SimEvent * sim_event, as_sim_event(event, device_, "wait"));
  // The latest record is captured now, so a later record() of the event does not move this wait.
  if (const std::optional<SimClock::Duration> t = sim_event->time()) clock_.wait(id_, *t);
  return ok_status();  // never recorded: no wait, as in CUDA
}

Status SimStream::synchronize() {
  clock_.synchronize_stream(id_);
  return ok_status();
}

Result<bool> SimStream::query() { return clock_.stream_done(id_); }

}  // namespace ebb
