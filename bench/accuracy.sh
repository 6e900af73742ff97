#!/usr/bin/env bash
# Accuracy bench (not a test): for each data set, `rstpm train` with the default configuration
# (timed), `rstpm eval` (the S-T, D and full Eq. 1 maps from report.json) and the PatchCore
# baseline of bench/patchcore.py on the same teacher features; prints one markdown table with
# image AUROC, pixel AUROC, AUPRO (FPR 0.3), image F1-max and training minutes per data set and
# method. PatchCore's "train min" is building its memory bank and coreset.
# Usage: bench/accuracy.sh   (after `swift build -c release` and `rstpm weights fetch`; on a shared
#        machine run it under `nice -n 19`)
#   BENCH_OUT      output folder (default /tmp/rstpm-accuracy): models/NAME, reports/NAME (+ .txt),
#                  patchcore/NAME.json (+ .txt), logs/, data/fabric, table.md
#   BENCH_SETS     data sets (default "bottle tile fabric"): bottle and tile are read from
#                  $RSTPM_SHARED/datasets; NAME=DIR adds any other MVTec-layout category folder
#   BENCH_FABRIC   an MVTec-layout folder (train/good, test/<type>, ground_truth/) for "fabric"
#                  (default: the demo's fabric, written by `rstpm demo-data` into BENCH_OUT/data/fabric
#                  on the first run and reused after)
#   BENCH_CONFIG   JSON file passed to `rstpm train --config` (default: none, the default configuration)
#   BENCH_EPOCHS   STUDENT,DISCRIMINATOR passed to `rstpm train --epochs` (default: the schedule's)
#   BENCH_REUSE=1  keep what already exists in BENCH_OUT instead of making it again: a model (its
#                  training time then comes from NAME.train-seconds if this script trained it, else
#                  the manifest), a report.json newer than its model, a PatchCore JSON
#   BENCH_PYTHON   Python with torch, numpy, scipy, scikit-learn, pillow (default /work/refvenv/bin/python);
#                  when it is missing or lacks them, the PatchCore rows say n/a
#   BENCH_THREADS  threads for rstpm and PyTorch (default 2)
#   RSTPM_BIN      the rstpm executable (default .build/release/rstpm)
#   RSTPM_SHARED   shared folder with datasets/ (default ../shared)
#   RSTPM_WEIGHTS  teachers' folder (default ~/.local/share/rstpm/weights)
# Needs jq.
set -euo pipefail
cd "$(dirname "$0")/.."
RSTPM="${RSTPM_BIN:-.build/release/rstpm}"
SHARED="${RSTPM_SHARED:-$(cd .. && pwd)/shared}"
OUT="${BENCH_OUT:-/tmp/rstpm-accuracy}"
SETS="${BENCH_SETS:-bottle tile fabric}"
PYTHON="${BENCH_PYTHON:-/work/refvenv/bin/python}"
THREADS="${BENCH_THREADS:-2}"
[ -x "$RSTPM" ] || { echo "missing $RSTPM (swift build -c release, or set RSTPM_BIN)" >&2; exit 1; }
command -v jq >/dev/null || { echo "needs jq" >&2; exit 1; }
weights=()
[ -n "${RSTPM_WEIGHTS:-}" ] && weights=(--weights-dir "$RSTPM_WEIGHTS")
train_options=()
[ -n "${BENCH_CONFIG:-}" ] && train_options+=(--config "$BENCH_CONFIG")
[ -n "${BENCH_EPOCHS:-}" ] && train_options+=(--epochs "$BENCH_EPOCHS")
mkdir -p "$OUT/models" "$OUT/reports" "$OUT/patchcore" "$OUT/logs"
ROWS="$OUT/rows.tsv"
: > "$ROWS"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
now() { date +%s.%N; }
# One table row: set, method, image AUROC, pixel AUROC, AUPRO, F1, training seconds (empty: n/a).
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$ROWS"; }

patchcore_ok=0
# find_spec looks the packages up without importing torch (seconds on a loaded machine).
if [ -x "$PYTHON" ] && "$PYTHON" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('torch', 'numpy', 'scipy', 'sklearn', 'PIL')))" 2>/dev/null; then
    patchcore_ok=1
else
    log "no usable Python at $PYTHON (torch, numpy, scipy, scikit-learn, pillow): PatchCore rows will say n/a"
fi

