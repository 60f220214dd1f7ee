#!/usr/bin/env bash
# Runs clang-tidy (.clang-tidy) over ebb's .cc files with the compile commands of build/.
#   tools/tidy.sh                 the library and tool sources
#   tools/tidy.sh --tests         the test sources too
#   tools/tidy.sh FILE...         the named files
# Configure build/ first (tools/test.sh or the README's quick start does). CLANG_TIDY overrides
# the binary; JOBS the parallelism (default: the number of cores); VERBOSE=1 prints clang-tidy's
# full output (with code excerpts) instead of one line per warning. Exits 1 on any warning.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

clang_tidy=${CLANG_TIDY:-clang-tidy}
jobs=${JOBS:-$(nproc)}
db=build/compile_commands.json
[[ -f "$db" ]] || { echo "tidy: $db missing; configure build/ first" >&2; exit 2; }

dirs=(kernels allocator offload engine tools)
files=()
if [[ "${1:-}" == "--tests" ]]; then
  dirs+=(tests)
  shift
fi
if (($#)); then
  files=("$@")
else
  # Only files the build compiles (a .cc that build/ does not know has no flags to check with).
  mapfile -t files < <(python3 - "$db" "${dirs[@]}" <<'PY'
import json, os, sys
root = os.getcwd()
dirs = tuple(d + "/" for d in sys.argv[2:])
for entry in json.load(open(sys.argv[1])):
    path = os.path.relpath(os.path.join(entry["directory"], entry["file"]), root)
    if path.endswith(".cc") and path.startswith(dirs):
        print(path)
PY
  )
  mapfile -t files < <(printf '%s\n' "${files[@]}" | sort -u)
fi
((${#files[@]})) || { echo "tidy: no files"; exit 0; }

start=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
printf '%s\n' "${files[@]}" |
  xargs -P "$jobs" -I{} "$clang_tidy" -p build --quiet {} >"$log" 2>/dev/null || true
# A header's warning repeats for every file that includes it: report each one once.
mapfile -t warnings < <(grep -E ': (warning|error):' "$log" | sort -u)
if [[ -n "${VERBOSE:-}" ]]; then
  cat "$log"
elif ((${#warnings[@]})); then
  printf '%s\n' "${warnings[@]}"
fi
echo "tidy: ${#files[@]} files, ${#warnings[@]} distinct warnings/errors, $((SECONDS - start)) s"
((${#warnings[@]} == 0))
