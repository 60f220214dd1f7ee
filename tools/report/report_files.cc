#include "tools/report/report_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "engine/schema/atomic_file.h"
#include "tools/report/chrome_trace.h"
#include "tools/report/memory_series.h"
#include "tools/report/report_html.h"
#include "tools/report/timeline.h"

namespace ebb::report {
namespace {

Status check_path(const std::string& option, const std::string& path) {
  if (path.empty()) return ok_status();
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return invalid_argument(option + " " + path + " is a directory, not a file");
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  if (!std::filesystem::is_directory(dir, error)) {
    return io_error(option + " " + path + ": cannot write it, the directory " + dir +
                    " does not exist");
  }
  if (access(dir.c_str(), W_OK) != 0) {
    return os_error(option + " " + path + ": cannot write into the directory " + dir, errno);
  }
  return ok_status();
}

Status write_one(const std::string& what, const std::string& path, const std::string& text) {
  Status written = write_file_atomically(path, text);
  if (written.ok()) return written;
  return Status(written.code(), "cannot write the " + what + " " + path + ": " + written.message());
}

}  // namespace

Status check_report_paths(const ReportPaths& paths) {
  EBB_RETURN_IF_ERROR(check_path("--report", paths.html));
  return check_path("--chrome-trace", paths.chrome_trace);
}

Status write_report_files(const ReportInput& input, const ReportPaths& paths) {
  const Plan* plan = input.plan ? &*input.plan : nullptr;
  const MemoryCurve curve = memory_curve(input.profile, plan);
  const Timeline timeline = build_timeline(input.profile, plan);
  if (!paths.html.empty()) {
    EBB_RETURN_IF_ERROR(write_one("report", paths.html, report_html(input, timeline, curve)));
  }
  if (!paths.chrome_trace.empty()) {
    EBB_RETURN_IF_ERROR(
        write_one("Chrome trace", paths.chrome_trace, chrome_trace_json(input, timeline, curve)));
  }
  return ok_status();
}

void print_written(const ReportPaths& paths) {
  if (!paths.html.empty()) std::printf("report written to %s\n", paths.html.c_str());
  if (!paths.chrome_trace.empty()) {
    std::printf("Chrome trace written to %s\n", paths.chrome_trace.c_str());
  }
}

}  // namespace ebb::report
