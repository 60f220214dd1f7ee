#include "tools/report/timeline.h"

#include <algorithm>
#include <array>
#include <string>

namespace ebb::report {
namespace {

bool is_collective(const ProfiledOp& op) { return op.name.rfind("zero.", 0) == 0; }

// The plan's evictions indexed by the op they act at.
struct PlanIndex {
  std::vector<std::vector<const Eviction*>> out_after;      // swaps copied out after op k
  std::vector<std::vector<const Eviction*>> in_before;      // swaps copied back before op k
  std::vector<std::vector<const Eviction*>> replay_before;  // recomputes rebuilt before op k
  std::vector<std::vector<std::size_t>> wait_before;        // evictions op k reads (needed_at)
};

PlanIndex index_plan(const Plan& plan, std::size_t ops) {
  PlanIndex index{std::vector<std::vector<const Eviction*>>(ops),
                  std::vector<std::vector<const Eviction*>>(ops),
                  std::vector<std::vector<const Eviction*>>(ops),
                  std::vector<std::vector<std::size_t>>(ops)};
  for (std::size_t i = 0; i < plan.evictions.size(); ++i) {
    const Eviction& e = plan.evictions[i];
    if (e.method == EvictionMethod::kSwap) index.out_after[e.evict_after].push_back(&e);
    if (!e.needed_at.has_value()) continue;
    if (e.method == EvictionMethod::kSwap) {
      index.in_before[e.prefetch_at].push_back(&e);
      index.wait_before[*e.needed_at].push_back(i);
    } else {
      index.replay_before[e.prefetch_at].push_back(&e);
    }
  }
  return index;
}

// Lays the iteration out op by op; owns the lanes' clocks while it does.
class TimelineBuilder {
 public:
  TimelineBuilder(const Profile& profile, const Plan* plan) : profile_(profile), plan_(plan) {
    if (plan != nullptr) {
      index_ = index_plan(*plan, profile.ops.size());
      arrival_ns_.assign(plan->evictions.size(), 0);
      stored_ns_.assign(plan->evictions.size(), 0);
    }
    timeline_.op_start_ns.resize(profile.ops.size());
  }

  Timeline build() {
    for (std::size_t k = 0; k < profile_.ops.size(); ++k) {
      if (plan_ != nullptr) before_op(k);
      run_op(k);
      if (plan_ != nullptr) after_op(k);
    }
    for (const TimelineEvent& e : timeline_.events) {
      timeline_.step_ns = std::max(timeline_.step_ns, e.end_ns());
    }
    std::stable_sort(timeline_.events.begin(), timeline_.events.end(),
                     [](const TimelineEvent& a, const TimelineEvent& b) {
                       return a.lane != b.lane ? a.lane < b.lane : a.start_ns < b.start_ns;
                     });
    return std::move(timeline_);
  }

 private:
  // The link's time for `bytes` at `bytes_per_s`, its latency included.
  std::int64_t copy_ns(std::size_t bytes, double bytes_per_s) const {
    const auto latency = static_cast<std::int64_t>(plan_->hardware.link_latency.count());
    if (bytes_per_s <= 0) return latency;
    return latency + static_cast<std::int64_t>(static_cast<double>(bytes) / bytes_per_s * 1e9);
  }

  // The clock a lane's next event waits for; a link that is not duplex has one for both ways.
  std::int64_t& lane_clock(Lane lane) {
    if (lane == Lane::kHostToDevice && !plan_->hardware.duplex) lane = Lane::kDeviceToHost;
    return clock_[static_cast<std::size_t>(lane)];
  }

  std::int64_t add(Lane lane, std::string name, std::string_view category, std::int64_t earliest,
                   std::int64_t duration_ns, std::optional<std::size_t> op,
                   std::optional<std::size_t> tensor, std::size_t bytes) {
    std::int64_t& clock = lane_clock(lane);
    const std::int64_t start = std::max(earliest, clock);
    clock = start + duration_ns;
    timeline_.events.push_back(TimelineEvent{lane, std::move(name), std::string(category), start,
                                             duration_ns, op, tensor, bytes});
    return clock;
  }

  std::int64_t& compute_clock() { return clock_[static_cast<std::size_t>(Lane::kCompute)]; }

