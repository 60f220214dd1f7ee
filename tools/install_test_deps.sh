#!/usr/bin/env bash
# Installs what ebb's tests need beyond tools/install_deps.sh: a headless Chromium for the
# report's browser test (tests/tools/report_browser_test.py, CTest label `browser`). A test
# dependency only: the README's quick start (install_deps.sh, build, `ebb demo`) never downloads
# a browser. Debian 12's chromium-headless-shell when the archive has it, else chromium. Installs
# only what is missing; with a browser present it returns at once.
set -euo pipefail

for browser in chromium-headless-shell chromium; do
  if command -v "$browser" >/dev/null; then
    echo "install_test_deps: $browser present ($("$browser" --version 2>/dev/null || true))"
    exit 0
  fi
done

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install_test_deps: not root and no sudo" >&2; exit 1; }
  sudo=(sudo)
fi

apt_get=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
"${apt_get[@]}" update
package=chromium
if apt-cache show chromium-headless-shell >/dev/null 2>&1; then
  package=chromium-headless-shell
fi
echo "install_test_deps: installing $package"
"${apt_get[@]}" install -y --no-install-recommends "$package" >/dev/null
echo "install_test_deps: done"
