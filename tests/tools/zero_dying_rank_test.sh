#!/usr/bin/env bash
# A rank that dies mid-step (an injected exit at step 3) ends the whole ZeRO job with a non-zero
# status within 30 s, with a message naming that rank, and leaves no process behind.
# Usage: zero_dying_rank_test.sh MPIEXEC EBB
set -uo pipefail
mpiexec=$1
ebb=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
timeout 60 "$mpiexec" --oversubscribe --allow-run-as-root -np 2 "$ebb" train --zero 2 \
  --layers 1 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 --steps 6 \
  --comm-timeout 20 --inject-exit-step 3 --inject-exit-rank 1 >"$log" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
echo "mpirun exited with status $status after ${elapsed}s"
cat "$log"
fail=0
if ((status == 0)); then echo "FAIL: the job exited 0"; fail=1; fi
if ((status == 124)); then echo "FAIL: the job hung (killed by timeout)"; fail=1; fi
if ((elapsed > 30)); then echo "FAIL: the job took ${elapsed}s (over 30 s)"; fail=1; fi
if ! grep -q "rank 1" "$log"; then echo "FAIL: no message names rank 1"; fail=1; fi
sleep 1
if pgrep -f "$ebb train --zero" >/dev/null; then
  echo "FAIL: a rank is still running"
  pkill -f "$ebb train --zero"
  fail=1
fi
exit $fail
