#!/usr/bin/env bash
# Soak: trains the reference model for many steps under a plan at 40% of the unconstrained peak,
# with a pinned host tier small enough that swapped tensors spill to an NVMe tier, and checks
# (tools/soak_check.py) that
#   - the peak reserved device bytes and the process's resident host memory (the step fields
#     peak_reserved_bytes and rss_bytes) grow by no more than 1% after step 100, and
#   - the final parameters are bit for bit those of an unconstrained run of the same seed and
#     steps (summary field parameters_fnv1a).
# Not run in CI (10,000 steps take about half an hour on two cores); tests/tools/soak_test.py
# runs it with a few steps on a small shape.
#
# Usage: tools/soak.sh [ebb train shape flags...]   e.g. tools/soak.sh --layers 1 --d-model 32
# Environment:
#   EBB        the ebb binary (default: build/bin/ebb)
#   STEPS      training steps of each run (default: 10000)
#   SOAK_KEEP  a directory to keep both runs' JSON in (budgeted.jsonl, unconstrained.jsonl);
#              by default they go with the temporary directory
# Exit status: 0 when every check passes, 1 when one fails, 2 when a run fails.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EBB=${EBB:-$ROOT/build/bin/ebb}
STEPS=${STEPS:-10000}
readonly SHAPE=("$@")
[[ -x $EBB ]] || { echo "soak: no ebb binary at $EBB" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ebb-soak.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
OUT=${SOAK_KEEP:-$WORK}
mkdir -p "$OUT" "$WORK/nvme"

# Under the plan at 40% the default shape moves megabytes a step off the device (9.4 MB to NVMe
# measured): a 64 KiB host tier passes almost all of it on to the NVMe tier, and what is on
# NVMe at any one time (a step's evicted tensors, a few MB) fits 64 MiB.
readonly BUDGETED=(--policy plan --budget 40% --host-tier 64KiB --nvme-dir "$WORK/nvme"
                   --nvme-size 64MiB)

run() {  # NAME FLAGS...: one `ebb train --json` run into $OUT/NAME.jsonl, timed
  local name=$1
  shift
  local start=$SECONDS
  if ! "$EBB" train --steps "$STEPS" "${SHAPE[@]}" "$@" --json >"$OUT/$name.jsonl" \
      2>"$WORK/$name.err"; then
    echo "soak: the $name run failed:" >&2
    cat "$WORK/$name.err" >&2
    exit 2
  fi
  echo "$name run: $STEPS steps in $((SECONDS - start)) s"
}

run budgeted "${BUDGETED[@]}"
run unconstrained
python3 "$ROOT/tools/soak_check.py" "$OUT/budgeted.jsonl" "$OUT/unconstrained.jsonl"
