#!/usr/bin/env bash
# Install the dashboard's browser libraries (uPlot) from the npm registry into
# node_modules/, exactly as package-lock.json pins them; Django serves them from
# there. Installs Debian's npm first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v npm >/dev/null; then
  echo "assets: npm is missing; installing Debian's npm" >&2
  as_root apt-get update -qq || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
fi
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
test -f node_modules/uplot/dist/uPlot.iife.min.js || {
  echo "assets: ERROR: node_modules/uplot/dist/uPlot.iife.min.js is missing after npm" >&2
  exit 1
}
