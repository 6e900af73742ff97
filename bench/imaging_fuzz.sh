#!/usr/bin/env bash
# Fuzz run of the decoders under AddressSanitizer + LeakSanitizer (slow build; not a test):
# truncation at every 97th byte, 300 random multi-bit flips, 60 scrambled headers, a swapped
# signature and 7 forged sizes per file, over real images from ../shared/datasets (PNG, and
# JPEGs made from them) plus the interlaced/YCCK/EXIF corpus files. Every failure must be an
# OperatorError; any ASan/LSan report aborts with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
D="${RSTPM_SHARED:-$(cd .. && pwd)/shared}/datasets"
F=Tests/Fixtures/images
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
swift build -c debug --sanitize=address --product ImagingBench --scratch-path .build-asan >/dev/null
A=.build-asan/debug/ImagingBench
"$A" make-image "$D/imagenet_samples/chelsea.png" "$WORK/chelsea.jpg" 451 300
"$A" make-image "$D/mvtec_ad/bottle/test/broken_large/000.png" "$WORK/bottle_progressive.jpg" 256 256 progressive
"$A" make-image "$D/fullres/bottle/contamination_000.png" "$WORK/bottle_900.jpg" 900 900
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 "$A" fuzz \
    "$D/mvtec_ad/bottle/test/broken_large/000.png" "$D/magnetic_tile/tile/test/crack/000.png" \
    "$D/anomaly_sources/gimp_3dgreen.png" "$D/imagenet_samples/chelsea.png" \
    "$D/fullres/bottle/broken_large_000.png" \
    "$WORK/chelsea.jpg" "$WORK/bottle_progressive.jpg" "$WORK/bottle_900.jpg" \
    "$F/ycck_adobe.jpg" "$F/exif_orientation6.jpg" "$F/palette4_trns_interlaced.png" \
    "$F/rgba16_interlaced.png" "$F/gray2_interlaced.png"
