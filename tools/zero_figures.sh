#!/usr/bin/env bash
# zero_figures.sh: the ZeRO data-parallel figures (`ebb train --zero 0|1|2` under mpirun), on the
# cpu device, printed as Markdown tables on stdout:
#   1. memory per rank (rank 0): measured peak parameter, gradient and optimizer-state bytes for
#      N ranks x stage 0, 1, 2 x precision (mixed = bf16 with bf16 gradients, fp32), both AdamW,
#      against the ZeRO paper's formula with Psi = model_state.parameters
#      (mixed 16Psi / 4Psi+12Psi/N / 2Psi+14Psi/N; fp32 16Psi / 8Psi+8Psi/N / 4Psi+12Psi/N),
#      and the collectives' workspace peak separately;
#   2. communication per rank and step: reduce_bytes and gather_bytes over the steps against
#      (N-1)/N x Psi x dtype bytes each (gradients reduced; parameters gathered in stage 1/2,
#      gradients in stage 0);
#   3. step time: the steady-state median ms/step of the mixed-precision runs of 1.
# The raw output (one JSON object per step, then the summary) of each run goes to
# OUT_DIR/n<N>_s<stage>_<precision>.json, its stderr next to it (.err).
#
#   tools/zero_figures.sh EBB_BINARY OUT_DIR
#   e.g. EBB_COMM_MPI_PLUGIN=build/lib/libebb_comm_mpi.so tools/zero_figures.sh build/bin/ebb /tmp/zf
# Environment: RANKS (default "1 2 4"), MPIRUN (default mpirun), and the model: LAYERS (4),
# D_MODEL (256), HEADS (4), SEQ (128), BATCH (4), VOCAB (4096), STEPS (8), and BUCKET_MB (1: the
# gradients of about one block per reduction, so that stage 2 frees them as backward goes; with
# a bucket larger than the model, the whole gradient is alive until the one reduction).
set -euo pipefail

if (($# != 2)); then
  sed -n '2,20p' "$0"
  exit 2
fi
readonly EBB=$1 OUT=$2
readonly RANKS=${RANKS:-1 2 4} MPIRUN=${MPIRUN:-mpirun}
readonly MODEL=(--layers "${LAYERS:-4}" --d-model "${D_MODEL:-256}" --heads "${HEADS:-4}"
  --seq "${SEQ:-128}" --batch "${BATCH:-4}" --vocab "${VOCAB:-4096}" --steps "${STEPS:-8}"
  --bucket-mb "${BUCKET_MB:-1}")
mkdir -p "$OUT"
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}

precision_args() {  # mixed | fp32
  case $1 in
    mixed) echo --precision bf16 --grad-dtype bf16 --optimizer adamw ;;
    fp32) echo --precision fp32 --grad-dtype fp32 --optimizer adamw ;;
  esac
}

