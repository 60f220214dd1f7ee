// Reports of what a command ran: `ebb train --report` (the real steps: the warm-up profile the
// engine recorded, the plan it followed, the measured step times and peak) and `ebb plan
// --report` (the simulation: the profile, the plan and its prediction). Each fills in a
// ReportInput and writes the files (tools/report/report_files.h).
//
// Thread safety: pure functions of the file system.
#pragma once

#include <optional>
#include <string>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"
#include "tools/report/report_files.h"
#include "tools/train/trainer.h"

namespace ebb::report {

// A warm-up profile written only to be reported: a path in the temporary directory, named for
// the command and this process, and removed (if the run wrote it) when this goes out of scope.
class TemporaryProfile {
 public:
  explicit TemporaryProfile(const std::string& command);
  ~TemporaryProfile();
  TemporaryProfile(const TemporaryProfile&) = delete;
  TemporaryProfile& operator=(const TemporaryProfile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// `profile_path`: the profile the run wrote (TrainOptions::profile_out).
Status write_train_reports(const std::string& profile_path, const train::TrainResult& result,
                           const ReportPaths& paths);

// `plan`: the planner's plan (nullopt for dynamic eviction), made for `profile` as the engine
// runs it; `profile_name` names the file it came from.
Status write_plan_reports(const Profile& profile, const std::string& profile_name,
                          const std::optional<Plan>& plan, std::size_t budget_bytes,
                          const ReportPaths& paths);

}  // namespace ebb::report
