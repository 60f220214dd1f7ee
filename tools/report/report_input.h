// ReportInput: what a report (tools/report/report_html.h) and a Chrome trace
// (tools/report/chrome_trace.h) are made from: one profiled iteration, the plan made for it if
// any, the budget, and the figures measured or predicted beside them. `ebb report` reads the
// profile and plan files; `ebb train --report` and `ebb plan --report` fill one in from what they
// ran (tools/report/report_files.h).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb::report {

struct ReportInput {
  std::string title;         // what the report is of: the profile's path, or the run
  std::string origin;        // which command made it and from what ("ebb plan: simulated")
  Profile profile;           // the profile the plan indices refer to (as_engine_runs when needed)
  std::optional<Plan> plan;  // validated against `profile`
  std::size_t budget_bytes = 0;  // 0: no budget (no line in the chart)
  // Measured figures of real steps (ebb train); nullopt where nothing was measured.
  std::optional<double> measured_step_ms;
  std::optional<std::size_t> measured_peak_reserved_bytes;
};

// "ops 12, tensors 30, fingerprint 0x1234abcd...": a ProfileKey for people.
std::string describe_key(const ProfileKey& key);

// The profile a plan's indices refer to: `profile` itself when the plan's key is its key, or
// as_engine_runs(profile) when the plan was made for that (the planner plans the profile as the
// engine runs it). kInvalidArgument naming both files and both keys when neither matches, and
// the plan's first violation of validate_plan otherwise.
Result<Profile> profile_for_plan(const Profile& profile, const Plan& plan,
                                 const std::string& profile_name, const std::string& plan_name);

// Reads PROFILE (a profile JSON) and, when plan_path is not empty, PLAN; checks that the plan
// belongs to the profile (profile_for_plan). The budget is the plan's.
Result<ReportInput> read_report_input(const std::string& profile_path,
                                      const std::string& plan_path);

}  // namespace ebb::report
