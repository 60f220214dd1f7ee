#include "engine/planner/state_placement.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace ebb {
namespace {

constexpr std::size_t kGranules = 4096;
constexpr double kNever = std::numeric_limits<double>::infinity();

std::string mib(std::size_t bytes) {
  return std::to_string(bytes >> 20) + " MiB (" + std::to_string(bytes) + " bytes)";
}

}  // namespace

std::string_view state_choice_name(StateChoice c) {
  switch (c) {
    case StateChoice::kResident:
      return "device";
    case StateChoice::kSwapped:
      return "swapped";
    case StateChoice::kHost:
      return "host";
    case StateChoice::kNvme:
      return "nvme";
  }
  return "unknown";
}

StatePlacement placement_of(StateChoice c) {
  switch (c) {
    case StateChoice::kHost:
      return StatePlacement::kHost;
    case StateChoice::kNvme:
      return StatePlacement::kNvme;
    case StateChoice::kResident:
    case StateChoice::kSwapped:
      break;
  }
  return StatePlacement::kDevice;
}

double state_choice_seconds(const StatePlacementInputs& in, std::size_t i, StateChoice choice) {
  const StateSliceCost& s = in.slices[i];
  const auto state = static_cast<double>(s.state_bytes);
  // The rates are bytes of state updated per second (each read and written once).
  const double device = state / in.device_state_bytes_per_s;
  const double host =
      state / in.cpu_state_bytes_per_s +
      static_cast<double>(s.gradient_bytes + s.parameter_bytes) / in.link_bytes_per_s;
  switch (choice) {
    case StateChoice::kResident:
      return device;
    case StateChoice::kSwapped:
      return in.allow_swap ? device + 2 * state / in.link_bytes_per_s : kNever;
    case StateChoice::kHost:
      return host;
    case StateChoice::kNvme:
      if (in.nvme_read_bytes_per_s <= 0 || in.nvme_write_bytes_per_s <= 0) return kNever;
      return host + state / in.nvme_read_bytes_per_s + state / in.nvme_write_bytes_per_s;
  }
  return kNever;
}

Result<StatePlacementPlan> plan_state_placement(const StatePlacementInputs& in) {
  if (in.slices.empty()) return invalid_argument("state placement: no slices");
  if (!(in.link_bytes_per_s > 0) || !(in.device_state_bytes_per_s > 0) ||
      !(in.cpu_state_bytes_per_s > 0) || in.nvme_read_bytes_per_s < 0 ||
      in.nvme_write_bytes_per_s < 0) {
    return invalid_argument(
        "state placement: the host link, device and CPU state bandwidths must be > 0 (and the "
        "NVMe ones >= 0)");
  }
  const std::size_t n = in.slices.size();
  StatePlacementPlan plan;
  plan.smallest_budget_bytes = std::max(in.other_peak_bytes, in.step_other_bytes);
  if (in.budget_bytes < plan.smallest_budget_bytes) {
    return out_of_memory("--optimizer-state auto: a device budget of " + mib(in.budget_bytes) +
                         " is below the smallest feasible one, " + mib(plan.smallest_budget_bytes) +
                         ", with every slice's state off the device (forward and backward need " +
                         mib(in.other_peak_bytes) + ", the step " + mib(in.step_other_bytes) +
                         " without it)");
  }
  const std::size_t avail_forward = in.budget_bytes - in.other_peak_bytes;
  const std::size_t avail_step = in.budget_bytes - in.step_other_bytes;
  const std::size_t granule =
      std::max<std::size_t>(1, (std::min(avail_forward, avail_step) + kGranules - 1) / kGranules);
  const auto weight = [&](std::size_t k) {
    return (in.slices[k].state_bytes + granule - 1) / granule;
  };
  std::vector<double> resident(n);
  for (std::size_t k = 0; k < n; ++k) {
    resident[k] = state_choice_seconds(in, k, StateChoice::kResident);
  }
  // The cheapest move of slice k when slices up to `largest_swap` bytes may be swapped.
  const auto best_move = [&](std::size_t k, std::size_t largest_swap, StateChoice& how) {
    double best = kNever;
    for (StateChoice c : {StateChoice::kHost, StateChoice::kNvme, StateChoice::kSwapped}) {
      if (c == StateChoice::kSwapped && in.slices[k].state_bytes > largest_swap) continue;
      const double t = state_choice_seconds(in, k, c);
      if (t < best) {
        best = t;
        how = c;
      }
    }
    return best;
  };
  double best_total = kNever;
  std::vector<StateChoice> best_choice;
  // m == n: nothing swapped.
  for (std::size_t m = 0; m <= n; ++m) {
    std::size_t largest_swap = 0;
    if (m < n) {
      if (!in.allow_swap) continue;
      largest_swap = in.slices[m].state_bytes;
      if (largest_swap > avail_step) continue;
    }
    const std::size_t cap = std::min(avail_forward, avail_step - largest_swap);
    const std::size_t capacity = cap / granule;
    std::vector<double> move(n);
    std::vector<StateChoice> how(n, StateChoice::kHost);
    for (std::size_t k = 0; k < n; ++k) {
      move[k] = best_move(k, largest_swap, how[k]);
    }
    // Knapsack: keeping slice k resident saves move[k] - resident[k].
    std::vector<double> saved(capacity + 1, 0.0);
    std::vector<std::vector<std::uint8_t>> kept(n, std::vector<std::uint8_t>(capacity + 1, 0));
    for (std::size_t k = 0; k < n; ++k) {
      const double gain = move[k] - resident[k];
      const std::size_t w = weight(k);
      if (!(gain > 0) || w > capacity) continue;
      for (std::size_t c = capacity; c >= w; --c) {
        if (saved[c - w] + gain > saved[c]) {
          saved[c] = saved[c - w] + gain;
          kept[k][c] = 1;
        }
        if (c == w) break;
      }
    }
    std::vector<StateChoice> choice = how;
    std::size_t c = capacity;
    for (std::size_t k = n; k-- > 0;) {
      if (kept[k][c] != 0) {
        choice[k] = StateChoice::kResident;
        c -= weight(k);
      }
    }
    double total = 0;
    for (std::size_t k = 0; k < n; ++k) {
      total += choice[k] == StateChoice::kResident ? resident[k] : move[k];
    }
    if (total < best_total) {
      best_total = total;
      best_choice = choice;
    }
  }
  plan.predicted_s = best_total;
  std::size_t resident_bytes = 0;
  std::size_t largest_swapped = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const StateChoice c = best_choice[k];
    plan.slices.push_back({.name = in.slices[k].name,
                           .choice = c,
                           .state_bytes = in.slices[k].state_bytes,
                           .predicted_s = state_choice_seconds(in, k, c)});
    if (c == StateChoice::kResident) resident_bytes += in.slices[k].state_bytes;
    if (c == StateChoice::kSwapped) {
      largest_swapped = std::max(largest_swapped, in.slices[k].state_bytes);
    }
  }
  plan.forward_peak_bytes = in.other_peak_bytes + resident_bytes;
  plan.step_peak_bytes = in.step_other_bytes + resident_bytes + largest_swapped;
  return plan;
}

