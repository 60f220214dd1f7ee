#!/usr/bin/env bash
# Checks what `cmake --install` makes of a build, as a user outside ebb's tree meets it:
#   1. the install: headers under include/ebb/, the libraries, the CMake package, bin/ebb;
#   2. the installed `ebb --version` names this version, a commit and the backends;
#   3. examples/consumer, configured and built against the installed tree only (a copy of it
#      outside the repository; CMAKE_PREFIX_PATH the prefix, no package registry), runs its
#      training loop and reports a falling loss within its budget;
#   4. bad input, refused with a message that names it: a component (backend) this build lacks
#      or ebb does not have, asked for at the consumer's configure time; an install into a
#      prefix under a regular file, and into a read-only directory.
# Run by tools/test.sh's build stage after ctest; its asan stage runs --components-only on
# build-asan/, which has no CUDA backend, so that a missing backend is refused somewhere even
# where build/ has them all.
#   tools/check_install.sh [BUILD_DIR]                     (default: build)
#   tools/check_install.sh --components-only BUILD_DIR     1, 2 and 4's backends only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
components_only=0
if [[ "${1:-}" == --components-only ]]; then
  components_only=1
  shift
fi
build=$(cd "${1:-build}" && pwd)
jobs=${JOBS:-2}

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
prefix=$work/prefix

fail() {
  echo "check_install: FAILED: $*" >&2
  exit 1
}
# expect_failure NAME TEXT CMD...: CMD must exit non-zero and print TEXT (a fixed string).
expect_failure() {
  local name=$1 text=$2
  shift 2
  local out
  if out=$("$@" 2>&1); then
    echo "$out" >&2
    fail "$name: succeeded, expected it to fail"
  fi
  grep -qF -- "$text" <<<"$out" || {
    echo "$out" >&2
    fail "$name: the error does not say \"$text\""
  }
  echo "check_install: $name: refused, saying \"$text\""
}

# 1. The install.
cmake --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log" >&2; fail "cmake --install $build --prefix $prefix"; }
for f in include/ebb/engine/ebb.h include/ebb/kernels/device.h include/ebb/engine/planner/planner.h \
  lib/libebb_kernels.a lib/libebb_engine.a lib/libebb_planner.a \
  lib/cmake/ebb/ebbConfig.cmake lib/cmake/ebb/ebbConfigVersion.cmake lib/cmake/ebb/ebbTargets.cmake \
  bin/ebb; do
  [[ -e "$prefix/$f" ]] || fail "the install has no $f"
done
[[ ! -e "$prefix/include/ebb/kernels/cuda" ]] || fail "the cuda backend's internal headers were installed"
[[ ! -e "$prefix/include/ebb/tools" ]] || fail "the CLI's headers were installed"
echo "check_install: installed into $prefix ($(find "$prefix" -type f | wc -l) files)"

# 2. The installed binary's version.
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
"$prefix/bin/ebb" --version >"$work/version.txt" || fail "ebb --version exited non-zero"
grep -qx "ebb $version" "$work/version.txt" || fail "ebb --version does not say ebb $version: $(cat "$work/version.txt")"
grep -qE '^commit ([0-9a-f]{7,}(-dirty)?|unknown)$' "$work/version.txt" || fail "ebb --version names no commit"
backends=$(sed -n 's/^backends //p' "$work/version.txt")
[[ " $backends " == *" cpu "* ]] || fail "ebb --version lists no cpu backend"
echo "check_install: $(tr '\n' ';' <"$work/version.txt")"

# 3. The consumer, from a copy outside the repository, against the prefix alone.
cp -r examples/consumer "$work/consumer"
consumer_configure() {
  cmake -S "$work/consumer" -B "$work/consumer-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "$@"
}
# A backend this build left out, refused at the consumer's configure time, or, where every
# backend was built, each of them found.
check_components() {
  local missing="" c
  for c in cuda nccl mpi; do
    [[ " $backends " == *" $c "* ]] || { missing=$c; break; }
  done
  rm -rf "$work/consumer-build"
  if [[ -n "$missing" ]]; then
    expect_failure "COMPONENTS $missing (not built)" "was built without the backend(s) $missing" \
      consumer_configure -DEBB_CONSUMER_COMPONENTS=$missing
  else
    consumer_configure "-DEBB_CONSUMER_COMPONENTS=cuda;nccl;mpi" >"$work/components.log" 2>&1 ||
      { cat "$work/components.log" >&2; fail "COMPONENTS cuda nccl mpi of a build with all three"; }
    echo "check_install: every optional backend was built here (cuda nccl mpi), and each is found"
  fi
}
if ((components_only)); then
  check_components
  echo "check_install: passed (components only)"
  exit 0
fi
consumer_configure >"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; fail "configuring the consumer"; }
cmake --build "$work/consumer-build" -j"$jobs" >>"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log" >&2; fail "building the consumer"; }
found=$(sed -n 's/^ebb_DIR:PATH=//p' "$work/consumer-build/CMakeCache.txt")
[[ "$found" == "$prefix/lib/cmake/ebb" ]] || fail "the consumer found ebb in $found, not in $prefix"
for f in build.ninja compile_commands.json; do
  if grep -qF -e "$repo/" -e "$build" "$work/consumer-build/$f"; then
    fail "the consumer's $f names the source or build tree: $(grep -oF -e "$repo/" -e "$build" "$work/consumer-build/$f" | head -1)"
  fi
done
"$work/consumer-build/consumer" >"$work/consumer.out" || { cat "$work/consumer.out" >&2; fail "the consumer exited non-zero"; }
grep -qx "consumer: ok" "$work/consumer.out" || fail "the consumer did not say ok"
echo "check_install: consumer built against the install and ran: $(grep '^peak' "$work/consumer.out"), $(grep '^step 20' "$work/consumer.out")"

# 4. Bad input. A component ebb does not have, in any build:
rm -rf "$work/consumer-build"
expect_failure "COMPONENTS opencl" 'ebb has no component "opencl"' \
  consumer_configure -DEBB_CONSUMER_COMPONENTS=opencl
check_components
# An install under a regular file.
touch "$work/a-file"
expect_failure "install under a regular file" "$work/a-file is a file, not a directory" \
  cmake --install "$build" --prefix "$work/a-file/prefix"
# An install into a read-only directory: a directory without write permission, or for root,
# whom permissions do not stop, a read-only bind mount in a private mount namespace.
mkdir "$work/read-only"
if ((EUID != 0)); then
  chmod a-w "$work/read-only"
  expect_failure "install into a read-only directory" "cannot install into $work/read-only/prefix" \
    cmake --install "$build" --prefix "$work/read-only/prefix"
elif unshare -m sh -c 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1"' sh \
  "$work/read-only" 2>/dev/null; then
  expect_failure "install into a read-only mount" "cannot install into $work/read-only/prefix" \
    unshare -m sh -c 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift &&
      exec "$@"' sh "$work/read-only" cmake --install "$build" --prefix "$work/read-only/prefix"
else
  echo "check_install: install into a read-only directory: not checked (root, and no unshare -m)"
fi
echo "check_install: passed"
