#include "tools/report/report_html.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "tools/report/decision_table.h"
#include "tools/report/html_text.h"
#include "tools/report/report_script.h"
#include "tools/report/report_svg.h"

namespace ebb::report {
namespace {

// One figure of the summary header: what it is, its value, and where it comes from.
struct Figure {
  std::string field;  // data-field
  std::string label;
  std::string value;
  std::string note;
};

std::string percent(double part, double whole) {
  if (whole <= 0) return "";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f%%", 100 * part / whole);
  return text;
}

std::string figure_html(const Figure& f) {
  return "<div class=\"figure\" data-field=\"" + f.field + "\"><div class=\"label\">" +
         html_escape(f.label) + "</div><div class=\"value\">" + html_escape(f.value) +
         "</div><div class=\"note\">" + html_escape(f.note) + "</div></div>";
}

std::vector<Figure> memory_figures(const ReportInput& in, const MemoryCurve& curve) {
  std::vector<Figure> figures;
  const std::string at = curve.after_op.empty()
                             ? ""
                             : "after op " + std::to_string(curve.peak_op) + " (" +
                                   in.profile.ops[curve.peak_op].name + ")";
  figures.push_back({"peak", "peak tensor bytes", human_bytes(curve.peak_bytes),
                     at + (in.plan ? ", the plan's evictions applied" : ", as profiled")});
  if (in.budget_bytes > 0) {
    figures.push_back(
        {"budget", "budget", human_bytes(in.budget_bytes),
         "peak is " +
             percent(static_cast<double>(curve.peak_bytes), static_cast<double>(in.budget_bytes)) +
             " of it"});
  }
  if (in.plan) {
    const PlanPrediction& p = in.plan->predicted;
    figures.push_back({"predicted-peak-reserved", "predicted peak reserved",
                       human_bytes(p.peak_reserved_bytes),
                       p.checked_on_sim ? "allocator on the sim device" : "planner's model"});
  }
  if (in.measured_peak_reserved_bytes) {
    figures.push_back({"measured-peak-reserved", "measured peak reserved",
                       human_bytes(*in.measured_peak_reserved_bytes),
                       "allocator, steps after the warm-up"});
  }
  return figures;
}

std::vector<Figure> time_figures(const ReportInput& in, const Timeline& t) {
  std::vector<Figure> figures;
  const auto base = static_cast<double>(t.base_compute_ns);
  if (in.plan) {
    const std::int64_t extra = in.plan->predicted.extra_compute_ns;
    figures.push_back({"extra-compute", "extra compute (recompute)", human_ns(extra),
                       percent(static_cast<double>(extra), base) + " of the base compute, " +
                           (in.plan->predicted.checked_on_sim ? "sim device" : "planner's model") +
                           "; the lanes' model: " + human_ns(t.extra_compute_ns)});
  } else {
    figures.push_back({"extra-compute", "extra compute (recompute)", human_ns(0), "no plan"});
  }
  figures.push_back({"exposed-transfer", "exposed transfer time", human_ns(t.exposed_transfer_ns),
                     "compute waiting for copies back, the lanes' model"});
  figures.push_back({"communication", "exposed communication time", human_ns(t.communication_ns),
                     "collectives on the compute stream (compute waits for all of it)"});
  std::optional<double> predicted_ms;
  if (in.plan) predicted_ms = static_cast<double>(in.plan->predicted.step_ns) / 1e6;
  std::string value = human_ns(t.step_ns);
  std::string note = "the lanes' model";
  if (predicted_ms)
    note += "; predicted " + human_ns(static_cast<std::int64_t>(*predicted_ms * 1e6));
  if (in.measured_step_ms) {
    note += "; measured " + human_ns(static_cast<std::int64_t>(*in.measured_step_ms * 1e6)) +
            " (median of the steps after the warm-up)";
  }
  figures.push_back({"step", "step time", value, note});
  if (predicted_ms && in.measured_step_ms) {
    figures.push_back({"predicted-vs-measured", "predicted / measured step",
                       percent(*predicted_ms, *in.measured_step_ms),
                       "plan's prediction over the "
                       "measured median"});
  }
  return figures;
}

nlohmann::ordered_json report_data(const ReportInput& in, const Timeline& t,
                                   const MemoryCurve& curve, const Decimation& d,
                                   std::size_t decision_rows) {
  nlohmann::ordered_json data;
  data["title"] = in.title;
  data["origin"] = in.origin;
  data["ops"] = in.profile.ops.size();
  data["tensors"] = in.profile.tensors.size();
  data["peak_bytes"] = curve.peak_bytes;
  data["peak_op"] = curve.peak_op;
  data["budget_bytes"] = in.budget_bytes;
  nlohmann::ordered_json kinds = nlohmann::ordered_json::array();
  for (MemoryCategory c : curve.present) kinds.push_back(std::string(category_id(c)));
  data["kinds"] = kinds;
  data["decision_rows"] = decision_rows;
  data["step_ns"] = t.step_ns;
  data["base_compute_ns"] = t.base_compute_ns;
  data["extra_compute_ns"] = t.extra_compute_ns;
  data["exposed_transfer_ns"] = t.exposed_transfer_ns;
  data["communication_ns"] = t.communication_ns;
  if (in.plan) data["plan_policy"] = in.plan->policy;
  if (in.measured_step_ms) data["measured_step_ms"] = *in.measured_step_ms;
  data["decimation"] = {
      {"ops", d.ops}, {"memory_points", d.memory_points}, {"events", d.events}, {"rects", d.rects}};
  return data;
}

// JSON inside a script element: "</" would end the element.
std::string script_safe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (std::size_t i = 0; i < json.size(); ++i) {
    out += json[i];
    if (json[i] == '<' && i + 1 < json.size() && json[i + 1] == '/') out += "\\";
  }
  return out;
}

std::string decimation_note(const Decimation& d) {
  return "<p id=\"decimation\">Decimation: the memory curve of " + std::to_string(d.ops) +
         " ops is drawn with " + std::to_string(d.memory_points) + " points (at most " +
         std::to_string(kMaxMemoryPoints) +
         "; each the op with the most bytes in its run of consecutive ops, so the peak is "
         "drawn); the lanes' " +
         std::to_string(d.events) + " events are drawn as " + std::to_string(d.rects) +
         " rects (a run of events each under a pixel wide, with gaps under a pixel, is one "
         "rect under two pixels wide; hover for its count). The Chrome trace (--chrome-trace) has "
         "every event.</p>";
}

std::string decisions_section(const ReportInput& in, std::size_t& rows_out) {
  std::string html = "<section id=\"decisions\"><h2>Decisions</h2>";
  if (!in.plan) {
    rows_out = 0;
    return html +
           "<p class=\"empty\">No plan: every tensor stays on the device as profiled. "
           "Give --plan to see a plan's decisions.</p></section>";
  }
  const std::vector<DecisionRow> rows = decision_rows(in.profile, *in.plan);
  rows_out = rows.size();
  return html + "<p>Plan " + html_escape(in.plan->policy) + " for " +
         human_bytes(in.plan->budget_bytes) + " on " + html_escape(in.plan->hardware.name) +
         ": one row per tensor it evicts or holds and per slice of state it places; every other "
         "tensor is kept.</p><div class=\"controls\"><input id=\"decision-filter\" "
         "type=\"search\" placeholder=\"filter rows\"><select id=\"decision-kind\"><option "
         "value=\"\">any decision</option><option>swap to host</option><option>swap to "
         "nvme</option><option>recompute</option><option>hold</option><option>state "
         "on</option></select><button id=\"decision-prev\" type=\"button\">previous</button>"
         "<button id=\"decision-next\" type=\"button\">next</button><span "
         "id=\"decision-count\" data-page-rows=\"" +
         std::to_string(kDecisionPageRows) + "\">rows 1-" +
         std::to_string(std::min(rows.size(), kDecisionPageRows)) + " of " +
         std::to_string(rows.size()) + "</span></div>" + decision_table_html(rows) + "</section>";
}

}  // namespace

