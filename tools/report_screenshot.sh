#!/usr/bin/env bash
# Regenerates docs/figures/report.png, the README's picture of a report: a short `ebb train` run
# on the cpu device (the reference trainer, 2 layers, width 128, under 60% of its peak with the
# cost-aware plan and an 8 GB/s modelled host link) writes its report, and headless Chromium
# (tools/report/cdp.py; tools/install_test_deps.sh installs it) draws it.
#   tools/report_screenshot.sh [EBB_BINARY]   (default build/bin/ebb)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ebb=${1:-build/bin/ebb}
[[ -x "$ebb" ]] || { echo "report_screenshot: no $ebb; build first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$ebb" train --layers 2 --d-model 128 --heads 4 --seq 128 --batch 4 --steps 6 --budget 60% \
  --policy plan --link-gbps 8 --seed 1 --report "$work/report.html" >/dev/null
mkdir -p docs/figures
python3 tools/report/cdp.py screenshot "$work/report.html" docs/figures/report.png \
  --width 1280 --height 1000
