#!/usr/bin/env bash
# RSTPM training throughput (images/s, phase 1 and phase 2) and inference ms/image of the complete
# RSTPM + D pipeline: rstpm against PyTorch (and for inference OpenVINO f32, OpenVINO at its default
# precision, bf16 where the CPU has avx512_bf16, and ONNX Runtime f32) on the same networks, the
# same batches and, with --model, the same trained weights, at the same thread count (see
# bench/method_reference.py; PyTorch both NCHW and channels_last). Prints rstpm's figure as a ratio
# to each: for training above 1 means rstpm is faster; for inference below 1 means rstpm is faster.
# Usage: bench/method.sh [--model BUNDLE_DIR] [--threads 2] [--batch 8] [--steps 3] [--infer-batch 1,8]
#        (after `swift build -c release`; the teachers' weights as for `rstpm train`)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-/work/refvenv/bin/python}
threads=2 batch=8 steps=3 infer_batch=1,8 model=()
while (($#)); do
    case "$1" in
        --model) model=(--model "$2"); shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --infer-batch) infer_batch=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OPENBLAS_NUM_THREADS=$threads .build/release/rstpm bench method "${model[@]}" --threads "$threads" --batch "$batch" --steps "$steps" \
    --infer-batch "$infer_batch" --export "$work/batches.safetensors" | tee "$work/rstpm.txt"
OMP_NUM_THREADS=$threads "$python" bench/method_reference.py --batches "$work/batches.safetensors" "${model[@]}" --threads "$threads" \
    --steps "$steps" --infer-batch "$infer_batch" 2>/dev/null | tee "$work/reference.txt"
echo
awk '
    FNR == NR && $1 == "RESULT" { key = $3 " " $4; rstpm[key] = $5; order[++n] = key; next }
    $1 == "RESULT" { ref[$3 " " $4, $2] = $5 }
    function value(v) { return v == "" ? "-" : v }
    function ratio(a, b) { return b == "" ? "-" : sprintf("%.2f", a / b) }
    END {
        split("pytorch pytorch-cl openvino ov-default onnxrt", names, " ")
        printf "%-20s %5s %9s", "what", "batch", "rstpm"
        for (j = 1; j <= 5; j++) printf " %10s", names[j]
        for (j = 1; j <= 5; j++) printf " %10s", "r/" names[j]
        printf "  %s\n", "unit"
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, part, " ")
            r = rstpm[k]
            printf "%-20s %5s %9.2f", part[1], part[2], r
            for (j = 1; j <= 5; j++) printf " %10s", value(ref[k, names[j]])
            for (j = 1; j <= 5; j++) printf " %10s", ratio(r, ref[k, names[j]])
            printf "  %s\n", part[1] ~ /^train/ ? "images/s (ratio > 1: rstpm faster)" : "ms/image (ratio < 1: rstpm faster)"
        }
    }' "$work/rstpm.txt" "$work/reference.txt"
