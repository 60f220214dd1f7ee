// EventPool: device events for reuse, so that timing an op or ordering a copy does not create
// and destroy an event each time (cudaEventCreate costs microseconds).
//
// Ownership: owns every event it made; they are destroyed with the pool, which must happen
// before the Device goes. An event handed out by acquire() stays the pool's: give it back with
// release().
// Thread safety: thread-safe (one mutex, held only to push or pop the free list).
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb {

class EventPool {
 public:
  explicit EventPool(Device& device) : device_(device) {}
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;

  // A free event, or a new one; errors from the device are returned as they are.
  Result<Event*> acquire();
  // REQUIRES: `event` came from acquire() and no queued wait still needs its latest record
  // (a wait captures the record when it is enqueued, so a re-record is harmless).
  void release(Event* event);

 private:
  Device& device_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Event>> events_;  // GUARDED_BY(mu_)
  std::vector<Event*> free_;                    // GUARDED_BY(mu_)
};

}  // namespace ebb
