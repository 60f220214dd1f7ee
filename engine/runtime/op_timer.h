// OpTimer: measures op durations on a stream with pairs of device events (from an EventPool),
// read lazily.
//
// Timing an op costs two event records; the elapsed time is read once the end event has
// completed (poll()), never by waiting, so timing does not serialise the host with the device.
// When more than kMaxPendingTimings ops are still in flight, further ops go untimed and keep
// the last known cost of their name (the engine's table).
//
// Ownership: borrows its events from the EventPool, which must outlive it.
// Thread safety: not thread-safe; the engine's driving thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "kernels/device.h"
#include "kernels/event_pool.h"
#include "kernels/status.h"

namespace ebb {

class OpTimer {
 public:
  static constexpr std::size_t kMaxPendingTimings = 64;

  explicit OpTimer(EventPool& events) : events_(events) {}

  // A timing in flight: the events to record around one launch of op `op_index`.
  struct Timing {
    Event* start = nullptr;
    Event* end = nullptr;
  };
  // Events for op `op_index`, or {} when too many timings are in flight.
  Timing begin(std::size_t op_index);
  // Forgets the timing begin() just returned (its events were not recorded).
  void abandon_last();
  // Reports each completed timing, in launch order, as sink(op_index, nanoseconds) and returns
  // its events to the pool; with `wait`, waits for all of them. Returns the first event error.
  template <typename Sink>
  Status drain_completed(Sink&& sink, bool wait);

 private:
  struct Pending {
    std::size_t op_index;
    Timing timing;
  };
  EventPool& events_;
  std::deque<Pending> pending_;
};

template <typename Sink>
Status OpTimer::drain_completed(Sink&& sink, bool wait) {
  while (!pending_.empty()) {
    Pending& p = pending_.front();
    if (wait) {
      EBB_RETURN_IF_ERROR(p.timing.end->synchronize());
    } else {
      EBB_ASSIGN_OR_RETURN(bool done, p.timing.end->query());
      if (!done) break;
    }
    EBB_ASSIGN_OR_RETURN(double ms, p.timing.end->elapsed_ms_since(*p.timing.start));
    sink(p.op_index, static_cast<std::int64_t>(ms * 1e6));
    events_.release(p.timing.start);
    events_.release(p.timing.end);
    pending_.pop_front();
  }
  return ok_status();
}

}  // namespace ebb
