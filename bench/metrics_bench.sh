#!/usr/bin/env bash
# Times the pixel and image metrics over one category of 100 images at 256x256: random maps
# on the real mask shapes of MVTec AD bottle (63 defective masks + 37 good images). The masks
# are read through Imaging (no Python); the benchmark test, skipped in normal test runs,
# prints the times. RSTPM_BENCH_CATEGORY picks another category folder.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${RSTPM_SHARED:-$(pwd)/../shared}"
category="${RSTPM_BENCH_CATEGORY:-$shared/datasets/mvtec_ad/bottle}"
RSTPM_BENCH_CATEGORY="$category" swift test -c release --filter EvaluationTests.MetricsBenchmark 2>&1 | grep -E "bench|error|passed|failed"
