#!/usr/bin/env bash
# zero3_figures.sh: ZeRO stage 3's figures (`ebb train --zero 3` under mpirun, cpu ranks), printed
# as Markdown tables on stdout:
#   1. memory per rank (rank 0, mixed precision, AdamW, the just-in-time schedule, so that the
#      gathered working set is one layer's): measured peak bytes per kind against 16 Psi / N
#      plus the gathered working set the schedule predicts (engine/zero/gather_plan.h's
#      peak_gathered_bytes: the largest slices it holds gathered at once) and the buffers;
#   2. communication per rank and step: the gathers' and the reduction's bytes over the steady
#      steps against 3 (N-1)/N Psi x 2 bytes (two all-gathers and a reduce-scatter);
#   3. exposed gather time per step (the time ops waited for gathers past when they asked,
#      measured with events) under a modelled link (--comm-gbps), for the plan and the two
#      fixed baselines (just in time; DeepSpeed's default prefetch window), measured on the cpu
#      ranks and predicted by the schedule's simulation;
#   4. the largest model that trains on 4 cpu ranks with a budget of BUDGET (256MiB) each, with
#      stage 2, stage 3, and stage 3 with the optimizer state on the host: the most layers (of
#      width D_MODEL_BIG) that train STEPS_BIG steps, found by doubling then bisection.
# Raw outputs go to OUT_DIR (one file per run, its stderr beside it).
#
#   tools/zero3_figures.sh EBB_BINARY OUT_DIR
# Environment: RANKS ("2 4"), MPIRUN (mpirun), the model of 1-3: LAYERS (4), D_MODEL (256),
# HEADS (4), SEQ (128), BATCH (4), VOCAB (4096), STEPS (8), BUCKET_MB (1); 3's link: COMM_GBPS
# (2), COMM_LATENCY_US (20), ONE_RANK_LATENCY_US (1000) and its budget BUDGET3 (60%); 4's:
# BUDGET (256MiB), D_MODEL_BIG (512), SEQ_BIG (32), BATCH_BIG (1), STEPS_BIG (4: stage 3 plans
# its gathers from the fourth step, after the warm-up the profiler extends by one),
# START_LAYERS (1, where the doubling starts), MAX_LAYERS (256), RESOLUTION (1: the bisection
# stops when the layers that train and those that fail are this close), LARGEST_ONLY (a word
# the configurations of 4 must contain, e.g. 'stage 3'); SKIP_SMALL=1 skips 1-3,
# SKIP_LARGEST=1 skips 4.
set -euo pipefail

