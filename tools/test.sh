#!/usr/bin/env bash
# The test command of ebb, run by CI (.ci/run) and by hand:
#   1. format   tools/check_format.sh: every source as .clang-format says
#   2. layers   tools/check_layers.sh: no lower layer includes a higher one
#   3. build    build/ (Release; the CUDA backend too when nvcc is found), its ctest, and
#               tools/check_install.sh: build/ installed, examples/consumer built against it
#   4. tidy     tools/tidy.sh: clang-tidy over the library and tool sources, with build/'s flags
#   5. asan     build-asan/ (Debug, ASan + UBSan, no CUDA, no benchmarks, unity), its ctest, and
#               tools/check_install.sh --components-only: ebb::cuda refused where not built
#   6. tsan     build-tsan/ (RelWithDebInfo, ThreadSanitizer, no CUDA, no benchmarks, unity) and
#               its ctest
#               (the threaded layers: not the command line, nor the planner on the sim device)
#   7. fuzz     build-fuzz/ (Clang, libFuzzer + ASan + UBSan, the fuzz targets only: the parsers'
#               own sources) and each target for 20 s, JOBS at a time, over a temporary copy of
#               its corpus (tests/fuzz/); a crash, a leak, a sanitizer report or a timeout fails
#               the stage
# Stops at the first failing stage, exits non-zero, and says which stage failed.
#   tools/test.sh               every stage
#   tools/test.sh build asan    only the named stages
# JOBS sets the build and test parallelism (default 2: the reference machine has 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs=${JOBS:-2}
all_stages=(format layers build tidy asan tsan fuzz)
stages=("$@")
((${#stages[@]})) || stages=("${all_stages[@]}")
for s in "${stages[@]}"; do
  [[ " ${all_stages[*]} " == *" $s "* ]] || {
    echo "test.sh: unknown stage '$s' (stages: ${all_stages[*]})" >&2
    exit 2
  }
done

total_start=$SECONDS
stage=""
stage_start=$SECONDS
timings=()

banner() {
  echo
  echo "================================================================================"
  echo "== $*"
  echo "================================================================================"
}
begin() {
  stage=$1
  stage_start=$SECONDS
  banner "$1: $2"
}
end() {
  local took=$((SECONDS - stage_start))
  timings+=("$(printf '%-8s %4d s' "$stage" "$took")")
  echo "-- $stage passed in ${took} s"
  stage=""
}
on_exit() {
  local rc=$?
  if ((rc != 0)) && [[ -n "$stage" ]]; then
    banner "FAILED: stage '$stage' after $((SECONDS - stage_start)) s (total $((SECONDS - total_start)) s)"
  fi
}
trap on_exit EXIT

run_format() {
  begin format "clang-format check"
  tools/check_format.sh
  end
}

run_layers() {
  begin layers "layer include check"
  tools/check_layers.sh
  end
}

run_build() {
  begin build "Release build (EBB_CUDA=AUTO) and tests, in build/"
  # One CUDA architecture is enough to prove the backend compiles (tools/gpu_check.sh builds
  # sm_90 for the device it runs on); the default build makes sm_90 and sm_80 code.
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DEBB_CUDA=AUTO \
    -DCMAKE_CUDA_ARCHITECTURES="${EBB_TEST_CUDA_ARCHS:-90}"
  cmake --build build -j"$jobs"
  ctest --test-dir build --output-on-failure -j"$jobs"
  JOBS="$jobs" tools/check_install.sh build
  end
}

run_tidy() {
  begin tidy "clang-tidy over the library and tool sources"
  [[ -f build/compile_commands.json ]] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  JOBS="$jobs" tools/tidy.sh
  end
}

# Searches too slow under ASan's Debug build to earn their place there (see run_asan).
asan_skipped='PlanQuality.GeneratedTrainingProfilesAgainstBruteForceAndDtr|EbbPlanConfig.SearchFindsTheFastestOfEveryConfiguration|EbbPlanConfig.SearchRanksTheFittingByTokensPerSecond'

run_asan() {
  begin asan "Debug build with ASan + UBSan and tests (no gpu label), in build-asan/"
  # Line tables only (-g1): the sanitizers' reports name file and line, and full debug
  # information for every template instance is a third of this build's compile time. A unity
  # build (each target's sources compiled together, in batches) parses gtest and ebb's headers
  # once per batch rather than once per file, which is most of the sanitizer stages' compile
  # time; the sources are written so that no two files of a target define the same internal name.
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEBB_SANITIZE=ON -DEBB_CUDA=OFF \
    -DEBB_BUILD_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DCMAKE_UNITY_BUILD=ON
  cmake --build build-asan -j"$jobs"
  # Not the mpi label (here nor in tsan): Open MPI is not built with the sanitizers, which
  # report its own allocations and threads, and those suites have not been made to pass
  # cleanly under them; they run in the build stage.
  # Nor the three searches that are arithmetic over generated cases, no memory of their own
  # beyond vectors (386 s, 89 s and 53 s in this Debug build against 9 s, 5 s and 1 s in
  # Release): they run in the build stage, and their code paths are covered here by the
  # planner's and the configuration planner's other tests.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE 'gpu|mpi' -E "$asan_skipped"
  # This build has no CUDA backend: a consumer asking for ebb::cuda is refused at configure time.
  JOBS="$jobs" tools/check_install.sh --components-only build-asan
  end
}

run_tsan() {
  begin tsan "RelWithDebInfo build with ThreadSanitizer and tests (no gpu label), in build-tsan/"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEBB_TSAN=ON \
    -DEBB_CUDA=OFF -DEBB_BUILD_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
    -DCMAKE_UNITY_BUILD=ON
  cmake --build build-tsan -j"$jobs"
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    ctest --test-dir build-tsan --output-on-failure -j"$jobs" -LE 'gpu|mpi'
  end
}

# Seconds each fuzz target runs in the fuzz stage.
fuzz_seconds=${EBB_FUZZ_SECONDS:-20}

run_fuzz() {
  begin fuzz "libFuzzer targets of the parsers, ${fuzz_seconds} s each, in build-fuzz/"
  # -O2 and line tables, without -DNDEBUG: ebb's assertions stay on, since a broken invariant
  # is what a fuzzer is for. Unity, as the sanitizer stages; no tests, benchmarks nor CUDA,
  # and only the fuzz_* targets are built: they compile the parsers' own sources
  # (tests/fuzz/CMakeLists.txt), not the engine.
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1" -DEBB_FUZZ=ON -DEBB_CUDA=OFF \
    -DEBB_BUILD_TESTS=OFF -DEBB_BUILD_BENCHMARKS=OFF -DCMAKE_UNITY_BUILD=ON
  local targets=()
  for dir in tests/fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
  cmake --build build-fuzz -j"$jobs" --target "${targets[@]/#/fuzz_}"
  local work t i
  work=$(mktemp -d)
  # $jobs targets at a time, each on one core; a batch's failures are reported once it ends.
  for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    local batch=("${targets[@]:i:jobs}") pids=()
    for t in "${batch[@]}"; do
      # The fuzzer adds the inputs it finds to its corpus folder: a copy, never the repository's.
      mkdir -p "$work/$t/corpus" "$work/$t/crash"
      cp tests/fuzz/corpus/"$t"/* "$work/$t/corpus/"
      echo "-- fuzz_$t: ${fuzz_seconds} s over $(ls "$work/$t/corpus" | wc -l) corpus files"
      build-fuzz/fuzz/fuzz_"$t" -max_total_time="$fuzz_seconds" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$work/$t/crash/" "$work/$t/corpus" \
        >"$work/$t/log" 2>&1 &
      pids+=($!)
    done
    local failed=()
    for ((j = 0; j < ${#batch[@]}; ++j)); do
      t=${batch[j]}
      if ! wait "${pids[j]}"; then
        failed+=("$t")
        continue
      fi
      echo "-- fuzz_$t: $(grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' \
        "$work/$t/log" | tr -s ' ' | tr '\n' ' ')"
    done
    for t in "${failed[@]}"; do
      tail -n 60 "$work/$t/log"
      echo "fuzz: fuzz_$t failed; its input is in $work/$t/crash/ (add it to" \
        "tests/fuzz/corpus/$t/ as regress-<cause> once the parser is fixed)" >&2
    done
    ((${#failed[@]} == 0)) || exit 1
  done
  rm -rf "$work"
  end
}

for s in "${stages[@]}"; do "run_$s"; done

banner "all stages passed in $((SECONDS - total_start)) s"
printf '   %s\n' "${timings[@]}"
