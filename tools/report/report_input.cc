#include "tools/report/report_input.h"

#include <cstdio>

#include "engine/planner/simulator.h"

namespace ebb::report {

std::string describe_key(const ProfileKey& key) {
  char fingerprint[24];
  std::snprintf(fingerprint, sizeof fingerprint, "0x%016llx",
                static_cast<unsigned long long>(key.fingerprint));
  return "ops " + std::to_string(key.ops) + ", tensors " + std::to_string(key.tensors) +
         ", fingerprint " + fingerprint;
}

Result<Profile> profile_for_plan(const Profile& profile, const Plan& plan,
                                 const std::string& profile_name, const std::string& plan_name) {
  Profile matched;
  if (plan.profile == profile_key(profile)) {
    matched = profile;
  } else {
    Profile engine_shaped = as_engine_runs(profile);
    if (plan.profile != profile_key(engine_shaped)) {
      return invalid_argument("plan " + plan_name + " was made for another profile: its key is (" +
                              describe_key(plan.profile) + "), profile " + profile_name +
                              " has key (" + describe_key(profile_key(profile)) + ")");
    }
    matched = std::move(engine_shaped);
  }
  EBB_RETURN_IF_ERROR(validate_plan(plan, matched, plan_name));
  return matched;
}

Result<ReportInput> read_report_input(const std::string& profile_path,
                                      const std::string& plan_path) {
  ReportInput input;
  input.title = profile_path;
  input.origin = "ebb report: profile " + profile_path;
  EBB_ASSIGN_OR_RETURN(input.profile, read_profile(profile_path));
  if (plan_path.empty()) return input;
  EBB_ASSIGN_OR_RETURN(Plan plan, read_plan(plan_path));
  EBB_ASSIGN_OR_RETURN(input.profile,
                       profile_for_plan(input.profile, plan, profile_path, plan_path));
  input.origin += ", plan " + plan_path + " (" + plan.policy + ")";
  input.budget_bytes = plan.budget_bytes;
  input.plan = std::move(plan);
  return input;
}

}  // namespace ebb::report
