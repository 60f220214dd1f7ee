#include "engine/runtime/op_timer.h"

#include <utility>

namespace ebb {

OpTimer::Timing OpTimer::begin(std::size_t op_index) {
  if (pending_.size() >= kMaxPendingTimings) return {};
  Result<Event*> start = events_.acquire();
  if (!start.ok()) return {};
  Result<Event*> end = events_.acquire();
  if (!end.ok()) {
    events_.release(*start);
    return {};
  }
  Timing timing{*start, *end};
  pending_.push_back(Pending{op_index, timing});
  return timing;
}

void OpTimer::abandon_last() {
  events_.release(pending_.back().timing.start);
  events_.release(pending_.back().timing.end);
  pending_.pop_back();
}

}  // namespace ebb
