#!/usr/bin/env bash
# model_state_figures.sh: the model-state figures of README's Performance section, from `ebb
# train --json` on the cpu device:
#   1. device bytes of model state per parameter (the allocator's bytes by tensor kind) against
#      the formula, for fp32 AdamW, bf16 AdamW with 16-bit and with fp32 gradients, bf16
#      Adafactor and bf16 SM3;
#   2. the three optimizers' loss over STEPS steps in bf16 with one schedule, each at its own
#      default learning rate (engine/optim/optimizer.h), written as OUT/loss_curves.svg with the
#      final losses against AdamW's;
#   3. the median step time of bf16 against fp32, and the share of each step's op time spent in
#      standalone cast ops and in the gradient accumulation that rounds fp32 weight gradients
#      into the gradient buffers (from the warm-up profile's measured op durations); the kernels'
#      own widening of 16-bit operands is fused into them and shows only in the step time.
#
#   tools/model_state_figures.sh EBB_BINARY OUT_DIR [STEPS]
#   e.g. tools/model_state_figures.sh build/bin/ebb /tmp/ms 200
set -euo pipefail

if (($# < 2)); then
  sed -n '2,16p' "$0"
  exit 2
fi
readonly EBB=$1 OUT=$2 STEPS=${3:-200}
readonly HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"

# The model of the figures: `ebb train`'s defaults but wider, so that alignment padding is small
# against the parameters.
readonly MODEL=(--layers 4 --d-model 128 --heads 4 --seq 64 --batch 8 --vocab 512)

summary() {  # the last line of a --json run
  tail -n 1 "$1"
}

echo "== model state on the device, bytes per parameter (1 step; ${MODEL[*]})"
printf '%-28s %12s %10s %10s\n' configuration parameters measured formula
for config in "fp32 adamw" "bf16 adamw" "bf16 adamw fp32" "bf16 adafactor" "bf16 sm3"; do
  read -r precision optimizer grad <<<"$config"
  args=(--precision "$precision" --optimizer "$optimizer")
  if [[ -n ${grad:-} ]]; then args+=(--grad-dtype "$grad"); fi
  "$EBB" train "${MODEL[@]}" --steps 1 --json "${args[@]}" >"$OUT/state.json"
  label="$precision $optimizer, grad ${grad:-$precision}"
  python3 - "$OUT/state.json" "$label" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])["model_state"]
print(f"{sys.argv[2]:<28} {s['parameters']:>12} {s['bytes_per_parameter']:>10.3f} "
      f"{s['formula_bytes_per_parameter']:>10.1f}")
EOF
done

echo
echo "== loss over $STEPS steps, bf16, warm-up 10% then cosine to 0, default learning rates"
warmup=$((STEPS / 10))
for optimizer in adamw adafactor sm3; do
  "$EBB" train "${MODEL[@]}" --steps "$STEPS" --precision bf16 --optimizer "$optimizer" \
    --lr-warmup "$warmup" --lr-min 0 --json >"$OUT/curve_$optimizer.json"
done
python3 "$HERE/plot_loss_curves.py" "$OUT/loss_curves.svg" \
  adamw="$OUT/curve_adamw.json" adafactor="$OUT/curve_adafactor.json" sm3="$OUT/curve_sm3.json"

echo
echo "== step time, bf16 against fp32 (median of $((STEPS < 30 ? STEPS : 30)) steps, the cast ops' share from the profile)"
n=$((STEPS < 30 ? STEPS : 30))
for precision in fp32 bf16; do
  "$EBB" train "${MODEL[@]}" --steps "$n" --precision "$precision" --json \
    --profile-out "$OUT/profile_$precision.json" >"$OUT/time_$precision.json"
done
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
ms = {p: json.loads(open(f"{out}/time_{p}.json").read().splitlines()[-1])["ms_per_step_median"]
      for p in ("fp32", "bf16")}
def shares(precision):
    prof = json.load(open(f"{out}/profile_{precision}.json"))
    total = sum(op["duration_ns"] for op in prof["ops"])
    cast = sum(op["duration_ns"] for op in prof["ops"] if "cast" in op["name"])
    acc = sum(op["duration_ns"] for op in prof["ops"] if op["name"].startswith("grad_accumulate"))
    return 100 * cast / total, 100 * acc / total
print(f"fp32 {ms['fp32']:.2f} ms/step, bf16 {ms['bf16']:.2f} ms/step: bf16/fp32 = "
      f"{ms['bf16'] / ms['fp32']:.3f}")
for p in ("fp32", "bf16"):
    cast, acc = shares(p)
    print(f"{p}: cast ops {cast:.1f}% of the step's op time; gradient accumulation (fp32 weight "
          f"gradients rounded into the {p} buffers) {acc:.1f}%")
EOF
