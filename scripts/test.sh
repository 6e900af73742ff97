#!/usr/bin/env bash
# The second command: the whole test suite (what CI runs through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
.build/release/rstpm weights fetch
# Release mode: the numeric tests run a hundred times slower in a debug build.
# XCTest only: the suite has no Swift Testing tests, whose empty summary would close the log.
swift test -c release --disable-swift-testing
