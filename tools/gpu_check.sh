#!/usr/bin/env bash
# gpu_check.sh: builds ebb's GPU binaries into a self-contained bundle here, and runs them
# unattended on a machine with one GPU (an H100 or H200, sm_90) that has the NVIDIA driver but
# no network and nothing installable.
#
#   tools/gpu_check.sh build   here: configure build-gpu/ (EBB_CUDA=ON, sm_90, Release, binaries
#                              that look beside themselves for libraries), build the gpu tests,
#                              the allocator benchmark and the ebb CLI, and copy them with every
#                              shared library they need, the bundled workloads and this script
#                              into gpu_bundle/ (git-ignored; must stay under 60 MiB).
#   tools/gpu_check.sh run     there, from the repository root with gpu_bundle/ present: runs
#                              each step under a timeout (8 minutes in all) and prints a summary
#                              table last. Also works as gpu_bundle/gpu_check.sh run.
#   tools/gpu_check.sh         both, for a machine that can build and has a GPU.
#
# Exit status of `run`: 0 when every step passed on a GPU; 1 when a test failed, a step failed or
# timed out, or tests skipped although a GPU is visible; 2 when no GPU is visible (every gpu test
# skipped, so nothing was verified).
#
# Environment: EBB_GPU_BUNDLE (bundle folder, default <repo>/gpu_bundle), EBB_GPU_BUILD (build
# folder, default <repo>/build-gpu), EBB_GPU_LOG_DIR (where the run writes gpu_check.log,
# gpu_check_summary.txt and allocator_benchmark.json; default <bundle>/logs).
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# tools/ or gpu_bundle/: either way the repository root is one folder up.
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO
# Run from inside a bundle (gpu_bundle/gpu_check.sh) or from the repository (tools/gpu_check.sh).
if [[ -f "$SCRIPT_DIR/MANIFEST" ]]; then
  readonly DEFAULT_BUNDLE="$SCRIPT_DIR"
else
  readonly DEFAULT_BUNDLE="$REPO/gpu_bundle"
fi
readonly BUNDLE="${EBB_GPU_BUNDLE:-$DEFAULT_BUNDLE}"
readonly BUILD="${EBB_GPU_BUILD:-$REPO/build-gpu}"
readonly BUNDLE_LIMIT_MIB=60
readonly TEST_BINARIES=(kernels_cuda_test allocator_cuda_test kernels_nn_cuda_test
  kernels_optim_cuda_test train_cuda_test offload_cuda_test comm_nccl_test)
readonly TOTAL_RUN_S=470  # the run half's budget: under 8 minutes

die() {
  echo "gpu_check: ERROR: $*" >&2
  exit 1
}

# --- build --------------------------------------------------------------------------------

# Libraries that come from the machine the bundle runs on: glibc's (tied to its kernel and
# loader), the compiler runtime (libstdc++, libgcc_s: any distribution with the glibc 2.34 the
# binaries need has a new enough one, while this machine's copies would demand glibc 2.36) and
# the NVIDIA driver's (tied to its kernel module; libcuda.so.1 must never be bundled). Everything
# else is bundled, the distribution's TBB, Google Benchmark and liburing included, even from
# /usr/lib: the GPU machine runs another distribution and cannot install them.
is_host_library() {
  case "$1" in
    linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libmvec.so.* | libpthread.so.* | \
      libdl.so.* | librt.so.* | libresolv.so.* | libutil.so.* | libanl.so.*) return 0 ;;
    libstdc++.so.* | libgcc_s.so.*) return 0 ;;
    libcuda.so* | libnvidia-*.so* | libnvcuvid.so* | libcudadebugger.so*) return 0 ;;
  esac
  return 1
}

# Copies the non-host shared libraries `binary` needs into the bundle.
bundle_libraries() {
  local binary=$1 line name path
  while IFS= read -r line; do
    [[ "$line" == *"=>"* ]] || continue
    name=$(awk '{print $1}' <<<"$line")
    path=$(awk '{print $3}' <<<"$line")
    is_host_library "$name" && continue
    [[ "$path" == "not" ]] && die "$(basename "$binary") needs $name, which ldd cannot find"
    [[ -f "$BUNDLE/$name" ]] || cp -L "$path" "$BUNDLE/$name"
  done < <(ldd "$binary")
}

