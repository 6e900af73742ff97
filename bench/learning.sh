#!/usr/bin/env bash
# Continuous-learning benchmark (not a test), on the real binaries and MVTec AD bottle:
#   1. v0001 = `rstpm train` on the even-indexed half of train/good, evaluated with `rstpm eval`;
#   2. a model store (v0001 + current) and an rstpmd line whose learning block retrains once the
#      odd-indexed half has arrived through accepted/ (window covering now); inspection
#      throughput (images/s) with test images dropped into the inbox while idle and while the
#      trainer child runs;
#   3. the gate's decision (gate.json), the swap to v0002, v0002 evaluated with `rstpm eval`.
# Prints image and pixel AUROC (full Eq. 1 map) before and after, the gate figures, the retrain
# wall time and the two throughputs.
# Usage: bench/learning.sh [WORK_DIR]
#   BENCH_EPOCHS       student,discriminator epochs of both trainings (default 6,3; the default
#                      schedule is 12,6)
#   BENCH_TRAINER_THREADS  the learning line's trainer_threads (default 2)
#   BENCH_DROP         test images per throughput measurement (default 80, at most 83)
#   RSTPM_BIN          folder with rstpm and rstpmd (default .build/release)
#   RSTPM_SHARED       shared folder with datasets/ (default ../shared)
#   RSTPM_WEIGHTS      teachers' folder (default ~/.local/share/rstpm/weights)
# Needs jq. WORK_DIR (default: a new /tmp/rstpm-learning.XXXXXX) is kept for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${RSTPM_BIN:-.build/release}" && pwd)"
SHARED="${RSTPM_SHARED:-$(cd .. && pwd)/shared}"
BOTTLE="$SHARED/datasets/mvtec_ad/bottle"
WEIGHTS="${RSTPM_WEIGHTS:-${XDG_DATA_HOME:-$HOME/.local/share}/rstpm/weights}"
EPOCHS="${BENCH_EPOCHS:-6,3}"
TRAINER_THREADS="${BENCH_TRAINER_THREADS:-2}"
DROP="${BENCH_DROP:-80}"
WORK="${1:-$(mktemp -d /tmp/rstpm-learning.XXXXXX)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
for tool in "$BIN/rstpm" "$BIN/rstpmd"; do [ -x "$tool" ] || { echo "missing $tool (swift build -c release)" >&2; exit 1; }; done
command -v jq >/dev/null || { echo "needs jq" >&2; exit 1; }

DAEMON_PID=""
cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

stamp() { date -u +%H:%M:%S; }
log() { echo "[$(stamp)] $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Image and pixel AUROC of the full map (the last of eval's maps) from report.json.
evaluate() {
    local model="$1" report="$2"
    "$BIN/rstpm" eval --model "$model" --data "$BOTTLE" --weights-dir "$WEIGHTS" --report "$report" > "$report.txt" 2>&1
    jq -r '.categories[0].maps[-1] | "\(.name) \(.table.summary.scores.imageAUROC) \(.table.summary.scores.pixelAUROC)"' "$report/report.json"
}

# Drops $DROP test images (renamed in, as a finished upload) and waits for their verdicts;
# prints images/s from the first drop to the last verdict.
throughput() {
    local tag="$1" inbox="$WORK/line/inbox" outbox="$WORK/line/outbox" names=() i=0 start
    start="$(now)"
    for source in "${TEST_IMAGES[@]:0:$DROP}"; do
        local name="$tag-$i.png"
        cp "$source" "$inbox/.$name.part"
        mv "$inbox/.$name.part" "$inbox/$name"
        names+=("$name")
        i=$((i + 1))
    done
    for name in "${names[@]}"; do
        until [ -e "$outbox/$name.json" ]; do
            kill -0 "$DAEMON_PID" 2>/dev/null || { echo "rstpmd exited, see $WORK/rstpmd.log" >&2; exit 1; }
            sleep 0.05
        done
    done
    awk -v n="$DROP" -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", n / (b - a) }'
}

trainer_running() { pgrep -P "$DAEMON_PID" >/dev/null 2>&1; }
# CPU seconds (user + system) of a process, from /proc/PID/stat.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

log "learning benchmark: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), epochs $EPOCHS, work $WORK"

# 1. Halves of train/good: even indices train v0001, odd ones arrive later through accepted/.
mkdir -p "$WORK/first" "$WORK/second"
index=0
for image in "$BOTTLE"/train/good/*.png; do
    if [ $((index % 2)) -eq 0 ]; then cp "$image" "$WORK/first/"; else cp "$image" "$WORK/second/"; fi
    index=$((index + 1))
done
FIRST=$(ls "$WORK/first" | wc -l)
SECOND=$(ls "$WORK/second" | wc -l)
mapfile -t TEST_IMAGES < <(ls "$BOTTLE"/test/*/*.png | head -n "$DROP")
[ "${#TEST_IMAGES[@]}" -eq "$DROP" ] || { echo "only ${#TEST_IMAGES[@]} test images for BENCH_DROP=$DROP" >&2; exit 1; }

