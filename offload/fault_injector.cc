#include "offload/fault_injector.h"

namespace ebb {

std::string_view fault_kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::kIoError:
      return "EIO";
    case FaultKind::kShort:
      return "short";
    case FaultKind::kNoSpace:
      return "ENOSPC";
    case FaultKind::kBitFlip:
      return "bit flip";
  }
  return "unknown";
}

void FaultInjector::arm(FaultDirection direction, FaultKind kind, std::uint64_t nth) {
  std::lock_guard<std::mutex> lock(mu_);
  armed_[static_cast<int>(direction)] = Armed{.kind = kind, .countdown = nth, .armed = true};
}

void FaultInjector::disarm() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_[0].armed = false;
  armed_[1].armed = false;
}

std::optional<FaultKind> FaultInjector::next(FaultDirection direction) {
  std::lock_guard<std::mutex> lock(mu_);
  Armed& a = armed_[static_cast<int>(direction)];
  if (!a.armed) return std::nullopt;
  if (a.countdown > 0) {
    --a.countdown;
    return std::nullopt;
  }
  a.armed = false;
  ++fired_;
  return a.kind;
}

std::uint64_t FaultInjector::fired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

}  // namespace ebb
