#!/usr/bin/env bash
# Install the dashboard's browser libraries (uPlot) from the npm registry into
# node_modules/, exactly as package-lock.json pins them, and copy the files the
# pages load into telemetry/vendor/ (git-ignored), which staticfiles serves and
# the wheel and sdist carry (setup.py runs this script when building from a
# checkout). Installs Debian's npm first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v npm >/dev/null; then
  echo "assets: npm is missing; installing Debian's npm" >&2
  as_root apt-get update -qq || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
fi
npm ci --no-audit --no-fund --loglevel=error

vendor=telemetry/vendor
rm -rf "$vendor"
mkdir -p "$vendor/uplot"
# uPlot's MIT licence travels with its code.
install -m 644 node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css \
  node_modules/uplot/LICENSE "$vendor/uplot/"
# Last, so it also says the copy is complete: setup.py compares it with the lock file.
sha256sum package-lock.json | cut -d' ' -f1 >"$vendor/package-lock.sha256"
