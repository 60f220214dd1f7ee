// The report's two charts as inline SVG: the memory over the step stacked by category
// (tools/report/memory_series.h) with the budget line and the peak, and the lanes of the
// timeline (tools/report/timeline.h). Both share one time axis. What cannot be seen is
// decimated, so that a 20,000-op step stays light in the browser:
//  - the memory curve is drawn with at most kMaxMemoryPoints points, each the op of the largest
//    total among its bucket of consecutive ops (decimate_curve), so the peak is always drawn;
//  - on each lane, a run of consecutive events that are each narrower than a pixel, with gaps
//    under a pixel between them, is drawn as one rect (class "merged", data-merged = how many),
//    which grows only while it is under a pixel wide: it ends under two pixels wide, so a lane
//    holds about one rect per pixel column besides its events a pixel wide or more.
// Elements carry stable ids and data attributes for tests: svg#memory-chart, g.series[data-kind],
// line#budget-line[data-bytes], text#peak-label[data-bytes]; svg#lane-chart,
// g.lane[data-lane][data-events][data-drawn].
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tools/report/memory_series.h"
#include "tools/report/timeline.h"

namespace ebb::report {

inline constexpr std::size_t kMaxMemoryPoints = 2000;
inline constexpr double kChartWidth = 1200;  // viewBox units; the plot is scaled to the page

// How the charts were decimated, for the report's note.
struct Decimation {
  std::size_t ops = 0;            // points of the memory curve before
  std::size_t memory_points = 0;  // drawn
  std::size_t events = 0;         // lane events before
  std::size_t rects = 0;          // drawn
};

std::string memory_chart_svg(const MemoryCurve& curve, const Timeline& timeline,
                             std::size_t budget_bytes, Decimation& decimation);
std::string lane_chart_svg(const Timeline& timeline, Decimation& decimation);

}  // namespace ebb::report