Result<StatePlacementInputs> state_placement_inputs(const Profile& profile,
                                                    std::size_t budget_bytes,
                                                    const HardwareModel& hardware,
                                                    double cpu_state_bytes_per_s) {
  // The slice of a tensor: its name up to the last '.' ("decay.s3" of "decay.s3.adamw_m").
  const auto prefix = [](const std::string& name) {
    const std::size_t dot = name.rfind('.');
    return dot == std::string::npos ? name : name.substr(0, dot);
  };
  std::map<std::string, std::size_t> index;  // slice name -> position in in.slices
  StatePlacementInputs in;
  std::size_t state = 0;
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.kind != TensorKind::kOptimizerState) continue;
    const std::string slice = prefix(t.name);
    auto [at, fresh] = index.emplace(slice, in.slices.size());
    if (fresh) in.slices.push_back({.name = slice});
    in.slices[at->second].state_bytes += t.bytes;
    state += t.bytes;
  }
  if (in.slices.empty()) {
    return invalid_argument(
        "--optimizer-state auto: the profile has no optimizer state (no tensor of kind "
        "optimizer_state): profile a training step whose state is on the device");
  }
  std::size_t model = 0;
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.kind != TensorKind::kGradient && t.kind != TensorKind::kParameter) continue;
    if (t.producer.has_value()) continue;  // a view's or an op's output, not a slice buffer
    model += t.bytes;
    auto at = index.find(prefix(t.name));
    if (at == index.end()) continue;
    StateSliceCost& s = in.slices[at->second];
    (t.kind == TensorKind::kGradient ? s.gradient_bytes : s.parameter_bytes) += t.bytes;
  }
  // The device's rate: the state the updating ops write, over their time.
  std::size_t written = 0;
  std::int64_t ns = 0;
  for (const ProfiledOp& op : profile.ops) {
    std::size_t bytes = 0;
    for (std::size_t w : op.writes) {
      if (profile.tensors[w].kind == TensorKind::kOptimizerState) bytes += profile.tensors[w].bytes;
    }
    if (bytes == 0) continue;
    written += bytes;
    ns += op.duration_ns;
  }
  if (written == 0 || ns <= 0) {
    return invalid_argument(
        "--optimizer-state auto: no op of the profile writes optimizer state in measured time, so "
        "the device's step cannot be timed");
  }
  in.device_state_bytes_per_s = static_cast<double>(written) / (static_cast<double>(ns) * 1e-9);
  const std::size_t peak = profile_figures(profile).peak_live_bytes;
  in.other_peak_bytes = peak - std::min(peak, state);
  in.step_other_bytes = model;
  in.budget_bytes = budget_bytes;
  in.link_bytes_per_s =
      std::min(hardware.host_to_device_bytes_per_s, hardware.device_to_host_bytes_per_s);
  in.nvme_read_bytes_per_s = hardware.nvme_read_bytes_per_s;
  in.nvme_write_bytes_per_s = hardware.nvme_write_bytes_per_s;
  in.cpu_state_bytes_per_s = cpu_state_bytes_per_s;
  in.allow_swap = hardware.has_host_link();
  return in;
}

std::vector<StateSliceDecision> state_decisions(const StatePlacementPlan& plan) {
  std::vector<StateSliceDecision> out;
  for (const StateSliceChoice& c : plan.slices) {
    out.push_back({.slice = c.name,
                   .choice = std::string(state_choice_name(c.choice)),
                   .state_bytes = c.state_bytes,
                   .predicted_s = c.predicted_s});
  }
  return out;
}

}  // namespace ebb
