#!/usr/bin/env bash
# The first command: install everything, build, fetch the default teacher weights, run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
.build/release/rstpm weights fetch