build() {
  command -v cmake >/dev/null || die "cmake is not on PATH"
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  echo "gpu_check: configuring $BUILD"
  # '$ORIGIN' reaches CMake unexpanded: the binaries look for libraries beside themselves first.
  # shellcheck disable=SC2016
  cmake -S "$REPO" -B "$BUILD" "${generator[@]}" -DEBB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_BUILD_TYPE=Release '-DCMAKE_BUILD_RPATH=$ORIGIN' -DEBB_BUILD_TESTS=ON \
    -DEBB_BUILD_BENCHMARKS=ON || die "cmake configure failed"
  local jobs
  jobs=$(nproc 2>/dev/null || echo 2)
  echo "gpu_check: building ${TEST_BINARIES[*]} (required)"
  cmake --build "$BUILD" -j"$jobs" --target "${TEST_BINARIES[@]}" ||
    die "the gpu test binaries did not build"
  # The benchmark and the CLI are useful, not essential: a GPU run without them still tests.
  local optional=() target
  for target in allocator_benchmark ebb; do
    echo "gpu_check: building $target (optional)"
    if cmake --build "$BUILD" -j"$jobs" --target "$target"; then
      optional+=("$target")
    else
      echo "gpu_check: WARNING: $target did not build; the bundle goes without it" >&2
    fi
  done

  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE"
  local binaries=() binary
  for binary in "${TEST_BINARIES[@]}"; do binaries+=("$BUILD/tests/$binary"); done
  for target in "${optional[@]}"; do
    case "$target" in
      allocator_benchmark) binaries+=("$BUILD/bench/allocator_benchmark") ;;
      ebb) binaries+=("$BUILD/bin/ebb") ;;
    esac
  done
  for binary in "${binaries[@]}"; do
    [[ -x "$binary" ]] || die "$binary was built but is not there"
    if readelf -d "$binary" | grep -q 'NEEDED.*libcuda\.so'; then
      die "$(basename "$binary") links libcuda.so directly: it could not start without a driver"
    fi
    cp "$binary" "$BUNDLE/"
    bundle_libraries "$binary"
  done
  if compgen -G "$REPO/profiles/workloads/*" >/dev/null; then
    mkdir -p "$BUNDLE/workloads"
    cp "$REPO"/profiles/workloads/* "$BUNDLE/workloads/"
  fi
  cp "$SCRIPT_DIR/gpu_check.sh" "$SCRIPT_DIR/train_figures.sh" "$BUNDLE/"
  {
    echo "ebb gpu bundle"
    echo "built:   $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
    echo "commit:  $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)" \
      "($(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) files changed or untracked)"
    echo "cuda:    $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo unknown)"
    echo "files:"
    (cd "$BUNDLE" && find . -type f ! -name MANIFEST -printf '  %P %s\n' | sort)
  } >"$BUNDLE/MANIFEST"

  local bundle_bytes
  bundle_bytes=$(du -sb "$BUNDLE" | awk '{print $1}')
  echo "gpu_check: bundle $BUNDLE is $((bundle_bytes / 1024 / 1024)) MiB" \
    "($bundle_bytes bytes, limit $BUNDLE_LIMIT_MIB MiB):"
  (cd "$BUNDLE" && ls -la)
  if ((bundle_bytes > BUNDLE_LIMIT_MIB * 1024 * 1024)); then
    die "the bundle is $((bundle_bytes / 1024 / 1024)) MiB, over the $BUNDLE_LIMIT_MIB MiB limit"
  fi
}

# --- run ----------------------------------------------------------------------------------

STEP_NAMES=()
STEP_STATUS=()
STEP_SECONDS=()
STEP_FIGURES=()
FAILED=0
GPU_VISIBLE=0
DEADLINE=0
LOG=""

record() {  # name status seconds figures
  STEP_NAMES+=("$1")
  STEP_STATUS+=("$2")
  STEP_SECONDS+=("$3")
  STEP_FIGURES+=("$4")
}

# Records a step run by run_timed: `figures` when it exited 0, else its last line of output.
record_step() {  # name figures
  local status
  status=$(rc_status "$STEP_RC")
  if [[ "$status" == ok ]]; then
    record "$1" ok $((SECONDS - STEP_START)) "$2"
  else
    FAILED=1
    record "$1" "$status" $((SECONDS - STEP_START)) "$(tail -n 1 "$STEP_OUTPUT" | cut -c 1-100)"
  fi
}

# Runs one step under `timeout`, echoing and logging its output. Sets STEP_RC and STEP_OUTPUT
# (a file holding the step's output) and prints nothing else.
run_timed() {  # name limit_s command...
  local name=$1 limit=$2
  shift 2
  local remaining=$((DEADLINE - SECONDS))
  ((limit > remaining)) && limit=$remaining
  STEP_OUTPUT=$(mktemp)
  STEP_START=$SECONDS
  if ((limit < 5)); then
    echo "gpu_check: [$name] not run: the ${TOTAL_RUN_S}s budget is spent" | tee -a "$LOG"
    STEP_RC=124
    return
  fi
  echo | tee -a "$LOG"
  echo "=== [$name] $* (timeout ${limit}s)" | tee -a "$LOG"
  timeout -k 10 "$limit" "$@" >"$STEP_OUTPUT" 2>&1
  STEP_RC=$?
  tee -a "$LOG" <"$STEP_OUTPUT"
  echo "=== [$name] exit $STEP_RC after $((SECONDS - STEP_START))s" | tee -a "$LOG"
}

rc_status() {  # rc
  case "$1" in
    0) echo ok ;;
    124 | 137) echo TIMEOUT ;;
    *) echo "FAIL($1)" ;;
  esac
}

# "[  PASSED  ] 12 tests." -> 12
gtest_count() {  # label file
  sed -n "s/^\[  $1 *\] \([0-9][0-9]*\) test.*/\1/p" "$2" | head -n 1
}

