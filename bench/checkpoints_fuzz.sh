#!/usr/bin/env bash
# libFuzzer run over the Checkpoints parsers (unpickler, zip and legacy .pth, safetensors header,
# the wheel zip reader) under AddressSanitizer, one job, seeded with Tests/Fixtures/checkpoints
# and the opcode dictionary Tests/CheckpointsFuzz/checkpoints.dict. Not a test: CI never runs it.
#
#   bench/checkpoints_fuzz.sh [SECONDS] [--tree DIR] [--plain] [--max-len BYTES]
#
# SECONDS    how long to fuzz (default 600).
# --tree DIR fuzz DIR's Sources/Checkpoints (with this checkout's harness), e.g. a worktree at
#            an older commit: `git worktree add --detach ../old 5a547ca~1` is the code before
#            the deep-pickle fix.
# --plain    libFuzzer's mutations only, without the harness's nesting mutator.
# Crashes are not fatal to the run (-fork=1 -ignore_crashes=1): each is kept as an artifact and
# the summary lists them with the seconds at which they were found.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=600
TREE=.
PLAIN=()
MUTATIONS="with the nesting mutator"
MAX_LEN=120000
while [ $# -gt 0 ]; do
    case "$1" in
        --tree) TREE="$2"; shift 2 ;;
        --plain) PLAIN=(-D PLAIN_MUTATIONS); MUTATIONS="libFuzzer's mutations only"; shift ;;
        --max-len) MAX_LEN="$2"; shift 2 ;;
        *) SECONDS_TO_RUN="$1"; shift ;;
    esac
done
TAG="$(cd "$TREE" && git rev-parse --short HEAD)${PLAIN:+-plain}"
OUT=".build/checkpoints-fuzz/$TAG"
# Every run starts from the seeds alone, so that runs compare.
rm -rf "$OUT/corpus" "$OUT/artifacts"
mkdir -p "$OUT/corpus" "$OUT/artifacts"
BINARY="$OUT/checkpoints-fuzz"
# ld.gold warns about every ASan symbol: the build's output goes to a log shown on failure.
# The Checkpoints sources throw OperatorErrors' one error type: that module is built first.
mkdir -p "$OUT/modules"
swiftc -sanitize=address -parse-as-library -g -module-name OperatorErrors -emit-module -emit-module-path "$OUT/modules/OperatorErrors.swiftmodule" \
    -emit-library -static -o "$OUT/libOperatorErrors.a" Sources/OperatorErrors/*.swift > "$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }
# shellcheck disable=SC2046
swiftc -sanitize=fuzzer,address -parse-as-library -g -module-name CheckpointsFuzz "${PLAIN[@]}" \
    -I Sources/CZlib -I "$OUT/modules" -L "$OUT" -lOperatorErrors $(ls "$TREE"/Sources/Checkpoints/*.swift | grep -v '/SHA256.swift$') \
    Tests/CheckpointsFuzz/FuzzEntry.swift -o "$BINARY" >> "$OUT/build.log" 2>&1 || { grep -v 'ld.gold: warning' "$OUT/build.log"; exit 1; }
cp Tests/Fixtures/checkpoints/*fix "$OUT/corpus/"

START=$(date +%s)
# A crash found by a forked job is reported and the run goes on; the log says when.
"$BINARY" "$OUT/corpus" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -dict=Tests/CheckpointsFuzz/checkpoints.dict -max_len="$MAX_LEN" -len_control=0 -timeout=30 \
    -max_total_time="$SECONDS_TO_RUN" -artifact_prefix="$OUT/artifacts/" 2>&1 \
    | while IFS= read -r line; do printf '%6ds %s\n' $(($(date +%s) - START)) "$line"; done > "$OUT/fuzz.log" || true

echo "tree $TREE ($TAG), ${SECONDS_TO_RUN}s, max_len $MAX_LEN, $MUTATIONS; log $OUT/fuzz.log"
grep -E 'cov: [0-9]+' "$OUT/fuzz.log" | tail -1
echo "crash reports (the log's seconds):"
grep -E 'ERROR: (AddressSanitizer|libFuzzer)|Fatal error' "$OUT/fuzz.log" | head -40 || true
# Fork mode keeps only the first line of each report: rerun the first artifacts for their frames.
echo "$(ls "$OUT/artifacts" | wc -l) artifacts in $OUT/artifacts"
for artifact in $(ls "$OUT"/artifacts/* 2>/dev/null | head -3); do
    echo "$artifact ($(stat -c %s "$artifact") bytes):"
    "$BINARY" "$artifact" 2>&1 | grep -E '^ +#[0-9]+ ' | head -6 | sed 's/^/  /' || true
done
