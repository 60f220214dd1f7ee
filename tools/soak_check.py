#!/usr/bin/env python3
"""Checks the two runs of tools/soak.sh: the budgeted run stays flat, and ends on the same bits.

Each input is what `ebb train --json` printed: one JSON object per step, then the summary.

Flat: for each of the step fields peak_reserved_bytes (the device memory the allocator holds)
and rss_bytes (the process's resident host memory), every step from --from-step on is at most
--tolerance above that field's value at --from-step. The first steps are left out: they warm
up the caches, the plan and the tiers. A run that ends at or before --from-step has nothing to
check and fails.

Same bits: the summaries' parameters_fnv1a (a hash of every final parameter's bits) are equal.

Spilled: the budgeted run wrote to the NVMe tier (summary field nvme_written_bytes), so that
the soak exercised every tier it claims to.

Prints one line per figure and a verdict, PASS or FAIL: what failed, with the step and values.
Exit status: 0 on PASS, 1 on FAIL, 2 when an input cannot be read.

Usage: soak_check.py BUDGETED.jsonl UNCONSTRAINED.jsonl [--from-step 100] [--tolerance 0.01]
"""

import argparse
import json
import sys

FLAT_FIELDS = ("peak_reserved_bytes", "rss_bytes")


class InputError(Exception):
    pass


def read_run(path):
    """Returns (steps, summary) of one `ebb train --json` output: steps ordered by step."""
    steps = []
    summary = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e
    for number, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: not JSON: {e.msg}") from e
        if "step" in obj:
            steps.append(obj)
        elif "parameters_fnv1a" in obj:
            summary = obj
        else:
            raise InputError(f"{path}:{number}: neither a step nor the summary")
    if summary is None:
        raise InputError(f"{path}: no summary object (did the run finish?)")
    if not steps:
        raise InputError(f"{path}: no step objects")
    steps.sort(key=lambda s: s["step"])
    return steps, summary


def check_flat(steps, field, from_step, tolerance):
    """Returns (lines, failure or None) for one field of the budgeted run's steps."""
    base_row = next((s for s in steps if s["step"] == from_step), None)
    if base_row is None:
        return [], f"{field}: the run has no step {from_step} to compare against"
    if field not in base_row:
        return [], f"{field}: step {from_step} has no such field"
    base = base_row[field]
    later = [s for s in steps if s["step"] >= from_step]
    worst = max(later, key=lambda s: s[field])
    growth = (worst[field] - base) / base if base > 0 else 0.0
    lines = [
        f"{field}: {base} at step {from_step}, max {worst[field]} at step {worst['step']} "
        f"({growth * 100:+.3f}%)"
    ]
    limit = base * (1 + tolerance)
    first_over = next((s for s in later if s[field] > limit), None)
    if first_over is None:
        return lines, None
    over = (first_over[field] - base) / base
    return lines, (
        f"{field} grew past {tolerance * 100:g}% of step {from_step}'s {base}: "
        f"{first_over[field]} at step {first_over['step']} ({over * 100:+.3f}%)"
    )


def check(budgeted_path, unconstrained_path, from_step, tolerance):
    """Returns (lines, failures)."""
    steps, summary = read_run(budgeted_path)
    _, free_summary = read_run(unconstrained_path)
    lines = [f"steps: {steps[-1]['step']}"]
    failures = []
    if steps[-1]["step"] <= from_step:
        failures.append(f"the run has {steps[-1]['step']} steps: nothing after step {from_step}")
    for field in FLAT_FIELDS:
        field_lines, failure = check_flat(steps, field, from_step, tolerance)
        lines += field_lines
        if failure:
            failures.append(failure)
    nvme = summary.get("nvme_written_bytes", 0)
    lines.append(f"nvme_written_bytes: {nvme}")
    if nvme <= 0:
        failures.append("the budgeted run wrote nothing to the NVMe tier: lower --host-tier")
    ours, theirs = summary["parameters_fnv1a"], free_summary["parameters_fnv1a"]
    lines.append(f"parameters_fnv1a: budgeted {ours}, unconstrained {theirs}")
    if ours != theirs:
        failures.append("the final parameters differ from the unconstrained run's")
    return lines, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("budgeted", help="`ebb train --json` output of the budgeted run")
    parser.add_argument("unconstrained", help="the same of the run with no budget")
    parser.add_argument("--from-step", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed growth, 0.01 = 1%%")
    args = parser.parse_args()
    try:
        lines, failures = check(args.budgeted, args.unconstrained, args.from_step, args.tolerance)
    except InputError as e:
        print(f"soak_check: {e}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAIL")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
