#!/usr/bin/env bash
# The arena planner on tight generated problems whose optimum is known (ebb arena-generate: a
# full 1 MiB strip cut into random rectangles, so each fits exactly at capacity 1048576), and
# on MiniMalloc's problems A-E when ../shared/external is present. Prints, per problem, whether
# it was packed within capacity and the planner's seconds; then the share solved within the
# time limit and the median seconds.
#   tools/arena_generated_bench.sh [EBB] [SEEDS] [TIME_LIMIT]
# EBB defaults to build/bin/ebb, SEEDS to 40 (seeds 1..SEEDS, fixed), TIME_LIMIT to 10 s.
# Sizes: seed s gets 150 + (s * 97) mod 301 buffers, spread over 150-450.
set -euo pipefail
ebb=${1:-build/bin/ebb}
seeds=${2:-40}
limit=${3:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

run_one() {  # name csv -> "name buffers solved seconds"
  local json
  if json=$("$ebb" arena-plan "$2" --json --time-limit "$limit" 2>/dev/null); then :; fi
  python3 -c '
import json, sys
name, text = sys.argv[1], sys.argv[2]
try:
    j = json.loads(text)
    print(name, j["buffers"], "yes" if j["fits"] else "no", "%.3f" % j["seconds"])
except Exception:
    print(name, "?", "no", "nan")' "$1" "${json:-}"
}

summary() {
  python3 -c '
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
solved = [r for r in rows if r[2] == "yes"]
secs = sorted(float(r[3]) for r in solved)
print("%s: %d/%d solved (%.1f%%), median %.3f s, max %.3f s over the solved" % (
    sys.argv[1], len(solved), len(rows), 100.0 * len(solved) / max(1, len(rows)),
    statistics.median(secs) if secs else float("nan"), max(secs) if secs else float("nan")))
' "$1"
}

: >"$dir/generated.txt"
for s in $(seq 1 "$seeds"); do
  n=$((150 + (s * 97) % 301))
  csv="$dir/gen$s.1048576.csv"
  "$ebb" arena-generate "$csv" --buffers "$n" --seed "$s" --capacity 1048576
  run_one "gen$s" "$csv" | tee -a "$dir/generated.txt"
done
summary generated <"$dir/generated.txt"

ext="$here/../shared/external/minimalloc"
if [ -d "$ext" ]; then
  : >"$dir/minimalloc.txt"
  for p in A B C D E; do
    for csv in "$ext/$p".*.csv; do run_one "$p" "$csv" | tee -a "$dir/minimalloc.txt"; done
  done
  summary minimalloc <"$dir/minimalloc.txt"
fi
