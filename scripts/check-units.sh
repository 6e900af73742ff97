#!/usr/bin/env bash
# Checks systemd/rstpmd.service and systemd/rstpm-review.service: `systemd-analyze verify` must
# print nothing and succeed, and the offline security exposure must be at most 2.0. Verify
# resolves ExecStart=, so each unit is checked with /usr/bin/rstpmd and /usr/bin/rstpm replaced
# by built binaries (default .build/release/rstpmd and the rstpm beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$(realpath "${1:-.build/release/rstpmd}")"
limit="${RSTPMD_EXPOSURE_LIMIT:-2.0}"
[ -x "$binary" ] || { echo "check-units: no rstpmd binary at $binary (build it first)" >&2; exit 2; }
command -v systemd-analyze >/dev/null || { echo "check-units: systemd-analyze not installed" >&2; exit 2; }

cli="$(dirname "$binary")/rstpm"
[ -x "$cli" ] || { echo "check-units: no rstpm binary at $cli (build it first)" >&2; exit 2; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for unit in rstpmd.service rstpm-review.service; do
    sed -e "s#/usr/bin/rstpmd #${binary} #g" -e "s#/usr/bin/rstpm #${cli} #g" "systemd/$unit" > "$scratch/$unit"
    if ! output="$(systemd-analyze verify --man=no "$scratch/$unit" 2>&1)" || [ -n "$output" ]; then
        echo "check-units: systemd-analyze verify of $unit failed:" >&2
        echo "$output" >&2
        exit 1
    fi
    echo "verify $unit: OK"

    report="$(systemd-analyze security --offline=true --no-pager "$PWD/systemd/$unit" 2>&1)"
    exposure="$(printf '%s\n' "$report" | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")"
    [ -n "$exposure" ] || { echo "check-units: no exposure level in:" >&2; echo "$report" >&2; exit 1; }
    echo "security $unit: exposure $exposure (limit $limit)"
    awk -v e="$exposure" -v l="$limit" 'BEGIN { exit !(e <= l) }' || { echo "check-units: $unit exposure $exposure above $limit" >&2; printf '%s\n' "$report" | grep '✗' >&2; exit 1; }
done

if command -v systemd-sysusers >/dev/null; then
    output="$(systemd-sysusers --dry-run "$PWD/systemd/rstpmd.sysusers.conf" 2>&1)" || { echo "$output" >&2; exit 1; }
    echo "sysusers: OK"
fi
echo "check-units: OK"
