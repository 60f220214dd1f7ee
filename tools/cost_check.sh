#!/usr/bin/env bash
# cost_check.sh: the cost model (engine/planner/cost_model.h) against measurement on the cpu
# device, per kernel class. `ebb bench chip` measures this machine's cpu device as a chip (fp32
# throughput, memory bandwidth); the same model then runs one profiled step on the cpu device
# (measured op times) and on a sim device of that chip (each op's time is the roofline of its
# FLOPs and bytes, tools/train/op_work.h); the two profiles are paired op by op. Printed per
# class: the ops, their measured and predicted time in the step, and the error of the sum
# (predicted / measured - 1), and the median of the per-op errors. Then the optimizer's CPU step
# with the state on the host (ZeRO-Offload): measured on the cpu device against the cost model's
# host_step_time on the measured chip.
#
#   tools/cost_check.sh EBB_BINARY OUT_DIR [ebb train model options...]
#   e.g. tools/cost_check.sh build/bin/ebb /tmp/cost --layers 2 --d-model 256 --heads 4 \
#          --seq 128 --batch 8 --vocab 1024
set -euo pipefail

if (($# < 2)); then
  sed -n '2,12p' "$0"
  exit 2
fi
readonly EBB=$1 OUT=$2
shift 2
MODEL=("$@")
((${#MODEL[@]})) || MODEL=(--layers 2 --d-model 256 --heads 4 --seq 128 --batch 8 --vocab 1024)
mkdir -p "$OUT"

"$EBB" bench chip --out "$OUT/cpu-chip.json"
"$EBB" train "${MODEL[@]}" --device cpu --steps 3 --profile-out "$OUT/cpu-profile.json" \
  --json >"$OUT/cpu-train.json"
"$EBB" train "${MODEL[@]}" --device sim --hw "$OUT/cpu-chip.json" --steps 3 \
  --profile-out "$OUT/sim-profile.json" --json >"$OUT/sim-train.json"
"$EBB" train "${MODEL[@]}" --device cpu --steps 3 --optimizer-state host --host-tier 2GiB \
  --json >"$OUT/cpu-host-state.json"
"$EBB" train "${MODEL[@]}" --device sim --hw "$OUT/cpu-chip.json" --steps 3 \
  --optimizer-state host --host-tier 2GiB --json >"$OUT/sim-host-state.json"

python3 - "$OUT" <<'PY'
import json, statistics, sys

out = sys.argv[1]
chip = json.load(open(f"{out}/cpu-chip.json"))["chip"]
measured = json.load(open(f"{out}/cpu-profile.json"))["ops"]
predicted = json.load(open(f"{out}/sim-profile.json"))["ops"]
if [o["name"] for o in measured] != [o["name"] for o in predicted]:
    sys.exit("cost_check: the cpu and sim steps ran different ops")

# The class op_work.h gives each of the reference model's ops.
GEMMS = ("qkv", "attproj", "fc", "fcproj", "logits")
REDUCTIONS = ("ln1", "ln2", "lnf", "cross_entropy", "loss")
def kernel_class(name):
    base = name.split(".")[-1] if not name.startswith(("grad_accumulate.", "optimizer.")) else name
    base = base.removesuffix("_backward")
    if base in GEMMS:
        return "gemm"
    if base == "attention":
        return "attention"
    if base in REDUCTIONS and not (base == "cross_entropy" and name.endswith("_backward")):
        return "reduction"
    return "elementwise"

classes = {}
for m, p in zip(measured, predicted):
    c = classes.setdefault(kernel_class(m["name"]), {"ops": 0, "measured": 0, "predicted": 0,
                                                      "errors": []})
    c["ops"] += 1
    c["measured"] += m["duration_ns"]
    c["predicted"] += p["duration_ns"]
    if m["duration_ns"] > 0:
        c["errors"].append(p["duration_ns"] / m["duration_ns"] - 1)

print(f"cpu device as a chip: fp32 {chip['fp32_flops_per_s'] / 1e9:.1f} GFLOP/s, memory "
      f"{chip['memory_bytes_per_s'] / 1e9:.1f} GB/s (ebb bench chip)")
print(f"{'class':<12} {'ops':>4} {'measured ms':>12} {'predicted ms':>13} {'error':>8} "
      f"{'median op error':>16}")
total_m = total_p = 0
for name in ("gemm", "attention", "elementwise", "reduction"):
    c = classes.get(name)
    if c is None:
        continue
    total_m += c["measured"]
    total_p += c["predicted"]
    print(f"{name:<12} {c['ops']:>4} {c['measured'] / 1e6:>12.3f} {c['predicted'] / 1e6:>13.3f} "
          f"{c['predicted'] / c['measured'] - 1:>+8.1%} {statistics.median(c['errors']):>+16.1%}")
print(f"{'step':<12} {len(measured):>4} {total_m / 1e6:>12.3f} {total_p / 1e6:>13.3f} "
      f"{total_p / total_m - 1:>+8.1%}")

def offload(path):
    summary = [json.loads(l) for l in open(path) if l.strip()][-1]
    f = summary["optimizer_state"]["offload"]
    return f["cpu_step_s"] / f["cpu_steps"]
m, p = offload(f"{out}/cpu-host-state.json"), offload(f"{out}/sim-host-state.json")
print(f"{'cpu step':<12} {'':>4} {m * 1e3:>12.3f} {p * 1e3:>13.3f} {p / m - 1:>+8.1%}"
      f"   (optimizer state on the host, mean of 3 steps)")
PY
