// The SVG line plot of `ebb bench suite` (tools/svg_plot.h).
#include "tools/svg_plot.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/report/html_text.h"

namespace ebb::cli {
namespace {

// Plot area inside the canvas, in SVG user units.
constexpr double kWidth = 720;
constexpr double kHeight = 440;
constexpr double kLeft = 70;
constexpr double kRight = 200;  // the legend's column
constexpr double kTop = 40;
constexpr double kBottom = 60;

// Distinguishable colours (Okabe-Ito), one per series in order, repeating past eight.
constexpr const char* kColours[] = {"#000000", "#e69f00", "#56b4e9", "#009e73",
                                    "#d55e00", "#0072b2", "#cc79a7", "#999999"};

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", v);
  return text;
}

// A tick step of 1, 2 or 5 times a power of ten giving about `count` ticks over `range`.
double tick_step(double range, int count) {
  const double raw = range / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string tick_label(double v, double step) {
  char text[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step)));
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

}  // namespace

std::string render_line_plot_svg(const PlotSpec& spec, const std::vector<PlotSeries>& series) {
  // The axes' ranges: x over every x; y from the floor to the highest point, with headroom.
  double x_min = 0, x_max = 1;
  if (!spec.xs.empty()) {
    x_min = *std::min_element(spec.xs.begin(), spec.xs.end());
    x_max = *std::max_element(spec.xs.begin(), spec.xs.end());
  }
  if (x_max - x_min <= 0) x_max = x_min + 1;
  double y_min = spec.y_floor, y_max = spec.y_floor;
  for (const PlotSeries& s : series) {
    assert(s.ys.size() == spec.xs.size());
    for (const std::optional<double>& y : s.ys) {
      if (!y || !std::isfinite(*y)) continue;
      y_min = std::min(y_min, *y);
      y_max = std::max(y_max, *y);
    }
  }
  if (y_max - y_min < 0.1) y_max = y_min + 0.1;
  const double y_step = tick_step(y_max - y_min, 6);
  y_min = std::floor(y_min / y_step) * y_step;
  y_max = std::ceil(y_max / y_step) * y_step;

  const double plot_w = kWidth - kLeft - kRight;
  const double plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) {
    const double t = (x - x_min) / (x_max - x_min);
    return kLeft + plot_w * (spec.x_descending ? 1 - t : t);
  };
  auto py = [&](double y) { return kTop + plot_h * (1 - (y - y_min) / (y_max - y_min)); };

  std::string svg;
  svg += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + number(kWidth) + "\" height=\"" +
         number(kHeight) + "\" viewBox=\"0 0 " + number(kWidth) + " " + number(kHeight) +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text x=\"" + number(kLeft) + "\" y=\"22\" font-size=\"14\">" +
         report::html_escape(spec.title) + "</text>\n";

  // Axes and grid.
  svg += "<g class=\"axes\" stroke=\"#444\" stroke-width=\"1\">\n";
  svg += "<line x1=\"" + number(kLeft) + "\" y1=\"" + number(kTop + plot_h) + "\" x2=\"" +
         number(kLeft + plot_w) + "\" y2=\"" + number(kTop + plot_h) + "\"/>\n";
  svg += "<line x1=\"" + number(kLeft) + "\" y1=\"" + number(kTop) + "\" x2=\"" + number(kLeft) +
         "\" y2=\"" + number(kTop + plot_h) + "\"/>\n";
  svg += "</g>\n<g class=\"ticks\" fill=\"#222\">\n";
  for (double x : spec.xs) {
    svg += "<line x1=\"" + number(px(x)) + "\" y1=\"" + number(kTop + plot_h) + "\" x2=\"" +
           number(px(x)) + "\" y2=\"" + number(kTop + plot_h + 5) + "\" stroke=\"#444\"/>\n";
    svg += "<text x=\"" + number(px(x)) + "\" y=\"" + number(kTop + plot_h + 18) +
           "\" text-anchor=\"middle\">" + tick_label(x, 1) + "</text>\n";
  }
  const int y_ticks = static_cast<int>(std::lround((y_max - y_min) / y_step));
  for (int i = 0; i <= y_ticks; ++i) {
    const double y = y_min + i * y_step;
    svg += "<line x1=\"" + number(kLeft) + "\" y1=\"" + number(py(y)) + "\" x2=\"" +
           number(kLeft + plot_w) + "\" y2=\"" + number(py(y)) + "\" stroke=\"#ddd\"/>\n";
    svg += "<text x=\"" + number(kLeft - 6) + "\" y=\"" + number(py(y) + 4) +
           "\" text-anchor=\"end\">" + tick_label(y, y_step) + "</text>\n";
  }
  svg += "<text x=\"" + number(kLeft + plot_w / 2) + "\" y=\"" + number(kHeight - 15) +
         "\" text-anchor=\"middle\">" + report::html_escape(spec.x_label) + "</text>\n";
  svg += "<text transform=\"translate(18 " + number(kTop + plot_h / 2) +
         ") rotate(-90)\" text-anchor=\"middle\">" + report::html_escape(spec.y_label) +
         "</text>\n";
  svg += "</g>\n";

  // One path per series; a missing point ends a subpath.
  for (std::size_t i = 0; i < series.size(); ++i) {
    const PlotSeries& s = series[i];
    const std::string colour = kColours[i % std::size(kColours)];
    std::string d;
    bool pen_down = false;
    std::string markers;
    for (std::size_t k = 0; k < spec.xs.size(); ++k) {
      const std::optional<double>& y = s.ys[k];
      if (!y || !std::isfinite(*y)) {
        pen_down = false;
        continue;
      }
      d += (pen_down ? " L" : (d.empty() ? "M" : " M")) + number(px(spec.xs[k])) + " " +
           number(py(*y));
      pen_down = true;
      markers += "<circle cx=\"" + number(px(spec.xs[k])) + "\" cy=\"" + number(py(*y)) +
                 "\" r=\"3\" fill=\"" + colour + "\"/>\n";
    }
    svg += "<path class=\"series\" data-series=\"" + report::html_escape(s.name) + "\" d=\"";
    svg += d;
    svg += "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\"/>\n";
    svg += "<g class=\"markers\" data-series=\"" + report::html_escape(s.name) + "\">\n";
    svg += markers;
    svg += "</g>\n";
  }

  // Legend, then the notes.
  const double lx = kWidth - kRight + 20;
  svg += "<g class=\"legend\">\n";
  double ly = kTop + 10;
  for (std::size_t i = 0; i < series.size(); ++i, ly += 20) {
    const std::string colour = kColours[i % std::size(kColours)];
    svg += "<line x1=\"" + number(lx) + "\" y1=\"" + number(ly) + "\" x2=\"" + number(lx + 24) +
           "\" y2=\"" + number(ly) + "\" stroke=\"" + colour + "\" stroke-width=\"2\"/>\n";
    svg += "<text x=\"" + number(lx + 30) + "\" y=\"" + number(ly + 4) + "\">" +
           report::html_escape(series[i].name) + "</text>\n";
  }
  ly += 10;
  for (const std::string& note : spec.notes) {
    svg += "<text x=\"" + number(lx) + "\" y=\"" + number(ly) + "\" font-size=\"10\">" +
           report::html_escape(note) + "</text>\n";
    ly += 14;
  }
  svg += "</g>\n</svg>\n";
  return svg;
}

}  // namespace ebb::cli
