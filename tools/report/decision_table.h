// The plan's decisions as the report's table: one row per tensor the plan evicts or holds (its
// intervals folded into one row) and one per slice of model state it places
// (Plan::state_placement). Kept tensors have no row: keeping is what a plan does to every tensor
// it does not name. The table (table#decision-table, one tbody tr per row, each cell's sort key
// in data-key) is sorted, filtered and paged by the report's script. Every row is in the
// document, but only a page of kDecisionPageRows is laid out (the others carry class "paged",
// display: none): laying out ten thousand rows takes the browser seconds.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "engine/schema/plan.h"
#include "engine/schema/profile.h"

namespace ebb::report {

inline constexpr std::size_t kDecisionPageRows = 200;

struct DecisionRow {
  std::string name;  // tensor or slice
  std::string id;    // tensor id, or the slice's label
  std::string kind;
  std::size_t bytes = 0;
  std::string decision;  // "swap to host", "swap to nvme", "recompute", "hold", "state: host"...
  std::size_t intervals = 0;  // evictions of the tensor
  std::string off_after;      // first eviction's evict_after ("" for a slice)
  std::string back_before;    // its prefetch_at ("" when never needed again)
  std::string needed_at;      // its needed_at
};

// REQUIRES: the plan passes validate_plan against `profile`.
std::vector<DecisionRow> decision_rows(const Profile& profile, const Plan& plan);

std::string decision_table_html(const std::vector<DecisionRow>& rows);

}  // namespace ebb::report
