#!/usr/bin/env bash
# Vendor the web UI's front-end libraries into the package, reproducibly.
#
# `npm ci` installs exactly what scripts/ui-vendor/package-lock.json pins (integrity hashes
# included), then the built files are copied into src/keel/operate/ui/static/vendor/.
# The copied files are committed, so `pip install keel` needs no Node.js; node_modules is not.
# Run it after changing the pinned version; `git diff` then shows exactly what changed.
set -euo pipefail
cd "$(dirname "$0")/ui-vendor"
npm ci --no-audit --no-fund --ignore-scripts
dest=../../src/keel/operate/ui/static/vendor
mkdir -p "$dest"
cp node_modules/uplot/dist/uPlot.iife.min.js "$dest/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$dest/uPlot.min.css"
cp node_modules/uplot/LICENSE "$dest/uPlot.LICENSE"
version=$(node -p "require('./node_modules/uplot/package.json').version")
echo "uPlot $version" > "$dest/VERSIONS"
rm -rf node_modules
echo "vendored uPlot $version into src/keel/operate/ui/static/vendor"
