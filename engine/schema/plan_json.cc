// The JSON form of a Plan (profiles/README.md, "The plan format") and its atomic file I/O.

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/schema/atomic_file.h"
#include "engine/schema/hardware_model_json.h"
#include "engine/schema/json_fields.h"
#include "engine/schema/plan.h"

namespace ebb {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

OrderedJson eviction_json(const Eviction& e) {
  return OrderedJson{{"tensor", e.tensor},
                     {"method", eviction_method_name(e.method)},
                     {"tier", offload_tier_name(e.tier)},
                     {"evict_after", e.evict_after},
                     {"prefetch_at", e.prefetch_at},
                     {"needed_at", e.needed_at ? OrderedJson(*e.needed_at) : OrderedJson()}};
}

Result<Eviction> eviction_from(const Json& j, const JsonFieldReader& r, const std::string& at) {
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

}  // namespace

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
  out += "\"hardware\": " + hardware_model_json(plan.hardware).dump() + ",\n";
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
  if (!plan.state_placement.empty()) {
    out += "\"state_placement\": [";
    for (std::size_t i = 0; i < plan.state_placement.size(); ++i) {
      const StateSliceDecision& d = plan.state_placement[i];
      out += (i ? ",\n  " : "\n  ") + OrderedJson{{"slice", d.slice},
                                                  {"choice", d.choice},
                                                  {"state_bytes", d.state_bytes},
                                                  {"predicted_s", d.predicted_s}}
                                          .dump();
    }
    out += "\n],\n";
  }
  if (!plan.holds.empty()) {
    out += "\"holds\": [";
    for (std::size_t i = 0; i < plan.holds.size(); ++i) {
      out += (i ? ",\n  " : "\n  ") +
             OrderedJson{{"tensor", plan.holds[i].tensor}, {"until", plan.holds[i].until}}.dump();
    }
    out += "\n],\n";
  }
  out += "\"evictions\": [";
  for (std::size_t i = 0; i < plan.evictions.size(); ++i) {
    out += (i ? ",\n  " : "\n  ") + eviction_json(plan.evictions[i]).dump();
  }
  out += plan.evictions.empty() ? "]\n" : "\n]\n";
  return out + "}\n";
}

Result<Plan> plan_from_json(std::string_view text, const std::string& source_name) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  JsonFieldReader r(source_name);
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
  EBB_ASSIGN_OR_RETURN(plan.hardware, hardware_model_from(*hardware, r, "hardware."));
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
  if (root.contains("state_placement")) {
    EBB_ASSIGN_OR_RETURN(const Json* slices, r.member(root, "", "state_placement"));
    if (!slices->is_array()) return r.fail("state_placement", "expected an array");
    for (std::size_t i = 0; i < slices->size(); ++i) {
      const std::string at = "state_placement[" + std::to_string(i) + "].";
      const Json& j = (*slices)[i];
      if (!j.is_object()) return r.fail(at, "expected an object");
      StateSliceDecision d;
      EBB_ASSIGN_OR_RETURN(d.slice, r.string_field(j, at, "slice"));
      EBB_ASSIGN_OR_RETURN(d.choice, r.string_field(j, at, "choice"));
      if (d.choice != "device" && d.choice != "swapped" && d.choice != "host" &&
          d.choice != "nvme") {
        return r.fail(at + "choice", "\"" + d.choice + "\" is not device, swapped, host or nvme");
      }
      EBB_ASSIGN_OR_RETURN(d.state_bytes, r.unsigned_field(j, at, "state_bytes"));
      EBB_ASSIGN_OR_RETURN(d.predicted_s, r.number_field(j, at, "predicted_s"));
      plan.state_placement.push_back(std::move(d));
    }
  }
  if (root.contains("holds")) {
    EBB_ASSIGN_OR_RETURN(const Json* holds, r.member(root, "", "holds"));
    if (!holds->is_array()) return r.fail("holds", "expected an array");
    for (std::size_t i = 0; i < holds->size(); ++i) {
      const std::string at = "holds[" + std::to_string(i) + "].";
      const Json& j = (*holds)[i];
      if (!j.is_object()) return r.fail(at, "expected an object");
      Hold h;
      EBB_ASSIGN_OR_RETURN(h.tensor, r.unsigned_field(j, at, "tensor"));
      EBB_ASSIGN_OR_RETURN(h.until, r.unsigned_field(j, at, "until"));
      plan.holds.push_back(h);
    }
  }
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
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "plan"));
  return plan_from_json(text, path);
}

}  // namespace ebb