run_test_binary() {  # name
  local name=$1 binary="$BUNDLE/$1"
  if [[ ! -x "$binary" ]]; then
    record "$name" MISSING 0 "not in the bundle"
    FAILED=1
    return
  fi
  run_timed "$name" 150 "$binary" --gtest_brief=1
  local passed skipped failed status
  passed=$(gtest_count PASSED "$STEP_OUTPUT")
  skipped=$(gtest_count SKIPPED "$STEP_OUTPUT")
  failed=$(gtest_count FAILED "$STEP_OUTPUT")
  status=$(rc_status "$STEP_RC")
  [[ "$status" != ok ]] && FAILED=1
  if [[ "$status" == ok && -n "$skipped" && "$GPU_VISIBLE" == 1 ]]; then
    status=SKIPPED
    FAILED=1  # a GPU is there but the backend could not reach it
  fi
  [[ "$status" == ok && "$GPU_VISIBLE" == 0 ]] && status=no-gpu
  # A test may print "FIGURE: ..." lines (offload_cuda_test's bandwidths): they join the summary.
  local figures
  figures=$(sed -n 's/^FIGURE: //p' "$STEP_OUTPUT" | paste -sd ';' -)
  record "$name" "$status" $((SECONDS - STEP_START)) \
    "${passed:-0} passed, ${skipped:-0} skipped, ${failed:-0} failed${figures:+; $figures}"
}

run_benchmark() {
  local binary="$BUNDLE/allocator_benchmark"
  if [[ ! -x "$binary" ]]; then
    record allocator_benchmark absent 0 "not built"
    return
  fi
  # A plain number of seconds: Google Benchmark 1.7 rejects the "0.2s" form.
  run_timed allocator_benchmark 90 "$binary" --benchmark_min_time=0.2 \
    --benchmark_format=console --benchmark_out="$LOG_DIR/allocator_benchmark.json" \
    --benchmark_out_format=json
  local ran errors
  ran=$(grep -c '^BM_' "$STEP_OUTPUT")
  errors=$(grep -c '^BM_.*ERROR OCCURRED' "$STEP_OUTPUT")
  record_step allocator_benchmark "$((ran - errors)) ran, $errors reported an error"
  if ((GPU_VISIBLE && errors > 0)) && [[ "${STEP_STATUS[-1]}" == ok ]]; then
    STEP_STATUS[-1]=ERRORS  # with a GPU present, every benchmark should run
    FAILED=1
  fi
}

# The value of "key":value in a one-line JSON object.
json_field() {  # key file
  sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[-0-9.eE+]*\).*/\1/p" "$2" | tail -n 1
}

