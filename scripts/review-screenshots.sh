#!/usr/bin/env bash
# Screenshots of the review station (docs/review.md): the queue and the summary view, taken by
# headless chromium. It builds a demo line in a temporary folder: MVTec AD bottle test images
# (../shared/datasets) as archived inputs, verdicts with made-up scores spread over 14 days,
# heatmaps drawn by `ImagingBench heatmap` (a synthetic anomaly map, not a model's), a model
# store with a gated second version, and a few answers given through the API.
#   scripts/review-screenshots.sh [OUT_DIR]    (default out/review-screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-out/review-screenshots}")"
rstpm=.build/release/rstpm
bench=.build/release/ImagingBench
bottle="${RSTPM_SHARED:-../shared}/datasets/mvtec_ad/bottle/test"
for tool in "$rstpm" "$bench"; do [ -x "$tool" ] || { echo "review-screenshots: $tool missing (swift build -c release)" >&2; exit 2; }; done
for tool in chromium curl jq sha256sum; do command -v "$tool" >/dev/null || { echo "review-screenshots: $tool not installed" >&2; exit 2; }; done
[ -d "$bottle" ] || { echo "review-screenshots: $bottle missing" >&2; exit 2; }

demo="$(mktemp -d)"
station=""
trap '[ -n "$station" ] && kill "$station" 2>/dev/null; rm -rf "$demo"' EXIT
mkdir -p "$out" "$demo"/{inbox,work,outbox,archive,quarantine,accepted,defects,training,state,models/v0001,models/v0002}
echo '{}' > "$demo/models/v0001/manifest.json"
echo '{}' > "$demo/models/v0002/manifest.json"
ln -s v0002 "$demo/models/current"
cat > "$demo/models/v0002/gate.json" <<JSON
{"schema_version": 1, "decision": "accepted", "reason": "false-reject rate 0.0000 <= 0.0125, AUROC 0.9912 >= 0.9790", "line": "bottle-line-1",
 "candidate": {"false_reject_rate": 0.0, "auroc": 0.9912, "threshold": 0.61}, "current": {"false_reject_rate": 0.0125, "auroc": 0.989, "threshold": 0.58},
 "current_version": "v0001", "held_out_images": 80, "defect_images": 12, "training_images": 640,
 "policy": {"false_reject_tolerance": 0, "auroc_tolerance": 0.01}, "decided_at": "$(date -u -d '-3 days' +%Y-%m-%dT02:41:07Z)"}
JSON
cat > "$demo/rstpmd.yaml" <<YAML
instance: demo
lines:
  - name: bottle-line-1
    inbox: $demo/inbox
    work: $demo/work
    outbox: $demo/outbox
    archive: $demo/archive
    quarantine: $demo/quarantine
    model: $demo/models
    learning:
      accepted: $demo/accepted
      defects: $demo/defects
      store: $demo/training
      trainer: [/usr/bin/true, "{data}", "{out}"]
      min_new_images: 50
      window: "22:00-05:00"
YAML

# Verdicts: good images score below the threshold, broken ones mostly above; a few near it.
threshold=0.61
index=0
for kind in good broken_large contamination broken_small; do
    for file in $(ls "$bottle/$kind" | head -n 6); do
        name="bottle-$(printf %04d $index).png"
        cp "$bottle/$kind/$file" "$demo/archive/$name"
        "$bench" heatmap "$demo/archive/$name" "$demo/outbox/$name.heatmap.png" >/dev/null
        case $kind in good) score=$(awk -v i=$index 'BEGIN { printf "%.4f", 0.25 + (i % 6) * 0.065 }') ;;
                      *) score=$(awk -v i=$index 'BEGIN { printf "%.4f", 0.52 + (i % 7) * 0.11 }') ;; esac
        verdict=$(awk -v s=$score -v t=$threshold 'BEGIN { print (s >= t ? "defect" : "ok") }')
        day=$(date -u -d "-$((index % 14)) days" +%Y-%m-%d)
        jq -n --arg name "$name" --arg sha "$(sha256sum "$demo/archive/$name" | cut -d' ' -f1)" --argjson score "$score" \
            --argjson threshold "$threshold" --arg verdict "$verdict" --arg at "${day}T0$((index % 10)):1$((index % 6)):07.$((100 + index))Z" \
            --argjson bytes "$(stat -c %s "$demo/archive/$name")" '{
            schema_version: 1, file: $name, sha256: $sha, size: {bytes: $bytes, width: 900, height: 900},
            received_at: $at, decided_at: $at, line: "bottle-line-1", instance: "demo",
            model: {id: "rstpm-bottle", version: "v0002"}, verdict: $verdict, score: $score,
            threshold: {value: $threshold, source: "model"},
            regions: (if $verdict == "defect" then [{x: 380, y: 300, width: 160, height: 120, area: 12000, peak_score: ($score + 0.2)}] else [] end),
            regions_truncated: false, heatmap: ($name + ".heatmap.png"),
            timings_ms: {decode: 4.5, infer: 410.2, heatmap: 7.3, write: 2.0}, error: null}' > "$demo/outbox/$name.json"
        index=$((index + 1))
    done
done

"$rstpm" review --config "$demo/rstpmd.yaml" --listen 127.0.0.1:0 --state-dir "$demo/state" > "$demo/station.log" 2>&1 &
station=$!
for _ in $(seq 100); do grep -q 'http://' "$demo/station.log" && break; sleep 0.1; done
url="$(grep -o 'http://[^ ]*' "$demo/station.log" | head -n 1)"
[ -n "$url" ] || { echo "review-screenshots: the station did not start:" >&2; cat "$demo/station.log" >&2; exit 1; }

# A few answers, so the summary has agreement figures.
token="$(curl -s "${url}api/session" | jq -r .csrf)"
answer() {
    curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' -H "X-CSRF-Token: $token" \
        -d "{\"answer\": \"$2\", \"request_id\": \"screenshot-${1//[^A-Za-z0-9]/-}\", \"reviewer\": \"anna\", \"label\": \"$3\"}" \
        "${url}api/lines/bottle-line-1/items/$1/answer"
}
for reply in "$(answer bottle-0000.png normal "")" "$(answer bottle-0007.png defect broken)" "$(answer bottle-0005.png normal "")" \
             "$(answer bottle-0015.png normal "")" "$(answer bottle-0012.png skip "")"; do
    [ "$reply" = 200 ] || { echo "review-screenshots: an answer failed with HTTP $reply" >&2; exit 1; }
done

shoot() {
    chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size="$2" \
        --virtual-time-budget=8000 --screenshot="$out/$1" "$3" 2>/dev/null
    echo "review-screenshots: $out/$1"
}
shoot queue.png 1280,1000 "${url}#queue"
shoot queue-tablet.png 820,1180 "${url}#queue"
shoot summary.png 1280,1000 "${url}#summary"
