#!/usr/bin/env bash
# Screenshots of an `rstpm eval --report` page in Debian's headless chromium: the top of the page
# (headline, confusion matrix, threshold tuner) and the whole page.
#
#   scripts/report-screenshot.sh REPORT_DIR OUT_PREFIX [THRESHOLD]
#
# writes OUT_PREFIX-top.png (1300x1900) and OUT_PREFIX-page.png (1300 wide, HEIGHT px tall,
# default 7000; set HEIGHT= to change). With THRESHOLD the tuner's slider is moved there first
# (the page reads #threshold=X from its URL).
set -euo pipefail
if (($# < 2)); then
    echo "usage: $0 REPORT_DIR OUT_PREFIX [THRESHOLD]" >&2
    exit 64
fi
report=$1 out=$2 threshold=${3:-}
[ -f "$report/index.html" ] || { echo "$report/index.html: no report there (write one with rstpm eval --report $report)" >&2; exit 66; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium is not installed (Debian package chromium; scripts/install-deps.sh installs it)" >&2; exit 69; }
page="file://$(realpath "$report")/index.html${threshold:+#threshold=$threshold}"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
shot() {
    # --no-sandbox: chromium refuses to run as root otherwise; the page is our own local file.
    timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
        --window-size="$1" --screenshot="$2" "$page" >/dev/null 2>&1
    [ -s "$2" ] || { echo "chromium wrote no screenshot to $2" >&2; exit 1; }
    echo "$2"
}
shot 1300,1900 "$out-top.png"
shot "1300,${HEIGHT:-7000}" "$out-page.png"
