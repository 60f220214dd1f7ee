#!/usr/bin/env bash
# Installs the Debian 12 packages ebb builds and tests with. Installs only what is missing, and
# runs `apt-get update` only when something is; with everything present it returns at once.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libtbb-dev liburing-dev
  libopenmpi-dev openmpi-bin
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  clang-format clang-tidy
  clang libclang-rt-14-dev  # the fuzz stage: Clang and its libFuzzer and sanitizer runtimes
  python3
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install_deps: not root and no sudo" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install_deps: installing ${missing[*]}"
apt_get=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
"${apt_get[@]}" update
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
echo "install_deps: done"