# The category folder of a BENCH_SETS entry, or nothing (with the reason on stderr).
data_dir() {
    case "$1" in
        *=*) echo "${1#*=}" ;;
        bottle) echo "$SHARED/datasets/mvtec_ad/bottle" ;;
        tile) echo "$SHARED/datasets/magnetic_tile/tile" ;;
        fabric)
            if [ -n "${BENCH_FABRIC:-}" ]; then echo "$BENCH_FABRIC"; else
                # Written once: every later run (and a reused model) sees the same images.
                if [ ! -d "$OUT/data/fabric" ]; then
                    log "fabric: writing $OUT/data/fabric (rstpm demo-data)"
                    "$RSTPM" demo-data --out "$OUT/data" >&2 || { echo "rstpm demo-data failed" >&2; exit 1; }
                fi
                echo "$OUT/data/fabric"
            fi ;;
        *) echo "$SHARED/datasets/mvtec_ad/$1" ;;
    esac
}

# S-T, D and full rows from report.json (overall row of each map's table).
rstpm_rows() {
    local name="$1" report="$2" train_seconds="$3"
    jq -r --arg set "$name" --arg seconds "$train_seconds" '.categories[0].maps[] |
        .table.summary.scores as $s |
        [$set, .name, ($s.imageAUROC // ""), ($s.pixelAUROC // ""), ($s.aupro // ""), ($s.f1Max // ""), $seconds] | @tsv' \
        "$report/report.json" >> "$ROWS"
}

for entry in $SETS; do
    name="${entry%%=*}"
    data="$(data_dir "$entry")"
    if [ -z "$data" ] || [ ! -d "$data/train/good" ] || [ ! -d "$data/test" ]; then
        [ -n "$data" ] && log "$name: $data is not an MVTec-layout category folder (train/good, test/<type>)"
        for method in S-T D full PatchCore; do row "$name" "$method" "" "" "" "" ""; done
        continue
    fi
    model="$OUT/models/$name" report="$OUT/reports/$name"

    # rstpm: train (or reuse), then evaluate.
    if [ "${BENCH_REUSE:-0}" = 1 ] && [ -f "$model/manifest.json" ]; then
        log "$name: reusing $model"
    else
        log "$name: training $model (log: $OUT/logs/$name-train.txt)"
        rm -rf "$model" "$model.train-seconds"
        start="$(now)"
        "$RSTPM" train --data "$data" --out "$model" --threads "$THREADS" "${weights[@]}" \
            "${train_options[@]}" > "$OUT/logs/$name-train.txt" 2>&1 \
            || { echo "training $name failed, see $OUT/logs/$name-train.txt" >&2; exit 1; }
        awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f\n", b - a }' > "$model.train-seconds"
    fi
    # Wall time measured here when this script trained it, else the manifest's training time.
    if [ -f "$model.train-seconds" ]; then seconds="$(cat "$model.train-seconds")"; else seconds="$(jq -r '.training.seconds' "$model/manifest.json")"; fi
    if [ "${BENCH_REUSE:-0}" = 1 ] && [ "$report/report.json" -nt "$model/manifest.json" ]; then
        log "$name: reusing $report/report.json"
    else
        log "$name: evaluating (log: $report.txt)"
        rm -rf "$report"
        "$RSTPM" eval --model "$model" --data "$data" --report "$report" --threads "$THREADS" "${weights[@]}" \
            > "$report.txt" 2>&1 || { echo "eval of $name failed, see $report.txt" >&2; exit 1; }
    fi
    rstpm_rows "$name" "$report" "$seconds"

    # PatchCore on the same data.
    json="$OUT/patchcore/$name.json"
    if [ "$patchcore_ok" = 1 ]; then
        if [ "${BENCH_REUSE:-0}" = 1 ] && [ -f "$json" ]; then
            log "$name: reusing $json"
        else
            log "$name: PatchCore (log: $OUT/patchcore/$name.txt)"
            rm -f "$json"
            OMP_NUM_THREADS=$THREADS "$PYTHON" bench/patchcore.py --data "$data" --threads "$THREADS" --json "$json" \
                > "$OUT/patchcore/$name.txt" 2>&1 || log "$name: PatchCore failed, see $OUT/patchcore/$name.txt"
        fi
    fi
    if [ -f "$json" ] && [ "$patchcore_ok" = 1 ]; then
        jq -r --arg set "$name" '.categories[0] |
            [$set, "PatchCore", .image_auroc, .pixel_auroc, .aupro, .f1, (.bank_seconds + .coreset_seconds)] | @tsv' \
            "$json" >> "$ROWS"
    else
        row "$name" PatchCore "" "" "" "" ""
    fi
done

awk -F '\t' '
    function cell(v) { return v == "" ? "n/a" : sprintf("%.3f", v) }
    BEGIN { print "| data set | method | image AUROC | pixel AUROC | AUPRO | F1-max | train min |"
            print "|---|---|---:|---:|---:|---:|---:|" }
    { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, cell($3), cell($4), cell($5), cell($6), $7 == "" ? "n/a" : sprintf("%.1f", $7 / 60) }
' "$ROWS" | tee "$OUT/table.md"
