// Writing a report and a Chrome trace: the one call `ebb report`, `ebb train --report` and
// `ebb plan --report` make once they have a ReportInput. Each file is written atomically (a
// temporary file in the same directory, renamed into place; engine/schema/atomic_file.h), so a
// failure leaves nothing half-written.
//
// Thread safety: pure functions of the file system.
#pragma once

#include <string>

#include "kernels/status.h"
#include "tools/report/report_input.h"

namespace ebb::report {

// Where to write; an empty path is not written.
struct ReportPaths {
  std::string html;          // --report / -o
  std::string chrome_trace;  // --chrome-trace
  bool empty() const { return html.empty() && chrome_trace.empty(); }
};

// Checks, before a long run, that each path can be written: not a directory, and its directory
// exists and is writable. kInvalidArgument / kIoError naming the option and the path.
Status check_report_paths(const ReportPaths& paths);

// Builds the memory curve and the timeline of `input` and writes the files asked for. kIoError
// naming the file when one cannot be written.
Status write_report_files(const ReportInput& input, const ReportPaths& paths);

// Says on stdout which files were written: "report written to FILE", "Chrome trace written to
// FILE".
void print_written(const ReportPaths& paths);

}  // namespace ebb::report