run_cli() {
  local ebb="$BUNDLE/ebb"
  if [[ ! -x "$ebb" ]]; then
    record "ebb" absent 0 "not built"
    return
  fi
  if ((GPU_VISIBLE == 0)); then
    record "ebb bench alloc, ebb replay" no-gpu 0 "--device cuda needs a GPU; not run"
    return
  fi
  local help
  help=$("$ebb" --help 2>&1)
  if grep -q '\bbench\b' <<<"$help" && "$ebb" bench --help 2>&1 | grep -q '\balloc\b'; then
    run_timed "bench alloc" 60 "$ebb" bench alloc --device cuda --json
    record_step "bench alloc" \
      "median $(json_field pair_ns_median "$STEP_OUTPUT") ns per alloc+free"
  else
    record "bench alloc" absent 0 "no such command in ebb --help"
  fi
  if ! grep -q '\breplay\b' <<<"$help"; then
    record "replay" absent 0 "no such command in ebb --help"
    return
  fi
  local workload mode label
  for workload in "$BUNDLE"/workloads/*; do
    [[ -f "$workload" ]] || continue
    [[ "$workload" == *.profile.json ]] && continue  # a profile, not an allocation trace
    for mode in expandable classic; do
      label="replay $(basename "$workload" | cut -d. -f1) $mode"
      local flags=(--device cuda --json)
      [[ "$mode" == classic ]] && flags+=(--classic)
      run_timed "$label" 45 "$ebb" replay "$workload" "${flags[@]}"
      local peak ratio
      peak=$(json_field peak_reserved_bytes "$STEP_OUTPUT")
      ratio=$(json_field reserved_over_live "$STEP_OUTPUT")
      record_step "$label" "peak reserved $peak B, reserved/live $ratio"
    done
  done
}

# The reference trainer on the GPU: tokens/s at a stated size, the time overhead of each policy
# at 70% and 40% of the unconstrained peak, and the demo's verdict.
run_train() {
  local ebb="$BUNDLE/ebb"
  [[ -x "$ebb" ]] || return
  ((GPU_VISIBLE)) || return
  "$ebb" --help 2>&1 | grep -q '\btrain\b' || return
  local model=(--layers 6 --d-model 512 --heads 8 --seq 256 --batch 16 --vocab 8192 --steps 8)
  run_timed "train figures cuda" 240 "$BUNDLE/train_figures.sh" "$ebb" cuda "${model[@]}"
  record_step "train figures cuda" "$(sed -n 's/^none .* \([0-9]*\) -$/\1 tok\/s unconstrained/p' \
"$STEP_OUTPUT"); table in the log"
  run_timed "demo cuda" 90 "$ebb" demo --device cuda --json
  record_step "demo cuda" "identical $(json_field identical "$STEP_OUTPUT"), \
overhead $(json_field overhead "$STEP_OUTPUT")"
  # The bench suite's trainer matrix on the GPU (--quick: the small model, 42 short runs), its
  # CSV, JSON and plots kept with the logs; every cell that ran must be bitwise identical.
  if "$ebb" bench --help 2>&1 | grep -q '\bsuite\b'; then
    run_timed "bench suite cuda" 120 "$ebb" bench suite --device cuda --quick \
      --out "$LOG_DIR/bench_suite_cuda"
    local csv="$LOG_DIR/bench_suite_cuda/results.csv" ran="?" differ="?"
    if [[ -f "$csv" ]]; then
      ran=$(awk -F, '$2 == "cuda" && $9 == "ok"' "$csv" | wc -l)
      differ=$(awk -F, '$2 == "cuda" && $9 == "ok" && $17 != "yes"' "$csv" | wc -l)
    fi
    record_step "bench suite cuda" "$ran trainer cells ran, $differ not bitwise identical"
    [[ "$differ" == 0 ]] || { STEP_STATUS[-1]=DIFFERS; FAILED=1; }
  else
    record "bench suite cuda" absent 0 "no ebb bench suite"
  fi
}

# cuBLAS is loaded at run time (libcublas.so.13): find a directory that holds it when the loader
# cannot, e.g. a Python wheel's (nvidia-cublas) on a machine without the CUDA toolkit.
find_cublas() {
  ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.13' && return
  local dir
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -f "$dir/libcublas.so.13" ]] && { export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$dir"; return; }
  done
  local found
  found=$(find / -xdev -name libcublas.so.13 -path '*nvidia*' 2>/dev/null | head -n 1)
  if [[ -n "$found" ]]; then
    echo "gpu_check: cuBLAS from $found" | tee -a "$LOG"
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$found")"
  else
    echo "gpu_check: WARNING: no libcublas.so.13 on this machine; matmuls will fail" | tee -a "$LOG"
  fi
}

print_summary() {
  local i
  {
    echo
    echo "=== gpu_check summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECONDS}s)"
    printf '%-34s %-10s %5s  %s\n' step status sec figures
    for i in "${!STEP_NAMES[@]}"; do
      printf '%-34s %-10s %5s  %s\n' "${STEP_NAMES[$i]}" "${STEP_STATUS[$i]}" \
        "${STEP_SECONDS[$i]}" "${STEP_FIGURES[$i]}"
    done
    if ((GPU_VISIBLE == 0)); then
      echo "RESULT: NO GPU VISIBLE: every gpu test skipped; nothing was verified on a GPU (exit 2)"
    elif ((FAILED)); then
      echo "RESULT: FAILED (exit 1): see the steps above that are not ok"
    else
      echo "RESULT: ok (exit 0)"
    fi
  } | tee -a "$LOG" | tee "$LOG_DIR/gpu_check_summary.txt"
}

run() {
  [[ -f "$BUNDLE/MANIFEST" ]] ||
    die "no bundle at $BUNDLE (no MANIFEST): run 'tools/gpu_check.sh build' first"
  LOG_DIR="${EBB_GPU_LOG_DIR:-$BUNDLE/logs}"
  mkdir -p "$LOG_DIR" || die "cannot create the log folder $LOG_DIR"
  LOG="$LOG_DIR/gpu_check.log"
  : >"$LOG"
  DEADLINE=$((SECONDS + TOTAL_RUN_S))
  export LD_LIBRARY_PATH="$BUNDLE${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  {
    cat "$BUNDLE/MANIFEST"
    echo "host:    $(uname -srm), $(nproc 2>/dev/null || echo '?') cpus"
  } | tee -a "$LOG"

  # Libraries the bundle lacks and the machine does not have: a clear line, not a loader error.
  local binary missing
  for binary in "$BUNDLE"/*; do
    [[ -x "$binary" && -f "$binary" && "$binary" != *.sh && "$binary" != *.so* ]] || continue
    missing=$(ldd "$binary" 2>&1 | grep 'not found' | grep -v 'libcuda\.so' || true)
    if [[ -n "$missing" ]]; then
      echo "gpu_check: $(basename "$binary") cannot find: $missing" | tee -a "$LOG"
    fi
  done

  if ! command -v nvidia-smi >/dev/null; then
    echo "gpu_check: NO GPU: nvidia-smi is not on PATH, so there is no NVIDIA driver here;" \
      "the gpu tests below will skip" | tee -a "$LOG"
    record nvidia-smi absent 0 "no NVIDIA driver on this machine"
  else
    run_timed nvidia-smi 20 nvidia-smi -L
    if [[ "$STEP_RC" == 0 ]] && grep -q '^GPU ' "$STEP_OUTPUT"; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 |
        tee -a "$LOG"
      GPU_VISIBLE=1
      record nvidia-smi ok $((SECONDS - STEP_START)) "$(grep -c '^GPU ' "$STEP_OUTPUT") GPU(s)"
    else
      echo "gpu_check: NO GPU: nvidia-smi -L failed or listed no GPU; the gpu tests will skip" |
        tee -a "$LOG"
      record nvidia-smi "FAIL($STEP_RC)" $((SECONDS - STEP_START)) "no GPU listed"
    fi
  fi

  find_cublas
  local name
  for name in "${TEST_BINARIES[@]}"; do run_test_binary "$name"; done
  run_benchmark
  run_cli
  run_train
  print_summary
  if ((FAILED)); then exit 1; fi
  if ((GPU_VISIBLE == 0)); then exit 2; fi
  exit 0
}

case "${1:-all}" in
  build) build ;;
  run) run ;;
  all)
    build
    run
    ;;
  -h | --help) sed -n '2,24p' "$0" ;;
  *) die "unknown mode '$1': build, run, or nothing for both" ;;
esac
