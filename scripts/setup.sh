#!/usr/bin/env bash
# The first command: install everything, build, fetch the default teacher weights, run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
.build/release/rstpm weights fetch
# The main job: a demo inspection line (procedural fabric images, a demo model trained on them in
# a few minutes), rstpmd in the foreground printing verdicts as they appear; Ctrl-C stops it.
.build/release/rstpm demo
