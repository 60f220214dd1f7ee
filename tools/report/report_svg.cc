#include "tools/report/report_svg.h"

#include <algorithm>
#include <array>
#include <vector>

#include "tools/report/html_text.h"

namespace ebb::report {
namespace {

constexpr double kLeft = 96;   // room for the axis labels
constexpr double kRight = 16;  // room after the last op
constexpr double kPlotWidth = kChartWidth - kLeft - kRight;
constexpr double kMemoryHeight = 320;
constexpr double kMemoryTop = 24;
constexpr double kMemoryBottom = 28;
constexpr double kLaneHeight = 28;
constexpr double kLaneTop = 8;
constexpr double kAxisHeight = 24;

// Maps time to x on the shared axis.
struct TimeAxis {
  std::int64_t step_ns = 1;
  double x(std::int64_t ns) const {
    return kLeft + static_cast<double>(ns) / static_cast<double>(step_ns) * kPlotWidth;
  }
  double ns_per_px() const { return static_cast<double>(step_ns) / kPlotWidth; }
};

TimeAxis axis_of(const Timeline& timeline) {
  return TimeAxis{std::max<std::int64_t>(timeline.step_ns, 1)};
}

// Maps bytes to y in the memory chart.
struct ByteAxis {
  double max_bytes = 1;
  double y(double bytes) const {
    return kMemoryTop + (1 - bytes / max_bytes) * (kMemoryHeight - kMemoryTop - kMemoryBottom);
  }
};

std::string time_ticks(const TimeAxis& t, double y_top, double y_bottom) {
  std::string svg = "<g class=\"time-axis\">";
  for (int i = 0; i <= 4; ++i) {
    const std::int64_t ns = t.step_ns * i / 4;
    const std::string x = coord(t.x(ns));
    append(svg,
           {"<line class=\"grid\" x1=\"", x, "\" x2=\"", x, "\" y1=\"", coord(y_top), "\" y2=\"",
            coord(y_bottom), "\"/><text class=\"tick\" x=\"", x, "\" y=\"", coord(y_bottom + 14),
            "\" text-anchor=\"", i == 4 ? "end" : "middle", "\">", human_ns(ns), "</text>"});
  }
  return svg + "</g>";
}

std::string byte_ticks(const ByteAxis& b) {
  std::string svg = "<g class=\"byte-axis\">";
  for (int i = 0; i <= 4; ++i) {
    const double bytes = b.max_bytes * i / 4;
    const std::string y = coord(b.y(bytes));
    append(svg,
           {"<line class=\"grid\" x1=\"", coord(kLeft), "\" x2=\"", coord(kChartWidth - kRight),
            "\" y1=\"", y, "\" y2=\"", y, "\"/><text class=\"tick\" x=\"", coord(kLeft - 6),
            "\" y=\"", y, "\" text-anchor=\"end\" dominant-baseline=\"middle\">",
            human_bytes(static_cast<std::size_t>(bytes)), "</text>"});
  }
  return svg + "</g>";
}

// The x span each drawn point covers: from its op's start to the next drawn op's start.
std::vector<std::array<double, 2>> point_spans(const std::vector<std::size_t>& ops,
                                               const Timeline& timeline, const TimeAxis& t) {
  std::vector<std::array<double, 2>> spans(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::int64_t end =
        i + 1 < ops.size() ? timeline.op_start_ns[ops[i + 1]] : timeline.step_ns;
    spans[i] = {t.x(timeline.op_start_ns[ops[i]]), t.x(end)};
  }
  return spans;
}

// One category's band: along its top edge, then back along the bands below it.
std::string series_path(const MemoryCurve& curve, const std::vector<std::size_t>& ops,
                        const std::vector<std::array<double, 2>>& spans, std::size_t category,
                        const ByteAxis& b) {
  std::vector<double> below(ops.size());
  std::vector<double> top(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const CategoryBytes& bytes = curve.after_op[ops[i]];
    double sum = 0;
    for (std::size_t c = 0; c < category; ++c) sum += static_cast<double>(bytes[c]);
    below[i] = sum;
    top[i] = sum + static_cast<double>(bytes[category]);
  }
  std::string d;
  d.reserve(ops.size() * 48);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    d += (i == 0 ? "M" : "L") + coord(spans[i][0]) + " " + coord(b.y(top[i])) + "L" +
         coord(spans[i][1]) + " " + coord(b.y(top[i]));
  }
  for (std::size_t i = ops.size(); i-- > 0;) {
    d += "L" + coord(spans[i][1]) + " " + coord(b.y(below[i])) + "L" + coord(spans[i][0]) + " " +
         coord(b.y(below[i]));
  }
  return d + "Z";
}

std::string budget_line(std::size_t budget_bytes, const ByteAxis& b) {
  if (budget_bytes == 0) return "";
  const std::string y = coord(b.y(static_cast<double>(budget_bytes)));
  return "<line id=\"budget-line\" data-bytes=\"" + std::to_string(budget_bytes) + "\" x1=\"" +
         coord(kLeft) + "\" x2=\"" + coord(kChartWidth - kRight) + "\" y1=\"" + y + "\" y2=\"" + y +
         "\"/><text id=\"budget-label\" x=\"" + coord(kChartWidth - kRight) + "\" y=\"" +
         coord(b.y(static_cast<double>(budget_bytes)) - 4) + "\" text-anchor=\"end\">budget " +
         std::to_string(budget_bytes) + " B (" + human_bytes(budget_bytes) + ")</text>";
}

std::string peak_marker(const MemoryCurve& curve, const Timeline& timeline, const TimeAxis& t,
                        const ByteAxis& b) {
  const double x = t.x(timeline.op_start_ns[curve.peak_op]);
  const double y = b.y(static_cast<double>(curve.peak_bytes));
  const bool right_half = x > kLeft + kPlotWidth / 2;
  return "<g id=\"peak-marker\" data-op=\"" + std::to_string(curve.peak_op) + "\"><circle cx=\"" +
         coord(x) + "\" cy=\"" + coord(y) + "\" r=\"4\"/><text id=\"peak-label\" data-bytes=\"" +
         std::to_string(curve.peak_bytes) + "\" x=\"" + coord(x + (right_half ? -8 : 8)) +
         "\" y=\"" + coord(y - 6) + "\" text-anchor=\"" + (right_half ? "end" : "start") +
         "\">peak " + std::to_string(curve.peak_bytes) + " B (" + human_bytes(curve.peak_bytes) +
         ")</text></g>";
}

std::string legend(const MemoryCurve& curve) {
  std::string svg = "<g class=\"legend\">";
  double x = kLeft;
  for (MemoryCategory c : curve.present) {
    const std::string id(category_id(c));
    svg += "<rect class=\"swatch kind-" + id + "\" x=\"" + coord(x) +
           "\" y=\"4\" width=\"10\" height=\"10\"/><text x=\"" + coord(x + 14) + "\" y=\"13\">" +
           html_escape(category_label(c)) + "</text>";
    x += 18 + 7.0 * static_cast<double>(category_label(c).size()) + 12;
  }
  return svg + "</g>";
}

// A drawn rect: one event, or a run of sub-pixel events merged.
struct LaneRect {
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;
  std::size_t first = 0;  // index into the lane's events
  std::size_t count = 0;
};

std::vector<LaneRect> lane_rects(const std::vector<const TimelineEvent*>& events,
                                 const TimeAxis& t) {
  const double px = t.ns_per_px();
  std::vector<LaneRect> rects;
  bool open = false;  // the last rect is a run of sub-pixel events that may grow
  for (std::size_t i = 0; i < events.size(); ++i) {
    const TimelineEvent& e = *events[i];
    const bool small = static_cast<double>(e.duration_ns) < px;
    // A run grows while it is under a pixel wide, so a tooltip speaks of one pixel's events.
    if (open && small && static_cast<double>(e.start_ns - rects.back().end_ns) < px &&
        static_cast<double>(rects.back().end_ns - rects.back().start_ns) < px) {
      rects.back().end_ns = e.end_ns();
      ++rects.back().count;
      continue;
    }
    rects.push_back(LaneRect{e.start_ns, e.end_ns(), i, 1});
    open = small;
  }
  return rects;
}

std::string rect_svg(const LaneRect& r, const std::vector<const TimelineEvent*>& events,
                     const TimeAxis& t, double y) {
  const TimelineEvent& first = *events[r.first];
  const double x0 = t.x(r.start_ns);
  const double width = std::max(t.x(r.end_ns) - x0, 0.5);
  std::string title;
  std::string cls = "event cat-" + first.category;
  std::string merged;
  if (r.count == 1) {
    title = first.name + ": " + human_ns(first.duration_ns) + " at " + human_ns(first.start_ns);
    if (first.bytes > 0) title += ", " + human_bytes(first.bytes);
  } else {
    const TimelineEvent& last = *events[r.first + r.count - 1];
    title = std::to_string(r.count) + " events under a pixel each, " + first.name + " to " +
            last.name + ", " + human_ns(r.start_ns) + " to " + human_ns(r.end_ns);
    cls += " merged";
    merged = " data-merged=\"" + std::to_string(r.count) + "\"";
  }
  return "<rect class=\"" + cls + "\"" + merged + " x=\"" + coord(x0) + "\" y=\"" + coord(y + 3) +
         "\" width=\"" + coord(width) + "\" height=\"" + coord(kLaneHeight - 6) + "\"><title>" +
         html_escape(title) + "</title></rect>";
}

std::string lane_svg(Lane lane, const std::vector<const TimelineEvent*>& events, const TimeAxis& t,
                     double y, Decimation& decimation) {
  const std::vector<LaneRect> rects = lane_rects(events, t);
  decimation.events += events.size();
  decimation.rects += rects.size();
  const std::string id(lane_id(lane));
  std::string svg = "<g class=\"lane\" id=\"lane-" + id + "\" data-lane=\"" + id +
                    "\" data-events=\"" + std::to_string(events.size()) + "\" data-drawn=\"" +
                    std::to_string(rects.size()) + "\"><rect class=\"lane-bg\" x=\"" +
                    coord(kLeft) + "\" y=\"" + coord(y) + "\" width=\"" + coord(kPlotWidth) +
                    "\" height=\"" + coord(kLaneHeight) + "\"/><text class=\"lane-label\" x=\"" +
                    coord(kLeft - 6) + "\" y=\"" + coord(y + kLaneHeight / 2) +
                    "\" text-anchor=\"end\" dominant-baseline=\"middle\">" +
                    html_escape(lane_short_label(lane)) + "<title>" +
                    html_escape(lane_label(lane)) + "</title></text>";
  for (const LaneRect& r : rects) svg += rect_svg(r, events, t, y);
  return svg + "</g>";
}

}  // namespace

