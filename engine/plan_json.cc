// The JSON forms of HardwareModel and Plan (profiles/README.md, "The hardware profile format"
// and "The plan format") and the plan's atomic file I/O.

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/atomic_file.h"
#include "engine/json_fields.h"
#include "engine/plan.h"

namespace ebb {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// JsonFieldReader, and the field only plans and hardware profiles have.
class FieldReader : public JsonFieldReader {
 public:
  using JsonFieldReader::JsonFieldReader;

  // A bandwidth: a finite number >= 0.
  Result<double> bandwidth_field(const Json& object, const std::string& path,
                                 const char* key) const {
    EBB_ASSIGN_OR_RETURN(double v, number_field(object, path, key));
    if (!std::isfinite(v) || v < 0) {
      return fail(path + key, "must be a finite number of bytes per second >= 0, found " +
                                  object.at(key).dump());
    }
    return v;
  }
};

Result<HardwareModel> hardware_from(const Json& j, const FieldReader& r, const std::string& p) {
  if (!j.is_object()) return r.fail(p.empty() ? "(document)" : p, "expected a JSON object");
  HardwareModel m;
  EBB_ASSIGN_OR_RETURN(m.name, r.string_field(j, p, "name"));
  EBB_ASSIGN_OR_RETURN(m.host_to_device_bytes_per_s,
                       r.bandwidth_field(j, p, "host_to_device_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(m.device_to_host_bytes_per_s,
                       r.bandwidth_field(j, p, "device_to_host_bytes_per_s"));
  if ((m.host_to_device_bytes_per_s > 0) != (m.device_to_host_bytes_per_s > 0)) {
    const char* zero = m.host_to_device_bytes_per_s > 0 ? "device_to_host_bytes_per_s"
                                                        : "host_to_device_bytes_per_s";
    return r.fail(p + zero,
                  "is 0 while the other direction is not: a host link needs both "
                  "directions (set both to 0 for a device without one)");
  }
  EBB_ASSIGN_OR_RETURN(std::int64_t latency_ns, r.signed_field(j, p, "link_latency_ns"));
  if (latency_ns < 0) return r.fail(p + "link_latency_ns", "must be >= 0");
  m.link_latency = std::chrono::nanoseconds(latency_ns);
  EBB_ASSIGN_OR_RETURN(m.duplex, r.bool_field(j, p, "duplex"));
  // The NVMe tier is optional: a machine without one leaves both fields out.
  if (j.contains("nvme_read_bytes_per_s") || j.contains("nvme_write_bytes_per_s")) {
    EBB_ASSIGN_OR_RETURN(m.nvme_read_bytes_per_s, r.bandwidth_field(j, p, "nvme_read_bytes_per_s"));
    EBB_ASSIGN_OR_RETURN(m.nvme_write_bytes_per_s,
                         r.bandwidth_field(j, p, "nvme_write_bytes_per_s"));
  }
  // The mapping granularity is optional too: absent, the sim maps 2 MiB pages as CUDA does.
  if (j.contains("page_bytes")) {
    EBB_ASSIGN_OR_RETURN(std::int64_t page_bytes, r.signed_field(j, p, "page_bytes"));
    if (page_bytes < 0 || (page_bytes & (page_bytes - 1)) != 0) {
      return r.fail(p + "page_bytes", "must be 0 or a power of two");
    }
    m.page_bytes = static_cast<std::size_t>(page_bytes);
  }
  return m;
}

OrderedJson hardware_json(const HardwareModel& m) {
  return OrderedJson{{"name", m.name},
                     {"host_to_device_bytes_per_s", m.host_to_device_bytes_per_s},
                     {"device_to_host_bytes_per_s", m.device_to_host_bytes_per_s},
                     {"link_latency_ns", m.link_latency.count()},
                     {"duplex", m.duplex},
                     {"nvme_read_bytes_per_s", m.nvme_read_bytes_per_s},
                     {"nvme_write_bytes_per_s", m.nvme_write_bytes_per_s},
                     {"page_bytes", m.page_bytes}};
}

OrderedJson eviction_json(const Eviction& e) {
  return OrderedJson{{"tensor", e.tensor},
                     {"method", eviction_method_name(e.method)},
                     {"tier", offload_tier_name(e.tier)},
                     {"evict_after", e.evict_after},
                     {"prefetch_at", e.prefetch_at},
                     {"needed_at", e.needed_at ? OrderedJson(*e.needed_at) : OrderedJson()}};
}

Result<Eviction> eviction_from(const Json& j, const FieldReader& r, const std::string& at) {
  if (!j.is_object()) return r.fail(at, "expected an object");
  const std::string p = at + ".";
  Eviction e;
  EBB_ASSIGN_OR_RETURN(e.tensor, r.unsigned_field(j, p, "tensor"));
  EBB_ASSIGN_OR_RETURN(std::string method, r.string_field(j, p, "method"));
  if (method == "swap") {
    e.method = EvictionMethod::kSwap;
  } else if (method != "recompute") {
    return r.fail(p + "method", "expected \"swap\" or \"recompute\", found \"" + method + "\"");
  }
  EBB_ASSIGN_OR_RETURN(std::string tier, r.string_field(j, p, "tier"));
  if (tier == "nvme") {
    e.tier = OffloadTier::kNvme;
  } else if (tier != "host") {
    return r.fail(p + "tier", "expected \"host\" or \"nvme\", found \"" + tier + "\"");
  }
  EBB_ASSIGN_OR_RETURN(e.evict_after, r.unsigned_field(j, p, "evict_after"));
  EBB_ASSIGN_OR_RETURN(e.prefetch_at, r.unsigned_field(j, p, "prefetch_at"));
  EBB_ASSIGN_OR_RETURN(const Json* needed, r.member(j, p, "needed_at"));
  if (!needed->is_null()) {
    EBB_ASSIGN_OR_RETURN(e.needed_at, r.unsigned_field(j, p, "needed_at"));
  }
  return e;
}

std::string read_text(std::ifstream& in) {
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Result<HardwareModel> hardware_model_from_json(std::string_view text,
                                               const std::string& source_name) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  FieldReader r(source_name);
  if (root.is_discarded()) return r.fail("(document)", "not valid JSON");
  return hardware_from(root, r, "");
}

std::string hardware_model_to_json(const HardwareModel& model) {
  return hardware_json(model).dump(2) + "\n";
}

Result<HardwareModel> read_hardware_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open hardware profile " + path);
  std::string text = read_text(in);
  if (in.bad()) return io_error("error reading hardware profile " + path);
  return hardware_model_from_json(text, path);
}

std::string plan_to_json(const Plan& plan) {
  const PlanPrediction& p = plan.predicted;
  char fingerprint[32];
  std::snprintf(fingerprint, sizeof fingerprint, "%016" PRIx64, plan.profile.fingerprint);
  std::string out = "{\n";
  out += "\"version\": " + std::to_string(plan.version) + ",\n";
  out += "\"policy\": " + Json(plan.policy).dump() + ",\n";
  out += "\"budget_bytes\": " + std::to_string(plan.budget_bytes) + ",\n";
  out += "\"profile\": " +
         OrderedJson{{"ops", plan.profile.ops},
                     {"tensors", plan.profile.tensors},
                     {"fingerprint", fingerprint}}
             .dump() +
         ",\n";
  out += "\"hardware\": " + hardware_json(plan.hardware).dump() + ",\n";
  out += "\"predicted\": " +
         OrderedJson{{"peak_reserved_bytes", p.peak_reserved_bytes},
                     {"peak_live_bytes", p.peak_live_bytes},
                     {"base_compute_ns", p.base_compute_ns},
                     {"extra_compute_ns", p.extra_compute_ns},
                     {"step_ns", p.step_ns},
                     {"swapped_bytes", p.swapped_bytes},
                     {"recomputed_ops", p.recomputed_ops},
                     {"checked_on_sim", p.checked_on_sim}}
             .dump() +
         ",\n";
  out += "\"planner_seconds\": " + Json(plan.planner_seconds).dump() + ",\n";
  out += "\"evictions\": [";
  for (std::size_t i = 0; i < plan.evictions.size(); ++i) {
    out += (i ? ",\n  " : "\n  ") + eviction_json(plan.evictions[i]).dump();
  }
  out += plan.evictions.empty() ? "]\n" : "\n]\n";
  return out + "}\n";
}

Result<Plan> plan_from_json(std::string_view text, const std::string& source_name) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  FieldReader r(source_name);
  if (root.is_discarded()) return r.fail("(document)", "not valid JSON");
  if (!root.is_object()) return r.fail("(document)", "expected a JSON object");
  Plan plan;
  // The version first: a file of another version may differ in every other field.
  EBB_ASSIGN_OR_RETURN(std::int64_t version, r.signed_field(root, "", "version"));
  if (version != Plan::kSchemaVersion) {
    return r.fail("version", "plan schema version " + std::to_string(version) +
                                 " is not supported (this build reads version " +
                                 std::to_string(Plan::kSchemaVersion) + ")");
  }
  EBB_ASSIGN_OR_RETURN(plan.policy, r.string_field(root, "", "policy"));
  EBB_ASSIGN_OR_RETURN(plan.budget_bytes, r.unsigned_field(root, "", "budget_bytes"));
  EBB_ASSIGN_OR_RETURN(const Json* profile, r.object_field(root, "", "profile"));
  EBB_ASSIGN_OR_RETURN(plan.profile.ops, r.unsigned_field(*profile, "profile.", "ops"));
  EBB_ASSIGN_OR_RETURN(plan.profile.tensors, r.unsigned_field(*profile, "profile.", "tensors"));
  EBB_ASSIGN_OR_RETURN(std::string fingerprint,
                       r.string_field(*profile, "profile.", "fingerprint"));
  char* end = nullptr;
  plan.profile.fingerprint = std::strtoull(fingerprint.c_str(), &end, 16);
  if (fingerprint.empty() || fingerprint.size() > 16 || *end != '\0') {
    return r.fail("profile.fingerprint", "expected 16 hex digits, found \"" + fingerprint + "\"");
  }
  EBB_ASSIGN_OR_RETURN(const Json* hardware, r.object_field(root, "", "hardware"));
  EBB_ASSIGN_OR_RETURN(plan.hardware, hardware_from(*hardware, r, "hardware."));
  EBB_ASSIGN_OR_RETURN(const Json* predicted, r.object_field(root, "", "predicted"));
  const std::string pp = "predicted.";
  PlanPrediction& p = plan.predicted;
  EBB_ASSIGN_OR_RETURN(p.peak_reserved_bytes,
                       r.unsigned_field(*predicted, pp, "peak_reserved_bytes"));
  EBB_ASSIGN_OR_RETURN(p.peak_live_bytes, r.unsigned_field(*predicted, pp, "peak_live_bytes"));
  EBB_ASSIGN_OR_RETURN(p.base_compute_ns, r.signed_field(*predicted, pp, "base_compute_ns"));
  EBB_ASSIGN_OR_RETURN(p.extra_compute_ns, r.signed_field(*predicted, pp, "extra_compute_ns"));
  EBB_ASSIGN_OR_RETURN(p.step_ns, r.signed_field(*predicted, pp, "step_ns"));
  EBB_ASSIGN_OR_RETURN(p.swapped_bytes, r.unsigned_field(*predicted, pp, "swapped_bytes"));
  EBB_ASSIGN_OR_RETURN(p.recomputed_ops, r.signed_field(*predicted, pp, "recomputed_ops"));
  EBB_ASSIGN_OR_RETURN(p.checked_on_sim, r.bool_field(*predicted, pp, "checked_on_sim"));
  EBB_ASSIGN_OR_RETURN(plan.planner_seconds, r.number_field(root, "", "planner_seconds"));
  EBB_ASSIGN_OR_RETURN(const Json* evictions, r.member(root, "", "evictions"));
  if (!evictions->is_array()) return r.fail("evictions", "expected an array");
  plan.evictions.reserve(evictions->size());
  for (std::size_t i = 0; i < evictions->size(); ++i) {
    EBB_ASSIGN_OR_RETURN(Eviction e,
                         eviction_from((*evictions)[i], r, "evictions[" + std::to_string(i) + "]"));
    plan.evictions.push_back(e);
  }
  return plan;
}

Status write_plan(const Plan& plan, const std::string& path) {
  const std::string text = plan_to_json(plan);
  return write_file_atomically(path, text);
}

Result<Plan> read_plan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open plan " + path);
  std::string text = read_text(in);
  if (in.bad()) return io_error("error reading plan " + path);
  return plan_from_json(text, path);
}

}  // namespace ebb
