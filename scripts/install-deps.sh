#!/usr/bin/env bash
# Installs the Debian packages rstpm builds and tests against; does nothing when they are there.
set -euo pipefail
packages=(libopenblas-dev libpng-dev libjpeg-dev libsystemd-dev systemd python3-pip zlib1g-dev libdeflate-dev gimp-data jq chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi
