#!/usr/bin/env bash
# Checks that every C++ and CUDA source git knows of (tracked, or new and not ignored) is
# formatted as .clang-format says. Lists the files that drift and exits 1 if any do.
#   tools/check_format.sh          check
#   tools/check_format.sh --fix    rewrite the drifting files in place
# CLANG_FORMAT overrides the binary (the style is checked with clang-format 14).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

clang_format=${CLANG_FORMAT:-clang-format}
command -v "$clang_format" >/dev/null || { echo "check_format: $clang_format not found" >&2; exit 2; }

fix=0
[[ "${1:-}" == "--fix" ]] && fix=1

# Outside a git checkout (a source tarball), every source file outside build folders.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
                         '*.h' '*.cc' '*.cu' '*.cuh' | sort -u)
else
  mapfile -t files < <(find . -path './build*' -prune -o -type f \
                         \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) \
                         -print | sed 's|^\./||' | sort)
fi

existing=()
for f in "${files[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done  # skip deleted files
checked=${#existing[@]}
# One clang-format process for all files; each drifting line is reported as FILE:LINE:COL:.
drift=()
if ((checked)); then
  mapfile -t drift < <("$clang_format" --dry-run "${existing[@]}" 2>&1 |
                         sed -nE 's/^(.*):[0-9]+:[0-9]+: (warning|error): .*/\1/p' | sort -u)
fi

if ((${#drift[@]} == 0)); then
  echo "check_format: $checked files formatted"
  exit 0
fi
if ((fix)); then
  "$clang_format" -i "${drift[@]}"
  printf 'check_format: reformatted %s\n' "${drift[@]}"
  exit 0
fi
echo "check_format: ${#drift[@]} of $checked files drift from .clang-format:" >&2
printf '  %s\n' "${drift[@]}" >&2
echo "fix with: tools/check_format.sh --fix   (or clang-format -i FILE)" >&2
exit 1