start=$(date +%s)
cores=$(nproc)
echo "# ZeRO figures"
echo
echo "- command: \`$0 $*\` (RANKS=\"$RANKS\")"
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: $cores cores (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "- ebb: \`$EBB\`, cpu device"
echo "- model: \`${MODEL[*]}\`, AdamW; mixed = \`$(precision_args mixed)\`, fp32 = \`$(precision_args fp32)\`"
echo "- each run: \`$MPIRUN --oversubscribe --allow-run-as-root -np N $EBB train --zero S --json MODEL PRECISION\`"
echo "- peaks are rank 0's (only rank 0 prints), over the steady-state steps (after 2 warm-up steps)"
echo

for n in $RANKS; do
  for stage in 0 1 2; do
    for prec in mixed fp32; do
      base=$OUT/n${n}_s${stage}_${prec}
      # shellcheck disable=SC2046  # precision_args is split into its words on purpose
      if ! "$MPIRUN" --oversubscribe --allow-run-as-root -np "$n" "$EBB" train --zero "$stage" \
        --json "${MODEL[@]}" $(precision_args "$prec") >"$base.json" 2>"$base.err"; then
        echo "**run N=$n stage $stage $prec failed**, see $base.err" >&2
      fi
    done
  done
done

python3 - "$OUT" "$cores" "$RANKS" <<'EOF'
import json, os, sys

out, cores, ranks = sys.argv[1], int(sys.argv[2]), [int(r) for r in sys.argv[3].split()]
MiB = 2.0 ** 20
runs = {}
for n in ranks:
    for stage in (0, 1, 2):
        for prec in ("mixed", "fp32"):
            path = os.path.join(out, f"n{n}_s{stage}_{prec}.json")
            try:
                objs = [json.loads(l) for l in open(path) if l.strip()]
            except (OSError, ValueError):
                objs = []
            if not objs or "zero" not in objs[-1]:
                runs[(n, stage, prec)] = None
                continue
            steps = sum(1 for o in objs[:-1] if "step" in o)
            runs[(n, stage, prec)] = (objs[-1], steps)

def formula(n, stage, prec):  # bytes per Psi
    if prec == "mixed":
        return (16, 4 + 12 / n, 2 + 14 / n)[stage]
    return (16, 8 + 8 / n, 4 + 12 / n)[stage]

print("## 1. Memory per rank (rank 0, MiB = 2^20 bytes)")
print()
print("| N | stage | precision | params | grads | opt. state | measured total | formula total | measured/formula | workspace | op grads |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (n, stage, prec), r in runs.items():
    if r is None:
        print(f"| {n} | {stage} | {prec} | failed | | | | | | |")
        continue
    s, _ = r
    z, psi = s["zero"], s["model_state"]["parameters"]
    p, g, o = z["peak_parameter_bytes"], z["peak_gradient_bytes"], z["peak_optimizer_state_bytes"]
    tot, f = p + g + o, formula(n, stage, prec) * psi
    print(f"| {n} | {stage} | {prec} | {p / MiB:.2f} | {g / MiB:.2f} | {o / MiB:.2f} | {tot / MiB:.2f} "
          f"| {f / MiB:.2f} | {tot / f:.3f} | {z['peak_workspace_bytes'] / MiB:.2f} "
          f"| {z.get('peak_op_gradient_bytes', 0) / MiB:.2f} |")
psis = {r[0]["model_state"]["parameters"] for r in runs.values() if r}
print()
print(f"Psi = model_state.parameters = {', '.join(map(str, sorted(psis)))}. Formula: mixed 16Psi / "
      "4Psi+12Psi/N / 2Psi+14Psi/N, fp32 16Psi / 8Psi+8Psi/N / 4Psi+12Psi/N (stage 0 / 1 / 2). "
      "Measured total = params + grads + opt. state peaks (each kind's peak, not necessarily "
      "simultaneous); workspace (the collectives' buffers) is not in the total. The layout pads "
      "every slice to a multiple of N x 512 bytes, so Psi_padded > Psi. In stage 2 the gradient "
      "peak includes the full gradient buffers of the slices in flight during backward: the "
      "embedding slice (its tied LM-head gradient is written at the start of backward, the "
      "embedding gradient at its end: vocab x d_model x b) and the bucket being accumulated. grads = the model state's gradient buffers "
      "(Engine::memory_by_kind(kGradient)); the gradients backward's ops output (activation "
      "gradients, fp32 weight gradients before they are accumulated) are counted apart, in the "
      "op grads column (Engine::op_gradient_memory), and are not in the total.")
print()

print("## 2. Communication per rank and step (rank 0, bytes sent)")
print()
print("| N | stage | precision | reduce B/step | (N-1)/N Psi x b | ratio | gather B/step | (N-1)/N Psi x b | ratio | sent per kind (calls/step, B/step) |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
mismatch = []
for (n, stage, prec), r in runs.items():
    if r is None:
        print(f"| {n} | {stage} | {prec} | failed | | | | | | |")
        continue
    s, steps = r
    z, psi = s["zero"], s["model_state"]["parameters"]
    gb = 2 if prec == "mixed" else 4          # gradient dtype bytes
    pb = 2 if prec == "mixed" else 4          # working parameter dtype bytes
    red_t = (n - 1) / n * psi * gb
    gat_t = (n - 1) / n * psi * (gb if stage == 0 else pb)
    red, gat = z["reduce_bytes"] / steps, z["gather_bytes"] / steps
    ratio = lambda m, t: f"{m / t:.4f}" if t else "n/a"
    kinds = "; ".join(f"{k} {v['calls'] / steps:g}, {v['bytes'] / steps:.0f}" for k, v in sorted(z["sent"].items()))
    if sum(v["bytes"] for v in z["sent"].values()) != z["reduce_bytes"] + z["gather_bytes"]:
        mismatch.append((n, stage, prec))
    print(f"| {n} | {stage} | {prec} | {red:.0f} | {red_t:.0f} | {ratio(red, red_t)} | {gat:.0f} | {gat_t:.0f} "
          f"| {ratio(gat, gat_t)} | {kinds} |")
print()
print("b = dtype bytes: gradients 2 (mixed) / 4 (fp32) for the reduction; the gather moves "
      "gradients in stage 0 (reduce-scatter + all-gather = all-reduce) and the working "
      "parameters in stages 1 and 2 (2 mixed / 4 fp32). Steps = the per-step JSON objects "
      "(warm-up included, as reduce_bytes/gather_bytes cover the whole run). Theory uses Psi, "
      "not Psi_padded, so ratios slightly above 1 are the padding.")
if mismatch:
    print(f"\n**sum of \"sent\" bytes != reduce_bytes + gather_bytes for {mismatch}**")
print()

print("## 3. Step time (mixed precision)")
print()
over = [n for n in ranks if n > cores]
if over:
    print(f"This machine has {cores} cores: N = {', '.join(map(str, over))} ranks oversubscribe them, "
          "so those step times measure contention, not scaling.")
    print()
print("| N | stage | steady median ms/step | median ms/step (all steps) | vs N=1 same stage | final loss |")
print("|---|---|---:|---:|---:|---:|")
for n in ranks:
    for stage in (0, 1, 2):
        r = runs[(n, stage, "mixed")]
        if r is None:
            print(f"| {n} | {stage} | failed | | | |")
            continue
        s = r[0]
        base = runs.get((ranks[0], stage, "mixed"))
        rel = f"{s['steady_ms_median'] / base[0]['steady_ms_median']:.2f}x" if base else "n/a"
        print(f"| {n} | {stage} | {s['steady_ms_median']:.1f} | {s['ms_per_step_median']:.1f} | {rel} "
              f"| {s['final_loss']:.6f} |")
print()
print("Same runs as table 1. Each rank trains on its own --batch, so N ranks process N x the "
      "tokens of one step at N = 1.")
EOF
echo
echo "Whole script: $(($(date +%s) - start)) s."