if (($# != 2)); then
  sed -n '2,28p' "$0"
  exit 2
fi
readonly EBB=$1 OUT=$2
readonly RANKS=${RANKS:-2 4} MPIRUN=${MPIRUN:-mpirun}
readonly MODEL=(--layers "${LAYERS:-4}" --d-model "${D_MODEL:-256}" --heads "${HEADS:-4}"
  --seq "${SEQ:-128}" --batch "${BATCH:-4}" --vocab "${VOCAB:-4096}" --steps "${STEPS:-8}"
  --bucket-mb "${BUCKET_MB:-1}" --precision bf16 --grad-dtype bf16 --optimizer adamw)
readonly LINK=(--comm-gbps "${COMM_GBPS:-2}" --comm-latency-us "${COMM_LATENCY_US:-20}")
mkdir -p "$OUT"
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}

run() {  # run NAME N ARGS...: one job, its JSON into OUT/NAME.json; returns its status
  local name=$1 n=$2
  shift 2
  "$MPIRUN" --oversubscribe --allow-run-as-root -np "$n" "$EBB" train --json "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.err"
}

start=$(date +%s)
echo "# ZeRO stage 3 figures"
echo
echo "- command: \`$0 $*\` (RANKS=\"$RANKS\")"
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: $(nproc) cores (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "- model (1-3): \`${MODEL[*]}\`; link (3): \`${LINK[*]}\`, budget ${BUDGET3:-60%}"
echo

if [[ ${SKIP_SMALL:-0} != 1 ]]; then
for n in $RANKS; do
  run "mem_n$n" "$n" --zero 3 --gather-schedule jit "${MODEL[@]}" ||
    echo "**memory run N=$n failed**, see $OUT/mem_n$n.err" >&2
done
# One rank sends nothing: its link is the latency alone (ONE_RANK_LATENCY_US per gather), which
# shows what a schedule hides with no other rank to wait for.
for sched in plan jit deepspeed; do
  run "link_n1_$sched" 1 --zero 3 --gather-schedule "$sched" --budget "${BUDGET3:-60%}" \
    --policy dynamic --comm-latency-us "${ONE_RANK_LATENCY_US:-1000}" "${MODEL[@]}" ||
    echo "**link run N=1 $sched failed**, see $OUT/link_n1_$sched.err" >&2
done
for n in $RANKS; do
  for sched in plan jit deepspeed; do
    run "link_n${n}_$sched" "$n" --zero 3 --gather-schedule "$sched" --budget "${BUDGET3:-60%}" \
      --policy dynamic "${LINK[@]}" "${MODEL[@]}" ||
      echo "**link run N=$n $sched failed**, see $OUT/link_n${n}_$sched.err" >&2
  done
done

python3 - "$OUT" "$RANKS" <<'EOF'
import json, os, statistics, sys

out, ranks = sys.argv[1], [int(r) for r in sys.argv[2].split()]
MiB = 2.0 ** 20

def load(name):
    try:
        objs = [json.loads(l) for l in open(os.path.join(out, name + ".json")) if l.strip()]
    except (OSError, ValueError):
        return None
    if not objs or "zero" not in objs[-1]:
        return None
    return [o for o in objs[:-1] if "step" in o], objs[-1]

# The trainer's two warm-up steps, plus the one the profiler adds because ZeRO's first step
# differs from the rest (it reduces at the step, later ones during backward): the schedule is
# followed from step 4 on.
WARMUP = 3

print("## 1. Memory per rank (rank 0, mixed precision, just-in-time gathers; MiB = 2^20 bytes)")
print()
print("| N | Psi | params: measured | 2Psi/N + gathered set | ratio | grads: measured | 2Psi/N + in flight | opt. state: measured | 12Psi/N | ratio | gathered set (predicted) | workspace |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ranks:
    r = load(f"mem_n{n}")
    if r is None:
        print(f"| {n} | failed |")
        continue
    steps, s = r
    z, psi = s["zero"], s["model_state"]["parameters"]
    g = (z.get("predicted") or {}).get("peak_gathered_bytes", 0)
    p_model = 2 * psi / n + g
    o_model = 12 * psi / n
    print(f"| {n} | {psi} | {z['peak_parameter_bytes'] / MiB:.3f} | {p_model / MiB:.3f} | "
          f"{z['peak_parameter_bytes'] / p_model:.4f} | {z['peak_gradient_bytes'] / MiB:.3f} | "
          f"{2 * psi / n / MiB:.3f} + in flight | {z['peak_optimizer_state_bytes'] / MiB:.3f} | "
          f"{o_model / MiB:.3f} | {z['peak_optimizer_state_bytes'] / o_model:.4f} | {g / MiB:.3f} | "
          f"{z['peak_workspace_bytes'] / MiB:.3f} |")
print()
print("Peaks are the steady steps' (the allocator's peaks are reset after the warm-up). params = "
      "the shard's own working parameters (2 Psi / N) plus the full slices gathered at once; the "
      "gathered set is the schedule's simulated peak of gathered bytes (the largest slices it "
      "holds at once), an independent prediction of what the allocator measured. grads include "
      "the full gradient buffers in flight during backward, as in stage 2 (the bucket being "
      "accumulated and the tied embedding's). Psi = model_state.parameters (unpadded).")
print()

print("## 2. Communication per rank and step (rank 0, steady steps)")
print()
print("| N | schedule | gathers/step | gather B/step | reduce B/step | total/step | 3 (N-1)/N Psi x 2 | ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for n in ranks:
    for name, sched in ((f"mem_n{n}", "jit, no budget"), (f"link_n{n}_jit", "jit, budget"),
                        (f"link_n{n}_plan", "plan, budget"), (f"link_n{n}_deepspeed", "deepspeed, budget")):
        r = load(name)
        if r is None:
            print(f"| {n} | {sched} | failed |")
            continue
        steps, s = r
        steady = steps[WARMUP:]
        psi = s["model_state"]["parameters"]
        gb = statistics.mean(st["gather_bytes"] for st in steady)
        gc = statistics.mean(st["gathers"] for st in steady)
        red = s["zero"]["reduce_bytes"] / len(steps)
        theory = 3 * (n - 1) / n * psi * 2
        print(f"| {n} | {sched} | {gc:.1f} | {gb:.0f} | {red:.0f} | {gb + red:.0f} | {theory:.0f} | {(gb + red) / theory:.4f} |")
print()
print("The reduction sends (N-1)/N of the gradients every step (an all-to-all and a fold, what a "
      "reduce-scatter sends). A slice gathered in forward and again in backward sends 2 (N-1)/N of "
      "its parameters; one the schedule keeps gathered from forward into backward sends it once, "
      "which is why a schedule with room sends less than the textbook 3x.")
print()

print("## 3. Exposed gather time per step (modelled link; measured on the cpu ranks, predicted by the schedule's simulation)")
print()
print("| N | schedule | measured exposed ms/step (median) | predicted exposed ms | predicted gather ms | measured step ms (median) | predicted step ms | gathers/step | peak params MiB | predicted gathered set MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in [1] + ranks:
    for sched in ("plan", "jit", "deepspeed"):
        r = load(f"link_n{n}_{sched}")
        if r is None:
            print(f"| {n} | {sched} | failed |")
            continue
        steps, s = r
        steady = steps[WARMUP:]
        pred = s["zero"].get("predicted") or {}
        print(f"| {n} | {sched} | {statistics.median(st['exposed_gather_ms'] for st in steady):.2f} | "
              f"{pred.get('exposed_s', float('nan')) * 1e3:.2f} | {pred.get('gather_s', float('nan')) * 1e3:.2f} | "
              f"{statistics.median(st['ms'] for st in steady):.1f} | {pred.get('step_s', float('nan')) * 1e3:.1f} | "
              f"{statistics.mean(st['gathers'] for st in steady):.1f} | "
              f"{s['zero']['peak_parameter_bytes'] / MiB:.2f} | {pred.get('peak_gathered_bytes', 0) / MiB:.2f} |")
print()
print("N = 1: one rank, no peer, each gather modelled as the link latency alone "
      "(ONE_RANK_LATENCY_US); N >= 2: the link of the header, ranks oversubscribing the cores, so "
      "a gather also waits for the slowest rank to reach it (their skew), which no schedule hides. "
      "Predicted: the schedule's simulation (engine/zero/gather_plan.h) of the profiled step with "
      "rank 0's op times; its gathers count units (a block's slices together), the measured "
      "gathers count slices.")
print()
EOF
fi

if [[ ${SKIP_LARGEST:-0} != 1 ]]; then
  readonly BUDGET=${BUDGET:-256MiB}
  big() {  # big NAME LAYERS ARGS...: whether a 4-rank job of LAYERS layers trains
    local name=$1 layers=$2
    shift 2
    run "big_${name}_$layers" 4 --layers "$layers" --d-model "${D_MODEL_BIG:-512}" \
      --heads 8 --seq "${SEQ_BIG:-32}" --batch "${BATCH_BIG:-1}" --vocab 4096 \
      --steps "${STEPS_BIG:-4}" --precision bf16 --grad-dtype bf16 --optimizer adamw \
      --budget "$BUDGET" --policy dynamic --bucket-mb 4 "$@"
  }
  echo "## 4. The largest model that trains on 4 cpu ranks, $BUDGET each"
  echo
  echo "| configuration | most layers that train | parameters | fails at | its error |"
  echo "|---|---:|---:|---:|---|"
  for cfg in "stage 2|--zero 2" "stage 3|--zero 3 --gather-schedule plan" \
    "stage 3, optimizer state on the host|--zero 3 --gather-schedule plan --optimizer-state host"; do
    label=${cfg%%|*}
    [[ $label == *"${LARGEST_ONLY:-}"* ]] || continue
    read -r -a args <<<"${cfg#*|}"
    key=$(echo "$label" | tr -c 'a-z0-9' '_')
    good=0 bad=0 l=${START_LAYERS:-1}
    while ((l <= ${MAX_LAYERS:-256})); do
      if big "$key" "$l" "${args[@]}"; then good=$l; l=$((l * 2)); else bad=$l; break; fi
    done
    if ((bad > 0)); then
      while ((bad - good > ${RESOLUTION:-1})); do
        mid=$(((good + bad) / 2))
        if big "$key" "$mid" "${args[@]}"; then good=$mid; else bad=$mid; fi
      done
    fi
    params=n/a
    if ((good > 0)); then
      params=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['model_state']['parameters'])" "$OUT/big_${key}_$good.json" 2>/dev/null || echo n/a)
    fi
    err=""
    if ((bad > 0)); then
      err=$(grep -m1 -oE '(ebb: [A-Za-z]+: |error: ).*' "$OUT/big_${key}_$bad.err" | cut -c1-200 | tr '|' '/' || true)
    fi
    echo "| $label | $good | $params | $( ((bad > 0)) && echo "$bad" || echo "> ${MAX_LAYERS:-256}") | $err |"
  done
  echo
  echo "Width ${D_MODEL_BIG:-512}, 8 heads, vocab 4096, seq ${SEQ_BIG:-32}, batch ${BATCH_BIG:-1}, bf16 with bf16 gradients, AdamW, --policy dynamic (activations swapped to the host tier or recomputed as the budget needs), ${STEPS_BIG:-4} steps; the trainer's own --budget check refuses a model whose largest op does not fit before any step."
  echo
fi
echo "Whole script: $(($(date +%s) - start)) s."
