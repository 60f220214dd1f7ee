// Timeline: one profiled iteration laid out in time on the lanes a report draws and a Chrome
// trace lists: the compute stream, the host link in each direction, the NVMe tier's I/O and the
// communication lane. Ops take their profiled (measured) durations on the compute stream, one
// after another; ZeRO's collectives (ops named "zero.*") run on the communication lane while the
// compute stream waits for them, as the engine runs them (ops on the compute stream, see
// docs/ARCHITECTURE.md, "ZeRO"). With a plan, its copies take the plan's hardware model's link
// time (latency plus bytes over bandwidth) in FIFO order per lane, its replays run on the
// compute stream before the op that rebuilds the tensor, and an op waits for a copy back that
// has not arrived. This is the report's model of the plan, simpler than the simulator (no
// allocator, no replay chains): its figures are labelled as the model's.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"

namespace ebb::report {

enum class Lane : std::size_t {
  kCompute,
  kDeviceToHost,
  kHostToDevice,
  kNvme,
  kCommunication,
};
inline constexpr std::size_t kLanes = 5;

// "compute", "d2h", "h2d", "nvme", "communication".
std::string_view lane_id(Lane lane);
// "compute stream", "host link: device to host", "host link: host to device", "NVMe I/O",
// "communication".
std::string_view lane_label(Lane lane);
// The same, short enough for the report's lane labels: "compute", "link to host", ...
std::string_view lane_short_label(Lane lane);

struct TimelineEvent {
  Lane lane = Lane::kCompute;
  std::string name;  // the op's name, or what moves ("swap out attn.0.qkv")
  std::string
      category;  // op, collective, recompute, wait, swap_out, swap_in, nvme_write, nvme_read
  std::int64_t start_ns = 0;
  std::int64_t duration_ns = 0;
  std::optional<std::size_t> op;      // the profile op it runs or belongs to
  std::optional<std::size_t> tensor;  // the tensor it moves or rebuilds
  std::size_t bytes = 0;              // bytes moved (copies, I/O)

  std::int64_t end_ns() const { return start_ns + duration_ns; }
};

struct Timeline {
  // Per lane, in start order; events of one lane never overlap.
  std::vector<TimelineEvent> events;
  std::vector<std::int64_t> op_start_ns;  // per profile op, its start on its lane
  std::int64_t step_ns = 0;               // the end of the last event
  std::int64_t base_compute_ns = 0;       // the profile's op time (collectives excluded)
  std::int64_t extra_compute_ns = 0;      // replays
  std::int64_t exposed_transfer_ns = 0;   // compute waiting for copies back
  std::int64_t communication_ns = 0;      // collectives, during which compute waits
};

// REQUIRES: validate_profile passes; a plan passes validate_plan against `profile`.
Timeline build_timeline(const Profile& profile, const Plan* plan);

}  // namespace ebb::report