mkdir -p "$WORK/line/models"
log "training v0001 on $FIRST images"
started="$(now)"
"$BIN/rstpm" train --data "$WORK/first" --out "$WORK/line/models/v0001" --epochs "$EPOCHS" --weights-dir "$WEIGHTS" > "$WORK/train-v0001.log" 2>&1
TRAIN1=$(elapsed "$started" "$(now)")
log "v0001 trained in $TRAIN1 s; evaluating"
read -r MAP1 IMAGE1 PIXEL1 < <(evaluate "$WORK/line/models/v0001" "$WORK/eval-v0001")
log "v0001 ($MAP1): image AUROC $IMAGE1, pixel AUROC $PIXEL1"

# 2. Model store, line with learning, daemon.
ln -s v0001 "$WORK/line/models/current"
for folder in inbox work outbox archive quarantine accepted defects training; do mkdir -p "$WORK/line/$folder"; done
# A few known defects for the gate's AUROC (the eval figures use the whole test set regardless).
for kind in broken_large broken_small contamination; do
    for image in $(ls "$BOTTLE/test/$kind"/*.png | head -n 3); do cp "$image" "$WORK/line/defects/$kind-$(basename "$image")"; done
done
WINDOW="$(date -d '-1 hour' +%H:%M)-$(date -d '+6 hours' +%H:%M)"
cat > "$WORK/rstpmd.yaml" <<EOF
instance: bench
drain_timeout_seconds: 60
lines:
  - name: bottle-learning
    inbox: $WORK/line/inbox
    work: $WORK/line/work
    outbox: $WORK/line/outbox
    archive: $WORK/line/archive
    quarantine: $WORK/line/quarantine
    model: $WORK/line/models
    poll_interval_seconds: 0.5
    settle_interval_seconds: 1
    batch_size: 4
    learning:
      accepted: $WORK/line/accepted
      defects: $WORK/line/defects
      store: $WORK/line/training
      originals: $WORK/first
      trainer: [$BIN/rstpm, train, --data, "{data}", --out, "{out}", --epochs, "$EPOCHS", --weights-dir, $WEIGHTS]
      min_new_images: $SECOND
      window: "$WINDOW"
      trainer_threads: $TRAINER_THREADS
EOF
"$BIN/rstpmd" --check-config --config "$WORK/rstpmd.yaml"
"$BIN/rstpmd" --config "$WORK/rstpmd.yaml" --weights-dir "$WEIGHTS" > "$WORK/rstpmd.log" 2>&1 &
DAEMON_PID=$!
log "rstpmd started (pid $DAEMON_PID), window $WINDOW"

# The first batches pay for loading and first-touch allocations: not part of the idle figure.
WARM=$(throughput warmup)
IDLE=$(throughput idle)
log "idle throughput: $IDLE images/s ($DROP images; first $DROP after the start: $WARM images/s)"

# The inbox flow: the second half lands in accepted/ (renamed in, as a finished upload).
accepted_at="$(now)"
for image in "$WORK/second"/*.png; do
    cp "$image" "$WORK/line/accepted/.$(basename "$image").part"
    mv "$WORK/line/accepted/.$(basename "$image").part" "$WORK/line/accepted/$(basename "$image")"
done
log "$SECOND images put into accepted/; waiting for the trainer"
until trainer_running; do
    kill -0 "$DAEMON_PID" 2>/dev/null || { echo "rstpmd exited, see $WORK/rstpmd.log" >&2; exit 1; }
    sleep 0.2
done
trainer_at="$(now)"
log "trainer running ($(elapsed "$accepted_at" "$trainer_at") s after the drop)"

# The trainer runs at SCHED_IDLE: its CPU share during each burst shows how much it yields.
BUSY=(); SHARES=()
TRAINER_PID=$(pgrep -P "$DAEMON_PID" | head -n 1)
while trainer_running && [ "${#BUSY[@]}" -lt 3 ]; do
    cpu_before=$(cpu_seconds "$TRAINER_PID"); burst_start="$(now)"
    figure=$(throughput "busy${#BUSY[@]}")
    share=$(awk -v c0="$cpu_before" -v c1="$(cpu_seconds "$TRAINER_PID")" -v a="$burst_start" -v b="$(now)" 'BEGIN { printf "%.0f", 100 * (c1 - c0) / (b - a) }')
    if trainer_running; then
        BUSY+=("$figure"); SHARES+=("$share%")
        log "throughput while retraining: $figure images/s (trainer used $share% of a core meanwhile)"
    fi
done

# 3. Gate and swap.
until [ -e "$WORK/line/models/v0002/gate.json" ]; do
    kill -0 "$DAEMON_PID" 2>/dev/null || { echo "rstpmd exited, see $WORK/rstpmd.log" >&2; exit 1; }
    sleep 1
done
RETRAIN=$(elapsed "$trainer_at" "$(now)")
GATE="$WORK/line/models/v0002/gate.json"
DECISION=$(jq -r .decision "$GATE")
log "gate: $DECISION after $RETRAIN s"
if [ "$DECISION" = accepted ]; then
    until [ "$(readlink "$WORK/line/models/current")" = v0002 ]; do sleep 0.5; done
    # Verdicts name the version that made them: the swap is served without a restart.
    AFTER=$(throughput after)
    SERVED=$(jq -r .model.version "$WORK/line/outbox/after-$((DROP - 1)).png.json")
    log "after the swap: $AFTER images/s, last verdict from $SERVED"
fi
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""

log "evaluating v0002"
read -r MAP2 IMAGE2 PIXEL2 < <(evaluate "$WORK/line/models/v0002" "$WORK/eval-v0002")

echo
echo "== continuous learning on mvtec_ad/bottle ($(nproc) cores, epochs $EPOCHS, trainer_threads $TRAINER_THREADS) =="
echo "v0001: $FIRST images (even indices), trained in $TRAIN1 s"
printf "before (v0001, %s map): image AUROC %.4f, pixel AUROC %.4f\n" "$MAP1" "$IMAGE1" "$PIXEL1"
printf "after  (v0002, %s map): image AUROC %.4f, pixel AUROC %.4f\n" "$MAP2" "$IMAGE2" "$PIXEL2"
jq -r '"gate: \(.decision) (\(.reason)); held-out normals \(.held_out_images), defects \(.defect_images), training images \(.training_images)",
       "  candidate: false-reject rate \(.candidate.false_reject_rate), AUROC \(.candidate.auroc), threshold \(.candidate.threshold)",
       "  current (\(.current_version)): false-reject rate \(.current.false_reject_rate), AUROC \(.current.auroc), threshold \(.current.threshold)"' "$GATE"
echo "retrain wall time (trainer start to gate.json): $RETRAIN s"
echo "inspection throughput ($DROP images each): idle $IDLE images/s, while retraining ${BUSY[*]:-none measured} images/s${AFTER:+, after the swap $AFTER images/s}"
echo "trainer CPU during the bursts (SCHED_IDLE, nice 19): ${SHARES[*]:-none} of a core"
echo "work folder: $WORK"
