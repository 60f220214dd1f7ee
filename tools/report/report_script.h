// The report's stylesheet and script, inlined into every report (tools/report/report_html.h).
// The script sorts the decision table by a clicked column (th[data-sort]: "num" or "text", each
// cell's key in data-key) and filters its rows by the text in input#decision-filter and the
// decision chosen in select#decision-kind.
//
// Thread safety: constants.
#pragma once

#include <string_view>

namespace ebb::report {

extern const std::string_view kReportCss;
extern const std::string_view kReportScript;

}  // namespace ebb::report
