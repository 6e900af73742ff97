#!/usr/bin/env bash
# rstpm's backbone feature extraction against PyTorch, ONNX Runtime and OpenVINO on the same
# networks (see bench/engine_reference.py), at the same thread count. Prints ms/image and
# rstpm's time as a ratio to each (below 1: rstpm is faster).
# Usage: bench/engine.sh [--threads 2] [--batch 1,8] [--iterations 5] [--isa avx2] [--kernels SET]
#   (after `swift build -c release`)
# --isa avx2 compares on a CPU without AVX-512, as far as the runtimes allow: rstpm on its AVX2
# kernel set (RSTPM_KERNELS=avx2), OpenVINO and PyTorch's oneDNN limited with
# ONEDNN_MAX_CPU_ISA=AVX2, and OpenBLAS on its Haswell kernels (OPENBLAS_CORETYPE). ONNX Runtime has
# no such switch: its column stays at the CPU's best. --kernels picks rstpm's kernel sets alone,
# one run each against the same reference run (e.g. `--isa avx2 --kernels avx2,generic` to set
# the AVX2 kernels beside the Swift fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-/work/refvenv/bin/python}
threads=2 batch=1,8 iterations=5 isa="" kernels=""
while (($#)); do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --iterations) iterations=$2; shift 2 ;;
        --isa) isa=$2; shift 2 ;;
        --kernels) kernels=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case "$isa" in
    "") ;;
    avx2)
        export ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell
        kernels=${kernels:-avx2}
        echo "ISA limited to AVX2: rstpm kernels ${kernels}, ONEDNN_MAX_CPU_ISA=AVX2 (OpenVINO, PyTorch), OPENBLAS_CORETYPE=Haswell; ONNX Runtime unlimited" ;;
    *) echo "--isa takes avx2 (or leave it out for the CPU's best), got $isa" >&2; exit 2 ;;
esac
sets=${kernels//,/ }
rstpm_out=$(mktemp) reference_out=$(mktemp)
trap 'rm -f "$rstpm_out" "$reference_out"' EXIT
# OpenBLAS starts no threads of its own at load (they would spin beside the first measurement);
# the OpenBLAS peak still runs on $threads of them (openblas_set_num_threads).
for set in ${sets:-best}; do
    # Each RESULT line gets the set's name ("best": RSTPM_KERNELS left as it is).
    if [[ $set == best ]]; then run=(env); else run=(env RSTPM_KERNELS="$set"); fi
    OPENBLAS_NUM_THREADS=1 "${run[@]}" .build/release/rstpm bench engine --threads "$threads" --batch "$batch" --iterations "$iterations" \
        | sed "s/^RESULT /RESULT $set /" | tee -a "$rstpm_out"
done
OMP_NUM_THREADS=$threads "$python" bench/engine_reference.py --threads "$threads" --batch "$batch" --iterations "$iterations" 2>/dev/null | tee "$reference_out"
echo
awk '
    FNR == NR && $1 == "RESULT" { key = $2 " " $3 " " $4; rstpm[key] = $5; order[++n] = key; next }
    $1 == "RESULT" { ref[$3 " " $4, $2] = $5 }
    END {
        printf "%-18s %5s %-7s %9s %9s %9s %9s   %s\n", "network", "batch", "kernels", "rstpm", "pytorch", "ort", "openvino",
            "rstpm / (pytorch, ort, openvino)"
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, part, " ")
            r = rstpm[k]; reference = part[2] " " part[3]
            p = ref[reference, "pytorch"]; o = ref[reference, "onnxruntime"]; v = ref[reference, "openvino"]
            if (p == "" || o == "" || v == "") { printf "%-18s %5s %-7s %9.2f   (no reference)\n", part[2], part[3], part[1], r; continue }
            printf "%-18s %5s %-7s %9.2f %9.2f %9.2f %9.2f   %.2fx %.2fx %.2fx\n", part[2], part[3], part[1], r, p, o, v, r / p, r / o, r / v
        }
    }' "$rstpm_out" "$reference_out"
