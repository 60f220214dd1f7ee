// The timeline (tools/report/timeline.h) as Chrome's Trace Event Format, the JSON that Perfetto
// and chrome://tracing open: {"traceEvents": [...], "displayTimeUnit": "ns"}. One process per
// device (pid 1: the device the profile was measured on), one thread per lane (tid 1 compute,
// 2 device to host, 3 host to device, 4 NVMe, 5 communication), each named by a metadata event
// (ph "M", process_name / thread_name); every op and transfer is a complete event (ph "X": name,
// cat, ts and dur in microseconds, pid, tid, args); the memory curve is a counter (ph "C") per
// op. Events of one thread never overlap, so they nest trivially.
//
// Thread safety: pure functions.
#pragma once

#include <string>

#include "tools/report/memory_series.h"
#include "tools/report/report_input.h"
#include "tools/report/timeline.h"

namespace ebb::report {

// REQUIRES: `timeline` and `curve` were built from input.profile and input.plan.
std::string chrome_trace_json(const ReportInput& input, const Timeline& timeline,
                              const MemoryCurve& curve);

}  // namespace ebb::report