  void before_op(std::size_t k) {
    const HardwareModel& hw = plan_->hardware;
    for (const Eviction* e : index_.in_before[k]) {
      const ProfiledTensor& t = profile_.tensors[e->tensor];
      const auto i = static_cast<std::size_t>(e - plan_->evictions.data());
      // The copy back reads what the copy out (or the NVMe write) put there.
      std::int64_t ready = std::max(compute_clock(), stored_ns_[i]);
      if (e->tier == OffloadTier::kNvme) {
        ready = add(Lane::kNvme, "read " + t.name, "nvme_read", ready,
                    copy_ns(t.bytes, hw.nvme_read_bytes_per_s), k, t.id, t.bytes);
      }
      arrival_ns_[i] = add(Lane::kHostToDevice, "copy back " + t.name, "swap_in", ready,
                           copy_ns(t.bytes, hw.host_to_device_bytes_per_s), k, t.id, t.bytes);
    }
    for (const Eviction* e : index_.replay_before[k]) {
      const ProfiledTensor& t = profile_.tensors[e->tensor];
      const ProfiledOp& producer = profile_.ops[*t.producer];
      add(Lane::kCompute, "recompute " + t.name + " (" + producer.name + ")", "recompute",
          compute_clock(), producer.duration_ns, producer.index, t.id, 0);
      timeline_.extra_compute_ns += producer.duration_ns;
    }
    std::int64_t arrived = compute_clock();
    for (std::size_t i : index_.wait_before[k]) arrived = std::max(arrived, arrival_ns_[i]);
    if (arrived > compute_clock()) {
      const std::int64_t wait_ns = arrived - compute_clock();
      timeline_.exposed_transfer_ns += wait_ns;
      add(Lane::kCompute, "wait for copies back", "wait", compute_clock(), wait_ns, k, std::nullopt,
          0);
    }
  }

  void run_op(std::size_t k) {
    const ProfiledOp& op = profile_.ops[k];
    const bool collective = is_collective(op);
    const Lane lane = collective ? Lane::kCommunication : Lane::kCompute;
    const std::int64_t start = compute_clock();
    const std::int64_t end = add(lane, op.name, collective ? "collective" : "op", start,
                                 op.duration_ns, k, std::nullopt, 0);
    timeline_.op_start_ns[k] = end - op.duration_ns;
    compute_clock() = std::max(compute_clock(), end);
    (collective ? timeline_.communication_ns : timeline_.base_compute_ns) += op.duration_ns;
  }

  void after_op(std::size_t k) {
    const HardwareModel& hw = plan_->hardware;
    for (const Eviction* e : index_.out_after[k]) {
      const ProfiledTensor& t = profile_.tensors[e->tensor];
      const auto i = static_cast<std::size_t>(e - plan_->evictions.data());
      stored_ns_[i] = add(Lane::kDeviceToHost, "swap out " + t.name, "swap_out", compute_clock(),
                          copy_ns(t.bytes, hw.device_to_host_bytes_per_s), k, t.id, t.bytes);
      if (e->tier == OffloadTier::kNvme) {
        stored_ns_[i] = add(Lane::kNvme, "write " + t.name, "nvme_write", stored_ns_[i],
                            copy_ns(t.bytes, hw.nvme_write_bytes_per_s), k, t.id, t.bytes);
      }
    }
  }

  const Profile& profile_;
  const Plan* plan_;
  PlanIndex index_;
  std::vector<std::int64_t> arrival_ns_;  // per eviction, when its copy back ends
  std::vector<std::int64_t> stored_ns_;   // per eviction, when its copy out (and write) ends
  std::array<std::int64_t, kLanes> clock_{};
  Timeline timeline_;
};

}  // namespace

std::string_view lane_id(Lane lane) {
  static constexpr std::string_view kIds[kLanes] = {"compute", "d2h", "h2d", "nvme",
                                                    "communication"};
  return kIds[static_cast<std::size_t>(lane)];
}

std::string_view lane_label(Lane lane) {
  static constexpr std::string_view kLabels[kLanes] = {
      "compute stream", "host link: device to host", "host link: host to device", "NVMe I/O",
      "communication"};
  return kLabels[static_cast<std::size_t>(lane)];
}

std::string_view lane_short_label(Lane lane) {
  static constexpr std::string_view kLabels[kLanes] = {
      "compute stream", "link to host", "link to device", "NVMe I/O", "communication"};
  return kLabels[static_cast<std::size_t>(lane)];
}

Timeline build_timeline(const Profile& profile, const Plan* plan) {
  return TimelineBuilder(profile, plan).build();
}

}  // namespace ebb::report
