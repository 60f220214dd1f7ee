#include "tools/report/run_reports.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace ebb::report {

TemporaryProfile::TemporaryProfile(const std::string& command)
    : path_((std::filesystem::temp_directory_path() /
             ("ebb-" + command + "-profile-" + std::to_string(getpid()) + ".json"))
                .string()) {}

TemporaryProfile::~TemporaryProfile() {
  std::error_code ignored;  // a run that failed early wrote none
  std::filesystem::remove(path_, ignored);
}

Status write_train_reports(const std::string& profile_path, const train::TrainResult& result,
                           const ReportPaths& paths) {
  if (paths.empty()) return ok_status();
  ReportInput input;
  input.title = "ebb train";
  input.origin = std::string("ebb train: the warm-up's profile (op times measured") +
                 (result.simulated ? " on the sim device's clock" : "") + ")";
  EBB_ASSIGN_OR_RETURN(input.profile, read_profile(profile_path));
  if (result.plan.has_value()) {
    EBB_ASSIGN_OR_RETURN(input.profile, profile_for_plan(input.profile, *result.plan, "of this run",
                                                         "followed by this run"));
    input.plan = result.plan;
    input.origin += ", the plan it followed (" + result.plan->policy + ")";
  }
  input.budget_bytes = result.budget_bytes;
  // The steps after the warm-up are the ones a plan was followed in; with none, every step.
  input.measured_step_ms =
      result.steady_ms_median > 0 ? result.steady_ms_median : result.ms_per_step_median;
  input.measured_peak_reserved_bytes = result.steady_peak_reserved_bytes > 0
                                           ? result.steady_peak_reserved_bytes
                                           : result.peak_reserved_bytes;
  input.origin += ", and the measured steps";
  return write_report_files(input, paths);
}

Status write_plan_reports(const Profile& profile, const std::string& profile_name,
                          const std::optional<Plan>& plan, std::size_t budget_bytes,
                          const ReportPaths& paths) {
  if (paths.empty()) return ok_status();
  ReportInput input;
  input.title = profile_name;
  input.origin = "ebb plan: profile " + profile_name;
  input.profile = profile;
  input.budget_bytes = budget_bytes;
  if (plan.has_value()) {
    EBB_ASSIGN_OR_RETURN(input.profile,
                         profile_for_plan(profile, *plan, profile_name, "made by ebb plan"));
    input.plan = plan;
    input.origin += ", plan " + plan->policy + " checked on the sim device";
  } else {
    input.origin += ", dynamic eviction (no plan)";
  }
  return write_report_files(input, paths);
}

}  // namespace ebb::report
