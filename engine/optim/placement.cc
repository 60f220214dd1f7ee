#include "engine/optim/placement.h"

namespace ebb {

std::string_view placement_name(StatePlacement p) {
  switch (p) {
    case StatePlacement::kDevice:
      return "device";
    case StatePlacement::kHost:
      return "host";
    case StatePlacement::kNvme:
      return "nvme";
  }
  return "unknown";
}

std::string_view state_policy_name(StatePolicy p) {
  return p == StatePolicy::kAuto ? "auto" : placement_name(static_cast<StatePlacement>(p));
}

std::optional<StatePlacement> placement_from_name(std::string_view name) {
  for (StatePlacement p : {StatePlacement::kDevice, StatePlacement::kHost, StatePlacement::kNvme}) {
    if (placement_name(p) == name) return p;
  }
  return std::nullopt;
}

std::optional<StatePolicy> state_policy_from_name(std::string_view name) {
  if (name == "auto") return StatePolicy::kAuto;
  const std::optional<StatePlacement> p = placement_from_name(name);
  if (!p.has_value()) return std::nullopt;
  return static_cast<StatePolicy>(*p);
}

}  // namespace ebb
