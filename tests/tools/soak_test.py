#!/usr/bin/env python3
"""tools/soak.sh with a few steps, and its checker (tools/soak_check.py) on doctored runs.

The soak itself (10,000 steps) is not run in CI. Here it runs STEPS=150 on a one-block model
(--layers 1 --batch 4: under 20 s on two cores) and must pass, with every step carrying
rss_bytes and the budgeted run spilling to NVMe. Then the checker is fed copies of those runs
with one thing wrong at a time (host or device memory growing 2% after step 100, other final
parameters, no NVMe traffic, too few steps, no summary) and must fail naming it; a 0.5% growth
stays within the 1% it allows.

Usage: soak_test.py --ebb PATH --workdir DIR
"""
import argparse
import copy
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOAK = os.path.join(ROOT, "tools", "soak.sh")
CHECK = os.path.join(ROOT, "tools", "soak_check.py")
STEPS = 150
SHAPE = ["--layers", "1", "--batch", "4"]

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, objects):
    with open(path, "w", encoding="utf-8") as f:
        for obj in objects:
            f.write(json.dumps(obj) + "\n")


def run_soak(ebb, keep):
    env = dict(os.environ, EBB=ebb, STEPS=str(STEPS), SOAK_KEEP=keep)
    r = subprocess.run([SOAK, *SHAPE], capture_output=True, text=True, env=env, timeout=300)
    print(r.stdout + r.stderr)
    check(r.returncode == 0, "soak.sh exited %d" % r.returncode)
    check(r.stdout.strip().endswith("PASS"), "soak.sh did not end with PASS")
    for figure in ("peak_reserved_bytes:", "rss_bytes:", "parameters_fnv1a:"):
        check(figure in r.stdout, "soak.sh printed no " + figure)
    budgeted = read_jsonl(os.path.join(keep, "budgeted.jsonl"))
    steps = [o for o in budgeted if "step" in o]
    check(len(steps) == STEPS, "%d step objects, want %d" % (len(steps), STEPS))
    check(all(o.get("rss_bytes", 0) > 0 for o in steps), "a step without rss_bytes")
    check(budgeted[-1].get("nvme_written_bytes", 0) > 0, "the budgeted run did not spill")


def run_check(budgeted, unconstrained):
    r = subprocess.run([sys.executable, CHECK, budgeted, unconstrained], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def grow(field, fraction):
    """Doctors the budgeted run: `field` rises linearly from step 100 to +fraction at the end."""
    def doctor(budgeted, unconstrained):
        steps = [o for o in budgeted if "step" in o]
        base = next(o[field] for o in steps if o["step"] == 100)
        last = steps[-1]["step"]
        for o in steps:
            if o["step"] > 100:
                o[field] = int(base * (1 + fraction * (o["step"] - 100) / (last - 100)))
    return doctor


def other_parameters(budgeted, unconstrained):
    unconstrained[-1]["parameters_fnv1a"] ^= 1


def no_nvme(budgeted, unconstrained):
    budgeted[-1]["nvme_written_bytes"] = 0


def too_few_steps(budgeted, unconstrained):
    budgeted[:] = [o for o in budgeted if o.get("step", 0) <= 100]


def no_summary(budgeted, unconstrained):
    del budgeted[-1]


# (name, doctor, exit status, text the output must hold)
CASES = [
    ("rss 2%", grow("rss_bytes", 0.02), 1, "FAIL: rss_bytes grew past 1% of step 100's"),
    ("peak reserved 2%", grow("peak_reserved_bytes", 0.02), 1,
     "FAIL: peak_reserved_bytes grew past 1% of step 100's"),
    ("rss 0.5%", grow("rss_bytes", 0.005), 0, "PASS"),
    ("other parameters", other_parameters, 1,
     "FAIL: the final parameters differ from the unconstrained run's"),
    ("no NVMe", no_nvme, 1, "FAIL: the budgeted run wrote nothing to the NVMe tier"),
    ("100 steps", too_few_steps, 1, "FAIL: the run has 100 steps: nothing after step 100"),
    ("no summary", no_summary, 2, "no summary object"),
]


def check_doctored(keep, workdir):
    budgeted = read_jsonl(os.path.join(keep, "budgeted.jsonl"))
    unconstrained = read_jsonl(os.path.join(keep, "unconstrained.jsonl"))
    code, out = run_check(os.path.join(keep, "budgeted.jsonl"),
                          os.path.join(keep, "unconstrained.jsonl"))
    check(code == 0, "the checker fails the runs as they are: " + out)
    for name, doctor, want_code, want_text in CASES:
        b, u = copy.deepcopy(budgeted), copy.deepcopy(unconstrained)
        doctor(b, u)
        b_path = os.path.join(workdir, "doctored_budgeted.jsonl")
        u_path = os.path.join(workdir, "doctored_unconstrained.jsonl")
        write_jsonl(b_path, b)
        write_jsonl(u_path, u)
        code, out = run_check(b_path, u_path)
        print("%s: exit %d\n%s" % (name, code, out))
        check(code == want_code, "%s: the checker exited %d, want %d" % (name, code, want_code))
        check(want_text in out, "%s: no %r in the checker's output" % (name, want_text))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ebb", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    keep = os.path.join(args.workdir, "runs")
    os.makedirs(keep)
    run_soak(args.ebb, keep)
    if not failures:
        check_doctored(keep, args.workdir)
    for failure in failures:
        print("FAIL: " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
