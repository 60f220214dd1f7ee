// `ebb report PROFILE [--plan PLAN] -o report.html [--chrome-trace trace.json]`: one
// self-contained HTML report of a profiled iteration and the plan made for it, and the same
// timeline as a Chrome trace (tools/report/).
#include <cstdio>
#include <memory>
#include <string>

#include "tools/commands.h"
#include "tools/report/report_files.h"
#include "tools/report/report_input.h"

namespace ebb::cli {
namespace {

struct ReportArgs {
  std::string profile;
  std::string plan;
  report::ReportPaths paths;
};

int run_report(const ReportArgs& args) {
  if (args.paths.empty()) {
    return report_error(invalid_argument("ebb report: give -o FILE, --chrome-trace FILE or both"));
  }
  if (Status s = report::check_report_paths(args.paths); !s.ok()) return report_error(s);
  Result<report::ReportInput> input = report::read_report_input(args.profile, args.plan);
  if (!input.ok()) return report_error(input.status());
  if (Status s = report::write_report_files(*input, args.paths); !s.ok()) return report_error(s);
  report::print_written(args.paths);
  return 0;
}

}  // namespace

Command add_report_command(CLI::App& parent) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* app = parent.add_subcommand(
      "report",
      "An HTML report of a profile (and the plan made for it): memory by tensor kind, the lanes "
      "of compute, host link, NVMe and communication, the plan's decisions; and a Chrome trace");
  app->add_option("PROFILE", args->profile, "profile JSON (ebb train --profile-out)")->required();
  app->add_option("--plan", args->plan, "plan JSON made for that profile (ebb plan --out)");
  app->add_option("-o,--out,--report", args->paths.html, "write the HTML report here");
  app->add_option("--chrome-trace", args->paths.chrome_trace,
                  "write the timeline as Chrome trace JSON here (Perfetto, chrome://tracing)");
  return Command{app, [args] { return run_report(*args); }};
}

}  // namespace ebb::cli
