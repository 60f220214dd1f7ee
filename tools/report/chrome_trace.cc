#include "tools/report/chrome_trace.h"

#include <nlohmann/json.hpp>

namespace ebb::report {
namespace {

constexpr int kDevicePid = 1;

int lane_tid(Lane lane) { return static_cast<int>(lane) + 1; }

// Microseconds, the format's unit, from nanoseconds without losing them.
double us(std::int64_t ns) { return static_cast<double>(ns) / 1000.0; }

nlohmann::ordered_json metadata(const std::string& what, int tid, const std::string& name) {
  nlohmann::ordered_json m;
  m["name"] = what;
  m["ph"] = "M";
  m["pid"] = kDevicePid;
  m["tid"] = tid;
  m["args"] = {{"name", name}};
  return m;
}

nlohmann::ordered_json complete_event(const TimelineEvent& e) {
  nlohmann::ordered_json x;
  x["name"] = e.name;
  x["cat"] = e.category;
  x["ph"] = "X";
  x["ts"] = us(e.start_ns);
  x["dur"] = us(e.duration_ns);
  x["pid"] = kDevicePid;
  x["tid"] = lane_tid(e.lane);
  nlohmann::ordered_json args = nlohmann::ordered_json::object();
  if (e.op.has_value()) args["op"] = *e.op;
  if (e.tensor.has_value()) args["tensor"] = *e.tensor;
  if (e.bytes > 0) args["bytes"] = e.bytes;
  x["args"] = args;
  return x;
}

nlohmann::ordered_json memory_counter(const MemoryCurve& curve, const Timeline& timeline,
                                      std::size_t k) {
  nlohmann::ordered_json c;
  c["name"] = "device memory (bytes)";
  c["ph"] = "C";
  c["ts"] = us(timeline.op_start_ns[k]);
  c["pid"] = kDevicePid;
  nlohmann::ordered_json args = nlohmann::ordered_json::object();
  for (MemoryCategory category : curve.present) {
    args[std::string(category_id(category))] =
        curve.after_op[k][static_cast<std::size_t>(category)];
  }
  c["args"] = args;
  return c;
}

}  // namespace

std::string chrome_trace_json(const ReportInput& input, const Timeline& timeline,
                              const MemoryCurve& curve) {
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  const std::string device = input.profile.device.empty() ? "device" : input.profile.device;
  events.push_back(metadata("process_name", 0, "ebb: " + device));
  for (std::size_t l = 0; l < kLanes; ++l) {
    const auto lane = static_cast<Lane>(l);
    events.push_back(metadata("thread_name", lane_tid(lane), std::string(lane_label(lane))));
  }
  for (const TimelineEvent& e : timeline.events) events.push_back(complete_event(e));
  for (std::size_t k = 0; k < curve.after_op.size(); ++k) {
    events.push_back(memory_counter(curve, timeline, k));
  }
  nlohmann::ordered_json trace;
  trace["traceEvents"] = std::move(events);
  trace["displayTimeUnit"] = "ns";
  trace["otherData"] = {{"origin", input.origin}, {"title", input.title}};
  return trace.dump() + "\n";
}

}  // namespace ebb::report
