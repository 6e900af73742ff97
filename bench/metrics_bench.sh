#!/usr/bin/env bash
# Times the pixel and image metrics over one category of 100 images at 256x256: random maps
# on the real mask shapes of MVTec AD bottle (63 defective masks + 37 good images).
# Developer-only: Python decodes the masks into a raw file under /tmp (not into the repo),
# then the benchmark test (skipped in normal test runs) reads it and prints the times.
set -euo pipefail
cd "$(dirname "$0")/.."
masks="${TMPDIR:-/tmp}/rstpm-bench-masks-$$.u8"
trap 'rm -f "$masks"' EXIT
shared="${RSTPM_SHARED:-$(pwd)/../shared}"
"${PYTHON:-/work/venv/bin/python}" - "$shared/datasets/mvtec_ad/bottle" "$masks" <<'PY'
import sys, pathlib
import numpy as np
from PIL import Image
root, out = pathlib.Path(sys.argv[1]), sys.argv[2]
masks = [np.asarray(Image.open(p).convert("L").resize((256, 256), Image.NEAREST), dtype=np.uint8)
         for p in sorted((root / "ground_truth").glob("*/*_mask.png"))]
masks += [np.zeros((256, 256), np.uint8)] * (100 - len(masks))
np.stack(masks[:100]).tofile(out)
PY
RSTPM_BENCH_MASKS="$masks" swift test -c release --filter EvaluationTests.MetricsBenchmark 2>&1 | grep -E "bench|error|passed|failed"