std::string report_html(const ReportInput& input, const Timeline& timeline,
                        const MemoryCurve& curve) {
  Decimation decimation;
  const std::string memory_svg = memory_chart_svg(curve, timeline, input.budget_bytes, decimation);
  const std::string lanes_svg = lane_chart_svg(timeline, decimation);
  std::size_t rows = 0;
  const std::string decisions = decisions_section(input, rows);
  std::string figures;
  for (const Figure& f : memory_figures(input, curve)) figures += figure_html(f);
  for (const Figure& f : time_figures(input, timeline)) figures += figure_html(f);
  const std::string data = report_data(input, timeline, curve, decimation, rows).dump();
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ebb report: " +
         html_escape(input.title) + "</title><style>" + std::string(kReportCss) +
         "</style></head><body><h1>ebb report: " + html_escape(input.title) +
         "</h1><p class=\"origin\">" + html_escape(input.origin) + "; " +
         std::to_string(input.profile.ops.size()) + " ops, " +
         std::to_string(input.profile.tensors.size()) + " tensors" +
         (input.profile.device.empty() ? ""
                                       : ", measured on " + html_escape(input.profile.device)) +
         "</p><section id=\"summary\">" + figures +
         "</section><section id=\"memory\"><h2>Device memory over the step, by tensor kind</h2>" +
         memory_svg + "</section><section id=\"lanes\"><h2>Lanes</h2>" + lanes_svg +
         decimation_note(decimation) + "</section>" + decisions +
         "<script type=\"application/json\" id=\"report-data\">" + script_safe(data) +
         "</script><script>" + std::string(kReportScript) + "</script></body></html>\n";
}

}  // namespace ebb::report
