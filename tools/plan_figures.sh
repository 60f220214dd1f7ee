#!/usr/bin/env bash
# The planner figures of README's Performance section: on the DTR logs (unet, resnet32, lstm) at
# budgets of 80, 60, 50, 40, 30 and 20% of peak live bytes, the extra compute fraction (replay
# time / base op time, measured by the simulator running the plan) of `plan` against `dynamic`
# (DTR-style dynamic eviction) and `recompute-all` (without the thrash limit, which it passes:
# the baseline's cost is the figure), recompute only (--link-gbps 0); then `plan`
# with a 25 GB/s host link each way (swap allowed) as extra time fraction (predicted step / base
# - 1), and the planner's time. "fails" is an infeasible budget (the smallest feasible one in
# brackets where the planner found it). Then the lower bound no recompute-only plan can beat
# (engine/planner/plan_bounds.h; "none fits" where the budget is below the bound's floor), and
# DTR's own simulator with h_DTR^eq run here (engine/planner/dtr_reference.h, the dtr_reference
# field: extra compute fraction, "fails" when it runs out of memory, "thrashed" past its remat
# limit of 1x the base compute).
#
# Usage: tools/plan_figures.sh [EBB_BINARY] [DTR_LOG_DIR]
set -euo pipefail
ebb=${1:-build/bin/ebb}
logs=${2:-$(dirname "$0")/../../shared/external/dtr_logs}

# One `ebb plan --json` run; prints FIELD, or "fails (smallest%)" for an infeasible budget. A
# FIELD inside recompute_lower_bound is printed whether or not the plan fits.
figure() {
  local field=$1
  shift
  local out
  out=$("$ebb" plan "$@" --json 2>/dev/null || true)
  python3 -c '
import json, re, sys
field, text = sys.argv[1], sys.argv[2]
try:
    r = json.loads(text)
except ValueError:
    print("error"); sys.exit()
if field.startswith("dtr."):
    d = r.get("dtr_reference")
    if d is None:
        print("error")
    elif d["feasible"]:
        print("%.3f" % d[field[len("dtr."):]])
    else:
        print("fails" if d["outcome"] == "out of memory" else d["outcome"])
    sys.exit()
if field.startswith("bound."):
    b = r.get("recompute_lower_bound")
    if b is None:
        print("error")
    elif b["extra_compute_fraction"] == 0 and b["min_budget_bytes"] > r["budget_bytes"]:
        print("none fits")
    else:
        print("%.3f" % b[field[len("bound."):]])
    sys.exit()
if not r.get("feasible"):
    m = re.search(r"smallest feasible budget is \d+ bytes \(([\d.]+%)\)", r.get("error", ""))
    print("fails (%s)" % m.group(1) if m else "fails")
else:
    print("%.3f" % r[field])
' "$field" "$out"
}

echo "| log | budget | plan | dynamic | recompute-all | plan, 25 GB/s (time) | planner s | lower bound | DTR (run here) |"
echo "|---|---|---|---|---|---|---|---|---|"
for log in unet resnet32 lstm; do
  for budget in 80 60 50 40 30 20; do
    file="$logs/$log.log"
    plan=$(figure extra_compute_fraction "$file" --budget "$budget%" --link-gbps 0 --policy plan)
    dynamic=$(figure extra_compute_fraction "$file" --budget "$budget%" --link-gbps 0 --policy dynamic)
    all=$(figure extra_compute_fraction "$file" --budget "$budget%" --link-gbps 0 --policy recompute-all --max-overhead 0)
    swap=$(figure extra_time_fraction "$file" --budget "$budget%" --link-gbps 25 --policy plan)
    seconds=$(figure planner_seconds "$file" --budget "$budget%" --link-gbps 0 --policy plan)
    bound=$(figure bound.extra_compute_fraction "$file" --budget "$budget%" --link-gbps 0 --policy keep)
    dtr=$(figure dtr.extra_compute "$file" --budget "$budget%" --link-gbps 0 --policy keep)
    echo "| $log | $budget% | $plan | $dynamic | $all | $swap | $seconds | $bound | $dtr |"
  done
done