std::string memory_chart_svg(const MemoryCurve& curve, const Timeline& timeline,
                             std::size_t budget_bytes, Decimation& decimation) {
  const TimeAxis t = axis_of(timeline);
  const ByteAxis b{
      std::max<double>(1, 1.08 * static_cast<double>(std::max(curve.peak_bytes, budget_bytes)))};
  const std::vector<std::size_t> ops = decimate_curve(curve, kMaxMemoryPoints);
  decimation.ops = curve.after_op.size();
  decimation.memory_points = ops.size();
  const std::vector<std::array<double, 2>> spans = point_spans(ops, timeline, t);
  std::string svg = "<svg id=\"memory-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " +
                    coord(kChartWidth) + " " + coord(kMemoryHeight) + "\" data-points=\"" +
                    std::to_string(ops.size()) + "\">" + byte_ticks(b) +
                    time_ticks(t, kMemoryTop, kMemoryHeight - kMemoryBottom);
  if (!ops.empty()) {
    for (MemoryCategory c : curve.present) {
      const std::string id(category_id(c));
      append(svg, {"<g class=\"series\" data-kind=\"", id, "\"><path class=\"kind-", id, "\" d=\"",
                   series_path(curve, ops, spans, static_cast<std::size_t>(c), b), "\"><title>",
                   html_escape(category_label(c)), "</title></path></g>"});
    }
    svg += budget_line(budget_bytes, b) + peak_marker(curve, timeline, t, b);
  }
  return svg + legend(curve) + "</svg>";
}

std::string lane_chart_svg(const Timeline& timeline, Decimation& decimation) {
  const TimeAxis t = axis_of(timeline);
  std::array<std::vector<const TimelineEvent*>, kLanes> by_lane;
  for (const TimelineEvent& e : timeline.events) {
    by_lane[static_cast<std::size_t>(e.lane)].push_back(&e);
  }
  const double height = kLaneTop + kLanes * kLaneHeight + kAxisHeight;
  std::string svg = "<svg id=\"lane-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " +
                    coord(kChartWidth) + " " + coord(height) + "\">";
  for (std::size_t l = 0; l < kLanes; ++l) {
    svg += lane_svg(static_cast<Lane>(l), by_lane[l], t,
                    kLaneTop + static_cast<double>(l) * kLaneHeight, decimation);
  }
  return svg + time_ticks(t, kLaneTop, kLaneTop + kLanes * kLaneHeight) + "</svg>";
}

}  // namespace ebb::report
