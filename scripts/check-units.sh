#!/usr/bin/env bash
# Checks systemd/rstpmd.service: `systemd-analyze verify` must print nothing and succeed, and the
# offline security exposure must be at most 2.0. Verify resolves ExecStart=, so the unit is
# checked with /usr/bin/rstpmd replaced by a built binary (default .build/release/rstpmd).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$(realpath "${1:-.build/release/rstpmd}")"
limit="${RSTPMD_EXPOSURE_LIMIT:-2.0}"
[ -x "$binary" ] || { echo "check-units: no rstpmd binary at $binary (build it first)" >&2; exit 2; }
command -v systemd-analyze >/dev/null || { echo "check-units: systemd-analyze not installed" >&2; exit 2; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
sed "s#/usr/bin/rstpmd#${binary}#g" systemd/rstpmd.service > "$scratch/rstpmd.service"
if ! output="$(systemd-analyze verify --man=no "$scratch/rstpmd.service" 2>&1)" || [ -n "$output" ]; then
    echo "check-units: systemd-analyze verify failed:" >&2
    echo "$output" >&2
    exit 1
fi
echo "verify: OK"

report="$(systemd-analyze security --offline=true --no-pager "$PWD/systemd/rstpmd.service" 2>&1)"
exposure="$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for rstpmd.service: \([0-9.]*\).*/\1/p')"
[ -n "$exposure" ] || { echo "check-units: no exposure level in:" >&2; echo "$report" >&2; exit 1; }
echo "security: exposure $exposure (limit $limit)"
awk -v e="$exposure" -v l="$limit" 'BEGIN { exit !(e <= l) }' || { echo "check-units: exposure $exposure above $limit" >&2; printf '%s\n' "$report" | grep '✗' >&2; exit 1; }

if command -v systemd-sysusers >/dev/null; then
    output="$(systemd-sysusers --dry-run "$PWD/systemd/rstpmd.sysusers.conf" 2>&1)" || { echo "$output" >&2; exit 1; }
    echo "sysusers: OK"
fi
echo "check-units: OK"
