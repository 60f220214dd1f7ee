#!/usr/bin/env bash
# offload_figures.sh: the optimizer-state placement figures of README's Performance section
# (--optimizer-state device|host|nvme|auto), on the cpu device:
#   1. the CPU optimizer step (AdamW, Adafactor, SM3) in bytes of state per second against a
#      STREAM triad over the same buffers, per SIMD level (bench/optim_cpu_benchmark);
#   2. model-state bytes on the device per placement, and with auto at three budgets, against
#      the formula (bf16 AdamW);
#   3. the step time of host and NVMe placement against device placement with a modelled link
#      (LINK_GBPS), the NVMe step against its streaming bound (state bytes over the read and the
#      write bandwidth `ebb iobench` measures in the same directory), and the share of the CPU
#      step the delayed update hides;
#   4. the largest model that trains under a 512 MiB device budget with the state on the device,
#      the host and NVMe (bf16 AdamW, dynamic eviction), with its steps per second and the
#      bitwise check against an unconstrained device-placement run of the same model.
#
#   tools/offload_figures.sh BUILD_DIR OUT_DIR NVME_DIR [LINK_GBPS]
#   e.g. tools/offload_figures.sh build /tmp/off /var/tmp/ebb-nvme 16
# SECTIONS picks some (default 1234: all), e.g. SECTIONS=34; PLACEMENTS the placements of 4
# (default "device host nvme").
set -euo pipefail

