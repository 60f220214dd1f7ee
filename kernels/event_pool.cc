#include "kernels/event_pool.h"

#include <utility>

namespace ebb {

Result<Event*> EventPool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      Event* event = free_.back();
      free_.pop_back();
      return event;
    }
  }
  // Created outside the lock: on cuda it is a driver call.
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<Event> event, device_.create_event());
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(event));
  return events_.back().get();
}

void EventPool::release(Event* event) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(event);
}

}  // namespace ebb
