#include "tools/report/report_script.h"

namespace ebb::report {

const std::string_view kReportCss = R"css(
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #1d2430; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
.origin { color: #5a6472; margin: 0 0 12px; }
#summary { display: flex; flex-wrap: wrap; gap: 8px; }
.figure { border: 1px solid #d5dae1; border-radius: 6px; padding: 6px 10px; min-width: 180px; }
.figure .label { color: #5a6472; font-size: 12px; } .figure .value { font-weight: 600; }
.figure .note { color: #5a6472; font-size: 12px; }
svg { width: 100%; height: auto; display: block; }
.grid { stroke: #e6e9ee; stroke-width: 1; } .tick, .legend text, .lane-label { font-size: 11px; fill: #3b4452; }
.kind-parameter { fill: #4c78a8; } .kind-gradient { fill: #f58518; }
.kind-optimizer_state { fill: #54a24b; } .kind-activation { fill: #e45756; }
.kind-communication { fill: #b279a2; } .kind-workspace { fill: #9d755d; } .kind-input { fill: #bab0ac; }
.series path { stroke: none; opacity: 0.9; }
#budget-line { stroke: #111; stroke-width: 1.5; stroke-dasharray: 6 4; }
#budget-label, #peak-label { font-size: 12px; font-weight: 600; fill: #111; }
#peak-marker circle { fill: #111; }
.lane-bg { fill: #f4f6f8; }
.event { fill: #4c78a8; } .cat-collective { fill: #b279a2; } .cat-recompute { fill: #e45756; }
.cat-wait { fill: #c9ccd1; } .cat-swap_out { fill: #f58518; } .cat-swap_in { fill: #54a24b; }
.cat-nvme_write { fill: #9d755d; } .cat-nvme_read { fill: #72b7b2; } .merged { opacity: 0.75; }
#decimation { color: #5a6472; font-size: 12px; }
.controls { margin: 6px 0; display: flex; gap: 8px; align-items: center; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e9ee; padding: 3px 8px; text-align: left; }
th { cursor: pointer; background: #f4f6f8; position: sticky; top: 0; }
th.sorted-asc::after { content: " \25B2"; } th.sorted-desc::after { content: " \25BC"; }
tr.hidden, tr.paged { display: none; }
.empty { color: #5a6472; }
)css";

const std::string_view kReportScript = R"js(
(function () {
  'use strict';
  var table = document.getElementById('decision-table');
  if (!table) return;
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;

  function keyOf(row, column, numeric) {
    var key = row.cells[column].getAttribute('data-key');
    if (!numeric) return key.toLowerCase();
    return key === '' ? Infinity : Number(key);
  }

  function sortBy(column) {
    var th = headers[column];
    var numeric = th.getAttribute('data-sort') === 'num';
    var ascending = !th.classList.contains('sorted-asc');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var ka = keyOf(a, column, numeric), kb = keyOf(b, column, numeric);
      var order = ka < kb ? -1 : ka > kb ? 1 : 0;
      return ascending ? order : -order;
    });
    for (var i = 0; i < headers.length; i++) headers[i].classList.remove('sorted-asc', 'sorted-desc');
    th.classList.add(ascending ? 'sorted-asc' : 'sorted-desc');
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
  }

  var pageRows = Number(document.getElementById('decision-count').getAttribute('data-page-rows'));
  var page = 0;

  function matches(row, text, kind) {
    return (kind === '' || row.getAttribute('data-decision').indexOf(kind) !== -1) &&
        (text === '' || row.textContent.toLowerCase().indexOf(text) !== -1);
  }

  // Hides the rows the filters leave out (class hidden) and lays out only the current page of
  // the others (class paged on the rest).
  function render() {
    var text = document.getElementById('decision-filter').value.toLowerCase();
    var kind = document.getElementById('decision-kind').value;
    var matched = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var visible = matches(row, text, kind);
      row.classList.toggle('hidden', !visible);
      row.classList.toggle('paged', visible && Math.floor(matched / pageRows) !== page);
      if (visible) matched++;
    });
    var first = Math.min(page * pageRows + 1, matched);
    var last = Math.min((page + 1) * pageRows, matched);
    document.getElementById('decision-count').textContent =
        'rows ' + first + '-' + last + ' of ' + matched +
        (matched === body.rows.length ? '' : ' (' + body.rows.length + ' in all)');
    return matched;
  }

  function turn(step) {
    page = Math.max(0, page + step);
    if (page * pageRows >= render() && page > 0) {
      page--;
      render();
    }
  }

  function refilter() {
    page = 0;
    render();
  }

  Array.prototype.forEach.call(headers, function (th, column) {
    th.addEventListener('click', function () { sortBy(column); page = 0; render(); });
  });
  document.getElementById('decision-filter').addEventListener('input', refilter);
  document.getElementById('decision-kind').addEventListener('change', refilter);
  document.getElementById('decision-prev').addEventListener('click', function () { turn(-1); });
  document.getElementById('decision-next').addEventListener('click', function () { turn(1); });
})();
)js";

}  // namespace ebb::report
