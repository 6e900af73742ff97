#!/usr/bin/env bash
# Imaging benchmark (not a test): decode + resize to 256x256 of a 900x900 PNG and of a
# 2448x2048 JPEG (made from the same shared image), ms per image, Imaging vs PIL (and OpenCV
# when installed) in one run. Usage: bench/imaging.sh [iterations]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS="${1:-20}"
PYTHON="${PYTHON:-/work/refvenv/bin/python}"
SHARED="${RSTPM_SHARED:-$(cd .. && pwd)/shared}"
PNG="$SHARED/datasets/fullres/bottle/good_000.png"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
JPEG="$WORK/bottle_2448x2048.jpg"

swift build -c release --product ImagingBench >/dev/null
BENCH="$(swift build -c release --show-bin-path)/ImagingBench"
"$BENCH" make-image "$PNG" "$JPEG" 2448 2048

echo "== Imaging (Swift, libpng/libjpeg-turbo; float RGB output, antialiased bilinear) =="
"$BENCH" bench "$PNG" "$JPEG" --iterations "$ITERATIONS"

echo "== PIL $("$PYTHON" -c 'import PIL; print(PIL.__version__)') (8-bit output, BILINEAR with antialias) =="
"$PYTHON" - "$PNG" "$JPEG" "$ITERATIONS" <<'PY'
import sys, time
from PIL import Image
png, jpeg, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])

def measure(label, path, draft):
    def once():
        im = Image.open(path)
        if draft:
            im.draft("RGB", (256, 256))
        return im.convert("RGB").resize((256, 256), Image.BILINEAR)
    once()
    start = time.perf_counter()
    for _ in range(iterations):
        once()
    print(f"{(time.perf_counter() - start) * 1000 / iterations:8.2f} ms/image  {label}")

measure("png " + png.split("/")[-1], png, False)
measure("jpeg (full decode) " + jpeg.split("/")[-1], jpeg, False)
measure("jpeg (draft = DCT scaling) " + jpeg.split("/")[-1], jpeg, True)
try:
    import cv2
    for label, path in (("png", png), ("jpeg", jpeg)):
        cv2.resize(cv2.imread(path), (256, 256), interpolation=cv2.INTER_AREA)
        start = time.perf_counter()
        for _ in range(iterations):
            cv2.resize(cv2.imread(path), (256, 256), interpolation=cv2.INTER_AREA)
        print(f"{(time.perf_counter() - start) * 1000 / iterations:8.2f} ms/image  OpenCV {cv2.__version__} {label}")
except ImportError:
    print("(OpenCV not installed: skipped)")
PY
