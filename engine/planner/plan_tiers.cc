// assign_offload_tiers: the host tier's room over the iteration, filled in eviction order; what
// does not fit goes to NVMe, priced by the plan model.
#include "engine/planner/plan_tiers.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/planner/plan_model.h"

namespace ebb {
namespace {

// The model's step time for `evictions` (sorted as a plan's are).
std::int64_t model_step_ns(const Profile& profile, const HardwareModel& hardware,
                           const std::vector<Eviction>& evictions) {
  PlanModel model(profile, hardware, /*keep_rebuilt_ancestors=*/true);
  for (const Eviction& e : evictions) model.add(e);
  return model.predict().step_ns;
}

}  // namespace

Result<TierAssignment> assign_offload_tiers(Plan& plan, const Profile& profile,
                                            std::size_t host_tier_bytes) {
  if (host_tier_bytes == 0) {
    return invalid_argument("assign_offload_tiers: a host tier of 0 bytes");
  }
  const std::size_t ops = profile.ops.size();
  const bool has_nvme =
      plan.hardware.nvme_read_bytes_per_s > 0 && plan.hardware.nvme_write_bytes_per_s > 0;
  std::vector<Eviction> all_host = plan.evictions;
  for (Eviction& e : all_host) e.tier = OffloadTier::kHost;

  TierAssignment a;
  std::vector<std::size_t> held(ops + 1, 0);  // host bytes held at op k
  for (Eviction& e : plan.evictions) {
    if (e.method != EvictionMethod::kSwap) continue;
    if (e.tensor >= profile.tensors.size()) {
      return invalid_argument("assign_offload_tiers: eviction of tensor " +
                              std::to_string(e.tensor) + ", which the profile does not have");
    }
    const ProfiledTensor& t = profile.tensors[e.tensor];
    const std::size_t from = e.evict_after + 1;
    const std::size_t last_read = t.accesses.empty() ? e.evict_after : t.accesses.back();
    const std::size_t to = std::min(ops, e.needed_at.has_value() ? e.prefetch_at + 1 : last_read);
    std::size_t most = 0;
    for (std::size_t k = from; k < to; ++k) most = std::max(most, held[k]);
    if (most + t.bytes <= host_tier_bytes) {
      e.tier = OffloadTier::kHost;
      for (std::size_t k = from; k < to; ++k) held[k] += t.bytes;
      ++a.host_swaps;
      continue;
    }
    if (!has_nvme) {
      return invalid_argument("assign_offload_tiers: tensor " + std::to_string(e.tensor) + " (" +
                              std::to_string(t.bytes) + " bytes, swapped after op " +
                              std::to_string(e.evict_after) + ") does not fit the host tier of " +
                              std::to_string(host_tier_bytes) + " bytes beside " +
                              std::to_string(most) + " bytes already there, and hardware \"" +
                              plan.hardware.name + "\" has no NVMe tier");
    }
    e.tier = OffloadTier::kNvme;
    ++a.nvme_swaps;
  }
  a.peak_host_bytes = *std::max_element(held.begin(), held.end());
  if (a.nvme_swaps > 0) {
    a.added_step_ns =
        std::max<std::int64_t>(0, model_step_ns(profile, plan.hardware, plan.evictions) -
                                      model_step_ns(profile, plan.hardware, all_host));
    plan.predicted.step_ns += a.added_step_ns;
  }
  return a;
}

}  // namespace ebb
