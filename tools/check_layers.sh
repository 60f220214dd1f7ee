#!/usr/bin/env bash
# Checks the layering of DESIGN.md: a lower layer never includes a higher one's header.
#   kernels/   may include kernels/
#   allocator/ may include kernels/ allocator/
#   offload/   may include kernels/ allocator/ offload/
#   engine/    may include kernels/ allocator/ offload/ engine/
#   tools/     may include anything
#   tests/L/   may include what layer L may (tests/tools/ anything)
# Includes are read from `#include "..."` lines, which name headers from the repository root.
# Also: only kernels/cuda/ may include CUDA headers (<cuda.h>, <cuda_runtime.h>, <nccl.h>,
# <cublas*.h>, ...), so that everything above the device layer builds without the toolkit.
# Test files with "cuda" in their name (tests/**/*cuda*) may too: CMake builds them only with
# the CUDA backend, and their kernel closures launch onto the native cudaStream_t.
# Prints every violation as file:line and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
                         '*.h' '*.cc' '*.cu' '*.cuh' | sort -u)
else
  mapfile -t files < <(find . -path './build*' -prune -o -type f \
                         \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) \
                         -print | sed 's|^\./||' | sort)
fi

existing=()
for f in "${files[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done
((${#existing[@]})) || { echo "check_layers: no sources"; exit 0; }

# One awk pass over every file: forking per line is slow with hundreds of files.
awk '
  BEGIN {
    rank["kernels"] = 0; rank["allocator"] = 1; rank["offload"] = 2; rank["engine"] = 3
    rank["tools"] = 4
    cuda = "^(cuda[A-Za-z0-9_]*\\.h|cuda/|nccl[A-Za-z0-9_]*\\.h|cublas[A-Za-z0-9_]*\\.h|" \
           "cudnn[A-Za-z0-9_]*\\.h|curand[A-Za-z0-9_]*\\.h|cusparse[A-Za-z0-9_]*\\.h|" \
           "cufft[A-Za-z0-9_]*\\.h|cusolver[A-Za-z0-9_]*\\.h|nvml\\.h|nvtx3?/|thrust/|cub/|" \
           "cooperative_groups|device_launch_parameters\\.h)"
  }
  FNR == 1 {
    # The layer whose rules the file follows: its top folder, or for tests/L/... layer L.
    n = split(FILENAME, part, "/")
    layer = (part[1] == "tests" && n > 2) ? part[2] : part[1]
    in_cuda = (FILENAME ~ /^kernels\/cuda\// || FILENAME ~ /^tests\/.*cuda[^\/]*$/)
  }
  /^[ \t]*#[ \t]*include[ \t]*[<"]/ {
    line = $0
    sub(/^[ \t]*#[ \t]*include[ \t]*/, "", line)
    quoted = (substr(line, 1, 1) == "\"")
    name = substr(line, 2)
    sub(/[">].*/, "", name)
    if (name ~ cuda && !in_cuda) {
      printf "  %s:%d: includes CUDA header <%s>; only kernels/cuda/ and tests/**/*cuda* may\n",
             FILENAME, FNR, name
      bad++
    }
    if (!quoted) next
    if (name ~ /\.\./) {
      printf "  %s:%d: includes \"%s\"; include project headers from the repository root\n",
             FILENAME, FNR, name
      bad++
      next
    }
    target = name
    sub(/\/.*/, "", target)
    if ((layer in rank) && (target in rank) && rank[target] > rank[layer]) {
      printf "  %s:%d: %s/ includes \"%s\" from the higher layer %s/\n",
             FILENAME, FNR, layer, name, target
      bad++
    }
  }
  END { exit bad > 0 }
' "${existing[@]}" >&2 || {
  echo "check_layers: violations above (see DESIGN.md, Layers)" >&2
  exit 1
}
echo "check_layers: ${#existing[@]} files respect the layering"
