#!/usr/bin/env bash
# train_figures.sh: the reference trainer's figures on one device, in one run so that the ratios
# compare like with like: tokens/s unconstrained, then the median step time, its overhead over
# the unconstrained run, the peak reserved bytes and whether the final parameters are bitwise
# those of the unconstrained run, for each policy (swap, recompute, both) at 70% and 40% of the
# unconstrained peak. Prints a table, and one JSON object per run to $TRAIN_FIGURES_JSON if set.
#
#   tools/train_figures.sh EBB_BINARY DEVICE [ebb train model options...]
#   e.g. tools/train_figures.sh build/bin/ebb cpu --layers 2 --d-model 128 --heads 4 --seq 128 \
#          --batch 8 --vocab 512 --steps 12
set -uo pipefail

if (($# < 2)); then
  sed -n '2,12p' "$0"
  exit 2
fi
readonly EBB=$1 DEVICE=$2
shift 2
readonly MODEL=("$@")

# The value of "key":value in a one-line JSON object.
field() {  # key text
  sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[-0-9.eE+]*\|true\|false\).*/\1/p" <<<"$2" | tail -n 1
}

run() {  # extra ebb train options...
  local out
  if ! out=$("$EBB" train "${MODEL[@]}" --device "$DEVICE" --json "$@" 2>&1); then
    echo "train_figures: ebb train ${MODEL[*]} $* failed: $(tail -n 1 <<<"$out")" >&2
    return 1
  fi
  local summary
  summary=$(tail -n 1 <<<"$out")
  [[ -n "${TRAIN_FIGURES_JSON:-}" ]] && echo "$summary" >>"$TRAIN_FIGURES_JSON"
  echo "$summary"
}

failed=0
base=$(run) || exit 1
base_ms=$(field ms_per_step_median "$base")
base_params=$(field parameters_fnv1a "$base")
printf 'ebb train %s on %s\n' "${MODEL[*]}" "$DEVICE"
printf '%-10s %-7s %12s %10s %14s %10s %s\n' policy budget ms/step overhead peak_reserved \
  tokens/s identical
printf '%-10s %-7s %12.1f %10s %14s %10.0f %s\n' none - "$base_ms" - \
  "$(field peak_reserved_bytes "$base")" "$(field tokens_per_s "$base")" -
for budget in 70% 40%; do
  for policy in swap recompute both; do
    if ! summary=$(run --policy "$policy" --budget "$budget"); then
      printf '%-10s %-7s %12s\n' "$policy" "$budget" infeasible
      failed=1
      continue
    fi
    ms=$(field ms_per_step_median "$summary")
    same=no
    [[ "$(field parameters_fnv1a "$summary")" == "$base_params" ]] && same=yes
    [[ "$same" == yes ]] || failed=1
    printf '%-10s %-7s %12.1f %9.1f%% %14s %10.0f %s\n' "$policy" "$budget" "$ms" \
      "$(awk -v a="$ms" -v b="$base_ms" 'BEGIN { print (a / b - 1) * 100 }')" \
      "$(field peak_reserved_bytes "$summary")" "$(field tokens_per_s "$summary")" "$same"
  done
done
exit "$failed"
