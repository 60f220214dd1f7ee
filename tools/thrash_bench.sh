#!/usr/bin/env bash
# Bounds of `ebb plan` and `ebb simulate` on DTR logs that make dynamic eviction thrash: for
# generated tree-structured recurrent models (tools/make_workload.py tree-recurrent) and budgets
# from 10% to 100%, every run must end (with a result or a "thrashed" error) within 60 s and
# 2 GB of resident memory. Prints one line per run and the worst time and RSS; exits 1 when a
# run passes either bound.
#
# Usage: tools/thrash_bench.sh [EBB_BINARY]   (default: build/bin/ebb)
set -euo pipefail
EBB=${1:-build/bin/ebb}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ -x $EBB ]] || { echo "thrash_bench: no ebb binary at $EBB" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "thrash_bench: needs /usr/bin/time (GNU time)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LIMIT_S=60
LIMIT_KB=$((2 * 1024 * 1024))
worst_s=0 worst_kb=0 failed=0
# DEPTH HIDDEN SEED: ~5,600 ops / 145 MiB peak, and a deeper tree with ~11,000 ops.
for spec in "9 128 1" "9 128 2" "10 64 3"; do
  read -r depth hidden seed <<<"$spec"
  log="$WORK/tree_${depth}_${hidden}_${seed}.log"
  python3 "$ROOT/tools/make_workload.py" tree-recurrent "$depth" "$hidden" "$seed" "$log" >/dev/null
  for pct in 10 20 30 40 50 60 70 80 90 100; do
    for cmd in "plan --policy dynamic --link-gbps 0" "simulate --policy recompute"; do
      # shellcheck disable=SC2086
      rc=0
      timeout -s KILL $((LIMIT_S + 5)) /usr/bin/time -f "%e %M" -o "$WORK/time" \
        "$EBB" ${cmd%% *} "$log" --budget "$pct%" ${cmd#* } --json >"$WORK/out" 2>"$WORK/err" ||
        rc=$?
      # GNU time writes "Command exited with non-zero status N" first when the command failed.
      read -r secs kb < <(tail -n 1 "$WORK/time" 2>/dev/null) || { secs=$LIMIT_S; kb=0; }
      [[ $secs =~ ^[0-9.]+$ ]] || { secs=$((LIMIT_S + 5)); kb=0; }
      verdict=$( ( grep -o 'thrashed' "$WORK/err" || true ) | head -1)
      [[ $rc == 0 ]] && verdict=ok
      [[ -z $verdict ]] && verdict="rc=$rc"
      printf '%-24s %4s%%  %-9s %7.2f s %8d KB  %s\n' "$(basename "$log")" "$pct" \
        "${cmd%% *}" "$secs" "$kb" "$verdict"
      awk -v s="$secs" -v w="$worst_s" 'BEGIN { exit !(s > w) }' && worst_s=$secs
      ((kb > worst_kb)) && worst_kb=$kb
      if awk -v s="$secs" -v l="$LIMIT_S" 'BEGIN { exit !(s > l) }' || ((kb > LIMIT_KB)); then
        failed=1
      fi
    done
  done
done
echo "worst: ${worst_s} s, ${worst_kb} KB max RSS (bounds: ${LIMIT_S} s, ${LIMIT_KB} KB)"
exit $failed
