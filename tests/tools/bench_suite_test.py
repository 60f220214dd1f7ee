#!/usr/bin/env python3
"""`ebb bench suite --quick`: every cell of workloads x 7 budgets x 6 policies is in the CSV, each
workload's SVG parses as XML with exactly one policy line per policy, and bad input (a missing or
malformed --workload, an unwritable --out, an unknown --device) fails naming it without leaving
results behind. With --device cpu the reference trainer is in the matrix too, measured on the cpu
device: every cell of it that ran ends with the unconstrained run's parameters, bit for bit.

Usage: bench_suite_test.py --ebb PATH --workdir DIR
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

BUDGETS = [100, 80, 60, 50, 40, 30, 20]
POLICIES = ["keep", "dynamic", "recompute-all", "sqrt", "swap-all", "plan"]
STATUSES = {"ok", "out of memory", "thrashed", "plan refused", "failed"}
SVG = "{http://www.w3.org/2000/svg}"

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def run(ebb, *args):
    return subprocess.run([ebb, "bench", "suite", *args], capture_output=True, text=True,
                          timeout=300)


def check_quick(ebb, out, device):
    r = run(ebb, "--quick", "--device", device, "--out", out)
    check(r.returncode == 0, "--quick --device %s exited %d: %s" % (device, r.returncode, r.stderr))
    if r.returncode != 0:
        return
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    workloads = [w["name"] for w in results["workloads"]]
    check(len(workloads) >= 1, "no workloads in results.json")
    devices = {w["name"]: w["device"] for w in results["workloads"]}
    trainers = [w for w in workloads if devices[w] != "sim"]
    if device == "sim":
        check(not trainers, "--device sim ran workloads elsewhere: %s" % trainers)
    else:
        check(len(trainers) == 1 and devices[trainers[0]] == device,
              "--device %s: the trainer is not in the matrix on it (%s)" % (device, devices))
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    expected = {(w, b, p) for w in workloads for b in BUDGETS for p in POLICIES}
    seen = [(row["workload"], int(row["budget_percent"]), row["policy"]) for row in rows]
    check(len(rows) == len(workloads) * len(BUDGETS) * len(POLICIES),
          "CSV has %d rows, want %d" % (len(rows), len(expected)))
    check(set(seen) == expected and len(set(seen)) == len(seen),
          "CSV cells are not workloads x budgets x policies, each once")
    for row in rows:
        cell = "%s %s%% %s" % (row["workload"], row["budget_percent"], row["policy"])
        check(row["status"] in STATUSES, cell + ": status " + row["status"])
        check(row["device"] == devices[row["workload"]], cell + ": device " + row["device"])
        if row["status"] == "ok":
            check(float(row["slowdown"]) > 0, cell + ": ok without a slowdown")
            check(int(row["peak_reserved_bytes"]) <= int(row["budget_bytes"]),
                  cell + ": peak reserved above the budget")
            # The promise: the same run, bit for bit, under any budget and policy.
            want = "" if row["device"] == "sim" else "yes"
            check(row["bitwise"] == want, cell + ": bitwise %r, want %r" % (row["bitwise"], want))
        else:
            check(row["reason"] != "", cell + ": " + row["status"] + " without a reason")
            check(row["status"] != "plan refused" or row["device"] != "sim",
                  cell + ": plan refused on the sim device")
    # The trainer's matrix ran something at every budget down to half its peak (dynamic
    # eviction, swapping over the modelled link, fits them all).
    for w in trainers:
        for b in BUDGETS:
            if b >= 50:
                check(any(row["workload"] == w and int(row["budget_percent"]) == b and
                          row["status"] == "ok" for row in rows),
                      "%s: no policy ran at %d%%" % (w, b))
    # Keep never evicts: below the peak it cannot fit.
    for row in rows:
        if row["policy"] == "keep" and int(row["budget_percent"]) < 100:
            check(row["status"] == "out of memory",
                  "keep at %s%% on %s is %s" % (row["budget_percent"], row["workload"],
                                                row["status"]))
    # One line per cell on a pipe (no progress bar).
    cell_lines = [l for l in r.stdout.splitlines() if l.startswith("[")]
    check(len(cell_lines) == len(rows), "%d progress lines for %d cells" % (len(cell_lines),
                                                                            len(rows)))
    svgs = sorted(f for f in os.listdir(out) if f.endswith(".svg"))
    check(len(svgs) == len(workloads), "%d SVGs for %d workloads" % (len(svgs), len(workloads)))
    for name in svgs:
        try:
            root = ET.parse(os.path.join(out, name)).getroot()
        except ET.ParseError as e:
            check(False, "%s does not parse: %s" % (name, e))
            continue
        paths = [p for p in root.iter(SVG + "path") if p.get("class") == "series"]
        check(len(list(root.iter(SVG + "path"))) == len(POLICIES),
              name + ": not exactly one <path> per policy")
        check(sorted(p.get("data-series") for p in paths) == sorted(POLICIES),
              name + ": policy paths " + str([p.get("data-series") for p in paths]))


def check_bad_input(ebb, workdir):
    out = os.path.join(workdir, "bad")
    missing = os.path.join(workdir, "no-such.log")
    r = run(ebb, "--quick", "--workload", missing, "--out", out)
    check(r.returncode != 0 and missing in r.stderr,
          "a missing --workload: exit %d, stderr %r" % (r.returncode, r.stderr))
    check(not os.path.exists(os.path.join(out, "results.csv")),
          "a missing --workload left results.csv behind")
    malformed = os.path.join(workdir, "malformed.json")
    with open(malformed, "w") as f:
        f.write('{"ops": [ {"name": ')
    r = run(ebb, "--quick", "--workload", malformed, "--out", out)
    check(r.returncode != 0 and malformed in r.stderr,
          "a malformed --workload: exit %d, stderr %r" % (r.returncode, r.stderr))
    check(not os.path.exists(os.path.join(out, "results.csv")),
          "a malformed --workload left results.csv behind")
    blocker = os.path.join(workdir, "a-file")
    with open(blocker, "w") as f:
        f.write("not a directory\n")
    unwritable = os.path.join(blocker, "out")
    r = run(ebb, "--quick", "--out", unwritable)
    check(r.returncode != 0 and unwritable in r.stderr,
          "an unwritable --out: exit %d, stderr %r" % (r.returncode, r.stderr))
    r = run(ebb, "--quick", "--device", "tpu", "--out", out)
    check(r.returncode != 0 and "tpu" in r.stderr,
          "an unknown --device: exit %d, stderr %r" % (r.returncode, r.stderr))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ebb", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    check_quick(args.ebb, os.path.join(args.workdir, "quick"), "sim")
    check_quick(args.ebb, os.path.join(args.workdir, "quick-cpu"), "cpu")
    check_bad_input(args.ebb, args.workdir)
    for message in failures:
        print("FAIL:", message)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