if (($# < 3)); then
  sed -n '2,21p' "$0"
  exit 2
fi
readonly BUILD=$1 OUT=$2 NVME=$3 LINK=${4:-16}
readonly EBB=$BUILD/bin/ebb
readonly SECTIONS=${SECTIONS:-1234}
mkdir -p "$OUT" "$NVME"
section() { [[ $SECTIONS == *$1* ]]; }


readonly MODEL=(--layers 4 --d-model 128 --heads 4 --seq 64 --batch 8 --vocab 512 --precision bf16)
readonly NVME_ARGS=(--nvme-dir "$NVME" --nvme-size 2GiB)

if section 1; then
echo "== 1. CPU optimizer step against a STREAM triad (median of 5 repetitions)"
for level in scalar avx2 avx512; do
  EBB_CPU_SIMD=$level "$BUILD/bench/optim_cpu_benchmark" --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_format=json >"$OUT/optim_$level.json"
  python3 - "$OUT/optim_$level.json" "$level" <<'EOF'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median" or "Triad" in b["run_name"]:
        continue
    print(f"{sys.argv[2]:<7} {b['run_name']:<22} {b['bytes_per_second'] / 1e9:6.2f} GB/s of state, "
          f"triad {b['triad_bytes_per_second'] / 1e9:6.2f} GB/s, ratio {b['vs_triad']:.2f}")
EOF
done

fi
if section 2; then
echo
echo "== 2. model state on the device (bf16 AdamW, ${MODEL[*]})"
printf '%-22s %14s %12s %10s %s\n' placement device_bytes per_param formula slices
row() {  # label file
  python3 - "$2" "$1" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
m = s["model_state"]
total = m["parameter_bytes"] + m["gradient_bytes"] + m["optimizer_state_bytes"]
p = s["optimizer_state"]["placement"]
print(f"{sys.argv[2]:<22} {total:>14} {m['bytes_per_parameter']:>12.3f} "
      f"{m['formula_bytes_per_parameter']:>10.1f} "
      f"device {p.count('device')}, host {p.count('host')}, nvme {p.count('nvme')}")
EOF
}
for placement in device host nvme; do
  extra=()
  [[ $placement == nvme ]] && extra=("${NVME_ARGS[@]}")
  "$EBB" train "${MODEL[@]}" --steps 3 --json --optimizer-state "$placement" "${extra[@]}" \
    >"$OUT/bytes_$placement.json"
  row "$placement" "$OUT/bytes_$placement.json"
done
for budget in 90% 70% 50%; do
  "$EBB" train "${MODEL[@]}" --steps 3 --json --optimizer-state auto --budget "$budget" \
    --policy dynamic >"$OUT/bytes_auto_${budget%\%}.json"
  row "auto, budget $budget" "$OUT/bytes_auto_${budget%\%}.json"
done
fi
if section 3; then
echo
echo "== 3. step time with a ${LINK} GB/s link (median of 20 steps after 2 warm-up)"
"$EBB" iobench --dir "$NVME" --size 512MiB --json >"$OUT/iobench.json"
for run in device host nvme host-delayed nvme-delayed; do
  placement=${run%-delayed}
  extra=()
  [[ $placement == nvme ]] && extra=("${NVME_ARGS[@]}")
  [[ $run == *-delayed ]] && extra+=(--delayed-update)
  "$EBB" train "${MODEL[@]}" --steps 22 --json --link-gbps "$LINK" \
    --optimizer-state "$placement" "${extra[@]}" >"$OUT/time_$run.json"
done
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
def last(name):
    return json.loads(open(f"{out}/time_{name}.json").read().splitlines()[-1])
io = json.load(open(f"{out}/iobench.json"))
base = last("device")["steady_ms_median"]
print(f"device placement: {base:.2f} ms/step")
for name in ("host", "nvme", "host-delayed", "nvme-delayed"):
    s = last(name)
    ms = s["steady_ms_median"]
    f = s["optimizer_state"]["offload"]
    line = (f"{name:<13} {ms:8.2f} ms/step, x{ms / base:.3f} of device; CPU step "
            f"{1e3 * f['cpu_step_s'] / f['cpu_steps']:.2f} ms")
    if name.startswith("nvme"):
        state = f["nvme_bytes"]
        bound = state / (io["read_gbps"] * 1e9) + state / (io["write_gbps"] * 1e9)
        line += (f"; streaming bound {1e3 * bound:.2f} ms ({state} B at read "
                 f"{io['read_gbps']:.2f}, write {io['write_gbps']:.2f} GB/s): measured/bound "
                 f"{f['cpu_step_s'] / f['cpu_steps'] / bound:.2f}")
    if name.endswith("delayed"):
        line += f"; hidden {100 * f['hidden_share']:.0f}% of the CPU step"
    print(line)
EOF
fi
if section 4; then
echo
echo "== 4. the largest model under a 512 MiB device budget (bf16 AdamW, dynamic eviction)"
# Width grows with the depth fixed; the largest width whose 3 steps train is reported, with the
# bitwise check against the same placement unconstrained (tests/tools/train_offload_test.cc
# checks every placement against the device placement), which must fit the cpu device's 4 GiB.
readonly BIG=(--layers 4 --heads 8 --seq 64 --batch 2 --vocab 4096 --precision bf16)
for placement in ${PLACEMENTS:-device host nvme}; do
  extra=(--host-tier 16GiB)
  [[ $placement == nvme ]] && extra+=(--nvme-dir "$NVME" --nvme-size 24GiB)
  best=0
  for d in 512 1024 1536 2048 3072; do
    if "$EBB" train "${BIG[@]}" --d-model "$d" --steps 3 --json --budget 512MiB \
      --policy dynamic --optimizer-state "$placement" "${extra[@]}" \
      >"$OUT/big_${placement}_$d.json" 2>"$OUT/big_${placement}_$d.err"; then
      best=$d
    else
      echo "$placement d_model $d: $(tail -n 1 "$OUT/big_${placement}_$d.err")"
      break
    fi
  done
  if ((best == 0)); then
    echo "$placement: no width trains"
    continue
  fi
  ref=$OUT/big_ref_${placement}_$best.json
  if ! "$EBB" train "${BIG[@]}" --d-model "$best" --steps 3 --json \
    --optimizer-state "$placement" "${extra[@]}" >"$ref" 2>"$ref.err"; then
    echo "{}" >"$ref"
  fi
  python3 - "$OUT/big_${placement}_$best.json" "$ref" "$placement" "$best" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
r = json.loads(open(sys.argv[2]).read().splitlines()[-1])
same = (s["parameters_fnv1a"] == r["parameters_fnv1a"]) if r else "reference did not fit"
print(f"{sys.argv[3]:<7} d_model {sys.argv[4]:>5}: {s['model_state']['parameters']:>11} parameters, "
      f"{1000 / s['ms_per_step_median']:.4f} steps/s, peak reserved "
      f"{s['peak_reserved_bytes'] / 2**20:.0f} MiB, bitwise equal to the unconstrained run: {same}")
EOF
done
fi
