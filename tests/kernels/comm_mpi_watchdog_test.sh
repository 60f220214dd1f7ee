#!/usr/bin/env bash
# How an mpi job ends when a rank hangs or fails (comm_test's CommMpiWatchdog, two ranks):
#   hang   rank 1 skips an all_reduce: rank 0's watchdog fails it after 2 s, rank 0 checks the
#          error and aborts the job;
#   abort  rank 1 aborts while rank 0 waits in an all_reduce.
# Each must end the job within 30 s with a non-zero exit from mpirun, and its output must name
# the rank that aborted (and, for hang, carry rank 0's EBB_WATCHDOG_OK: its checks held).
# Usage: comm_mpi_watchdog_test.sh MPIEXEC COMM_TEST_BINARY
set -uo pipefail
mpiexec=$1
binary=$2
failed=0

run_scenario() {
  local scenario=$1
  shift
  local log start elapsed rc
  log=$(mktemp)
  start=$SECONDS
  EBB_COMM_TEST_WATCHDOG=$scenario timeout 60 "$mpiexec" --oversubscribe --allow-run-as-root \
    -np 2 "$binary" --gtest_filter='CommMpiWatchdog.*' >"$log" 2>&1
  rc=$?
  elapsed=$((SECONDS - start))
  local ok=1
  if ((rc == 0)); then
    echo "FAIL $scenario: mpirun exited 0; a failed job must not" >&2
    ok=0
  fi
  if ((rc == 124 || elapsed >= 30)); then
    echo "FAIL $scenario: the job took ${elapsed} s to end (rc $rc); it must end within 30 s" >&2
    ok=0
  fi
  local needle
  for needle in "$@"; do
    if ! grep -qF -- "$needle" "$log"; then
      echo "FAIL $scenario: the output lacks '$needle'" >&2
      ok=0
    fi
  done
  if ((ok)); then
    echo "ok   $scenario: mpirun exited $rc after ${elapsed} s"
  else
    echo "---- output of $scenario ----" >&2
    cat "$log" >&2
    failed=1
  fi
  rm -f "$log"
}

run_scenario hang "EBB_WATCHDOG_OK rank 0" "ebb: rank 0 of 2 (mpi) aborts the job" \
  "all_reduce on rank 0 of 2 (mpi)"
run_scenario abort "ebb: rank 1 of 2 (mpi) aborts the job: injected failure"
exit "$failed"
