// A line plot as a standalone SVG document, for the curves of `ebb bench suite`: one line per
// series (a policy), points joined in x order, a gap where a point is missing (a budget the policy
// could not run), a marker at each point, axes with ticks, and a legend. Each series is exactly
// one <path class="series" data-series="NAME"> (with one subpath per run of present points), so a
// reader (or a test) can find a series' line unambiguously; axes, ticks and markers use no <path>.
//
// Thread safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ebb::cli {

struct PlotSeries {
  std::string name;                       // the legend's text and data-series
  std::vector<std::optional<double>> ys;  // one per PlotSpec::xs; nullopt: no point there
};

struct PlotSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<double> xs;          // the x of every series' points, in the order drawn
  bool x_descending = false;       // true: the largest x at the left (budgets shrinking rightwards)
  double y_floor = 0;              // the y axis starts here (or lower, when a point is lower)
  std::vector<std::string> notes;  // lines under the legend (what a missing point means)
};

// REQUIRES: every series has xs.size() ys. The document is well-formed XML; text is escaped.
std::string render_line_plot_svg(const PlotSpec& spec, const std::vector<PlotSeries>& series);

}  // namespace ebb::cli
