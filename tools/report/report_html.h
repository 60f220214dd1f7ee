// The report: one self-contained HTML file (inline CSS, SVG and script; nothing fetched) with a
// summary header (section#summary, one div.figure[data-field] per figure), the memory chart and
// the lanes (tools/report/report_svg.h), the decision table (tools/report/decision_table.h), a
// note on what was decimated (p#decimation), and the figures it was made from as JSON in
// script#report-data, for tools and tests.
//
// Thread safety: pure functions.
#pragma once

#include <string>

#include "tools/report/memory_series.h"
#include "tools/report/report_input.h"
#include "tools/report/timeline.h"

namespace ebb::report {

// REQUIRES: `timeline` and `curve` were built from input.profile and input.plan.
std::string report_html(const ReportInput& input, const Timeline& timeline,
                        const MemoryCurve& curve);

}  // namespace ebb::report
