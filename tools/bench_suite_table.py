#!/usr/bin/env python3
"""README's table of an `ebb bench suite` run: one row per workload and budget, one column per
policy, each cell the step over the unconstrained step (a profile's: the simulated step over its
op time; the trainer's: measured) and the extra compute fraction in brackets, or why the cell
could not run ("OOM": the policy does not fit the budget; "thrashed": past the thrash limit;
"refused": the engine refused the policy's plan and fell back to dynamic eviction).

Usage: tools/bench_suite_table.py DIR/results.csv
"""
import csv
import sys

POLICIES = ["keep", "dynamic", "recompute-all", "sqrt", "swap-all", "plan"]

rows = list(csv.DictReader(open(sys.argv[1], newline="")))
cells = {(r["workload"], r["budget_percent"], r["policy"]): r for r in rows}
workloads = list(dict.fromkeys(r["workload"] for r in rows))
budgets = list(dict.fromkeys(r["budget_percent"] for r in rows))
print("| Workload | Budget | " + " | ".join("`%s`" % p for p in POLICIES) + " |")
print("|---|---|" + "---|" * len(POLICIES))
for w in workloads:
    for i, b in enumerate(budgets):
        out = []
        for p in POLICIES:
            r = cells[(w, b, p)]
            if r["status"] == "ok":
                out.append("%.3f (%.3f)" % (float(r["slowdown"]), float(r["extra_compute_fraction"])))
            else:
                out.append({"out of memory": "OOM", "plan refused": "refused"}.get(
                    r["status"], r["status"]))
        print("| %s | %s%% | %s |" % ("`%s`" % w if i == 0 else "", b, " | ".join(out)))
