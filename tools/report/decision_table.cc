#include "tools/report/decision_table.h"

#include <map>

#include "tools/report/html_text.h"
#include "tools/report/memory_series.h"

namespace ebb::report {
namespace {

std::string eviction_decision(const Eviction& e) {
  if (e.method == EvictionMethod::kRecompute) return "recompute";
  return "swap to " + std::string(offload_tier_name(e.tier));
}

DecisionRow tensor_row(const ProfiledTensor& t) {
  DecisionRow row;
  row.name = t.name;
  row.id = std::to_string(t.id);
  row.kind = std::string(category_id(category_of(t)));
  row.bytes = t.bytes;
  return row;
}

// Folds one more eviction into its tensor's row: the first interval names the ops, later ones
// add to the count (and to the decision when they differ).
void add_eviction(DecisionRow& row, const Eviction& e) {
  const std::string decision = eviction_decision(e);
  if (row.intervals++ == 0) {
    row.decision = decision;
    row.off_after = std::to_string(e.evict_after);
    if (e.needed_at.has_value()) {
      row.back_before = std::to_string(e.prefetch_at);
      row.needed_at = std::to_string(*e.needed_at);
    }
  } else if (row.decision.find(decision) == std::string::npos) {
    row.decision += " + " + decision;
  }
}

std::string cell(const std::string& text, const std::string& key) {
  return "<td data-key=\"" + html_escape(key) + "\">" + html_escape(text) + "</td>";
}

}  // namespace

std::vector<DecisionRow> decision_rows(const Profile& profile, const Plan& plan) {
  std::map<std::size_t, DecisionRow> by_tensor;
  for (const Eviction& e : plan.evictions) {
    auto [it, added] = by_tensor.try_emplace(e.tensor, tensor_row(profile.tensors[e.tensor]));
    add_eviction(it->second, e);
  }
  for (const Hold& h : plan.holds) {
    auto [it, added] = by_tensor.try_emplace(h.tensor, tensor_row(profile.tensors[h.tensor]));
    DecisionRow& row = it->second;
    const std::string hold = "hold to op " + std::to_string(h.until);
    row.decision = row.decision.empty() ? hold : row.decision + " + " + hold;
  }
  std::vector<DecisionRow> rows;
  rows.reserve(by_tensor.size() + plan.state_placement.size());
  for (auto& [id, row] : by_tensor) rows.push_back(std::move(row));
  for (const StateSliceDecision& s : plan.state_placement) {
    DecisionRow row;
    row.name = "state " + s.slice;
    row.id = s.slice;
    row.kind = "optimizer_state";
    row.bytes = s.state_bytes;
    row.decision = "state on " + s.choice;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string decision_table_html(const std::vector<DecisionRow>& rows) {
  std::string html =
      "<table id=\"decision-table\"><thead><tr>"
      "<th data-sort=\"num\">id</th><th data-sort=\"text\">tensor or slice</th>"
      "<th data-sort=\"text\">kind</th><th data-sort=\"num\">bytes</th>"
      "<th data-sort=\"text\">decision</th><th data-sort=\"num\">intervals</th>"
      "<th data-sort=\"num\">off after op</th><th data-sort=\"num\">back before op</th>"
      "<th data-sort=\"num\">next use (op)</th></tr></thead><tbody>";
  html.reserve(html.size() + rows.size() * 400);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const DecisionRow& r = rows[i];
    html += "<tr data-decision=\"" + html_escape(r.decision) + "\"" +
            (i < kDecisionPageRows ? "" : " class=\"paged\"") + ">" + cell(r.id, r.id) +
            cell(r.name, r.name) + cell(r.kind, r.kind) +
            cell(human_bytes(r.bytes), std::to_string(r.bytes)) + cell(r.decision, r.decision) +
            cell(std::to_string(r.intervals), std::to_string(r.intervals)) +
            cell(r.off_after, r.off_after) + cell(r.back_before, r.back_before) +
            cell(r.needed_at, r.needed_at) + "</tr>";
  }
  return html + "</tbody></table>";
}

}  // namespace ebb::report
