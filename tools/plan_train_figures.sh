#!/usr/bin/env bash
# plan_train_figures.sh: the scheduler's figures on the reference trainer, in one run so that the
# ratios compare like with like. For each budget (50% and 30% of the unconstrained peak) and
# each policy (dynamic eviction, then the planners recompute-all, sqrt, swap-all and plan): the
# median step time after the warm-up and its overhead over `keep` (unconstrained, nothing
# evicted), the measured peak reserved bytes after the warm-up, the plan's predicted peak (sim
# device) and their difference, the plan's predicted step time and its error against the measured
# median, the dynamic evictions per planned step (fallbacks: what the plan did not foresee), and
# whether the final parameters are bitwise those of `keep`. Options after the model's (for
# instance --nvme-dir DIR --host-tier 16MiB, to send the swaps the host tier cannot hold to NVMe)
# go to every run.
#
#   tools/plan_train_figures.sh EBB_BINARY LINK_GBPS [ebb train model options...]
#   e.g. tools/plan_train_figures.sh build/bin/ebb 8 --layers 4 --d-model 128 --heads 4 \
#          --seq 128 --batch 8 --vocab 512 --steps 12
set -uo pipefail

if (($# < 2)); then
  sed -n '2,11p' "$0"
  exit 2
fi
readonly EBB=$1 LINK=$2
shift 2
readonly MODEL=("$@")

# The value of "key":value in a one-line JSON object (the last one when nested objects repeat it).
field() {  # key text
  sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[-0-9.eE+]*\|true\|false\).*/\1/p" <<<"$2" | tail -n 1
}

run() {  # extra ebb train options...
  local out
  if ! out=$("$EBB" train "${MODEL[@]}" --device cpu --link-gbps "$LINK" --json "$@" 2>&1); then
    echo "plan_train_figures: ebb train ${MODEL[*]} $* failed: $(tail -n 1 <<<"$out")" >&2
    return 1
  fi
  tail -n 1 <<<"$out"
}

failed=0
base=$(run --policy keep) || exit 1
base_ms=$(field steady_ms_median "$base")
base_params=$(field parameters_fnv1a "$base")
printf 'ebb train %s on cpu, host link %s GB/s each way\n' "${MODEL[*]}" "$LINK"
printf '%-14s %-6s %9s %9s %14s %14s %8s %9s %8s %9s %s\n' policy budget ms/step overhead \
  peak_measured peak_predicted error ms_pred ms_error fallbacks identical
printf '%-14s %-6s %9.1f %9s %14s %14s %8s %9s %8s %9s %s\n' keep - "$base_ms" - \
  "$(field steady_peak_reserved_bytes "$base")" - - - - - -
for budget in 50% 30%; do
  for policy in dynamic recompute-all sqrt swap-all plan; do
    if ! summary=$(run --policy "$policy" --budget "$budget"); then
      printf '%-14s %-6s %9s\n' "$policy" "$budget" failed
      failed=1
      continue
    fi
    ms=$(field steady_ms_median "$summary")
    measured=$(field steady_peak_reserved_bytes "$summary")
    predicted=$(field predicted_peak_reserved_bytes "$summary")
    error=- ms_pred=- ms_error=- fallbacks=-
    if [[ -n "$predicted" ]]; then
      error=$(awk -v m="$measured" -v p="$predicted" 'BEGIN { printf "%.1f%%", (m / p - 1) * 100 }')
      ms_pred=$(field predicted_step_ms "$summary")
      ms_error=$(awk -v m="$ms" -v p="$ms_pred" 'BEGIN { printf "%.1f%%", (m / p - 1) * 100 }')
      ms_pred=$(awk -v p="$ms_pred" 'BEGIN { printf "%.1f", p }')
      fallbacks=$(awk -v f="$(field fallback_evictions "$summary")" \
        -v s="$(field planned_steps "$summary")" 'BEGIN { printf "%.1f", (s > 0 ? f / s : f) }')
    else
      predicted="no plan"
    fi
    same=no
    [[ "$(field parameters_fnv1a "$summary")" == "$base_params" ]] && same=yes
    [[ "$same" == yes ]] || failed=1
    printf '%-14s %-6s %9.1f %8.1f%% %14s %14s %8s %9s %8s %9s %s\n' "$policy" "$budget" "$ms" \
      "$(awk -v a="$ms" -v b="$base_ms" 'BEGIN { print (a / b - 1) * 100 }')" "$measured" \
      "$predicted" "$error" "$ms_pred" "$ms_error" "$fallbacks" "$same"
  done
done
exit "$failed"
