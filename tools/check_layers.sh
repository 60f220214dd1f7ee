#!/usr/bin/env bash
# Checks the layering of docs/ARCHITECTURE.md: a lower layer never includes a higher one's
# header, and every engine source sits in the folder of its sub-layer.
#
# Layers, lowest first (each may include itself and any layer before it):
#   kernels/  allocator/  offload/
#   engine/schema/     data formats: tensor kinds, Profile, Plan, HardwareModel, JSON, files
#   engine/runtime/    tensors, the tape, op launch, op timer, profiler
#   engine/residency/  where a tensor's bytes are and how they move: make resident, evict
#   engine/executor/   PlanExecutor: following a Plan
#   engine/            the facade a loop includes (engine.h) and the typed ops
#   engine/optim/      model state over the facade: flat buffers, optimizers, loss scaling
#   engine/zero/       ZeRO data parallelism over a Communicator (kernels/comm/)
#   engine/ebb.h       the umbrella header: everything above but the planner
#   engine/planner/    plan model, bounds, planners, simulator (library ebb_planner)
#   tools/             anything
# tests/L/ may include what layer L may; tests/engine/ may include every engine sub-layer
# (its suites test the planner too); tests/tools/ and tests/fuzz/ (which feeds every parser of
# outside input, the trainer's token files included) anything.
#
# engine/ holds the facade's files at its top level and nothing else: every other engine
# source is in one of the sub-layer folders above, so that each concept is found in the folder
# named for it. A file elsewhere in engine/ (a stray top-level file, an unknown sub-folder) is
# a violation.
#
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

# engine/ holds its sub-layer folders and, at its top, the facade's files only. Checked by path,
# so that an empty file is caught too.
bad_paths=0
for f in "${existing[@]}"; do
  [[ "$f" == engine/* ]] || continue
  case "$f" in
    engine/schema/* | engine/runtime/* | engine/residency/* | engine/executor/* | \
      engine/optim/* | engine/zero/* | engine/planner/*) ;;
    engine/engine.h | engine/engine.cc | engine/ebb.h | engine/nn_ops.h | engine/nn_ops.cc) ;;
    *)
      echo "  $f: not in a sub-layer folder of engine/ (schema, runtime, residency, executor," \
        "optim, zero, planner) nor one of the facade files" >&2
      bad_paths=1
      ;;
  esac
done

# One awk pass over every file: forking per line is slow with hundreds of files.
awk '
  BEGIN {
    n = split("kernels allocator offload engine/schema engine/runtime engine/residency " \
              "engine/executor engine engine/optim engine/zero engine/ebb.h engine/planner tools", order, " ")
    for (i = 1; i <= n; ++i) rank[order[i]] = i
    cuda = "^(cuda[A-Za-z0-9_]*\\.h|cuda/|nccl[A-Za-z0-9_]*\\.h|cublas[A-Za-z0-9_]*\\.h|" \
           "cudnn[A-Za-z0-9_]*\\.h|curand[A-Za-z0-9_]*\\.h|cusparse[A-Za-z0-9_]*\\.h|" \
           "cufft[A-Za-z0-9_]*\\.h|cusolver[A-Za-z0-9_]*\\.h|nvml\\.h|nvtx3?/|thrust/|cub/|" \
           "cooperative_groups|device_launch_parameters\\.h)"
  }
  # The layer of a path from the repository root: engine/<sub>/... is engine/<sub> when <sub>
  # is a sub-layer; any other engine path is engine (the facade); else the top folder.
  function layer_of(path,    part, k) {
    if (path == "engine/ebb.h") return path  # the umbrella: the whole API but the planner
    k = split(path, part, "/")
    if (part[1] == "engine" && k > 2 && (("engine/" part[2]) in rank)) return "engine/" part[2]
    return part[1]
  }
  FNR == 1 {
    # The layer whose rules the file follows: its own, or for tests/L/... layer L.
    k = split(FILENAME, part, "/")
    if (part[1] == "tests" && k > 2) {
      layer = (part[2] == "engine") ? "engine/planner" : part[2]
    } else {
      layer = layer_of(FILENAME)
    }
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
    target = layer_of(name)
    if ((layer in rank) && (target in rank) && rank[target] > rank[layer]) {
      printf "  %s:%d: %s/ includes \"%s\" from the higher layer %s/\n",
             FILENAME, FNR, layer, name, target
      bad++
    }
  }
  END { exit bad > 0 }
' "${existing[@]}" >&2 || bad_paths=1
if ((bad_paths)); then
  echo "check_layers: violations above (see docs/ARCHITECTURE.md, Layers)" >&2
  exit 1
fi
echo "check_layers: ${#existing[@]} files respect the layering"
