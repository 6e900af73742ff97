#!/usr/bin/env bash
# Builds rstpm_<version>_amd64.deb from the existing release build (swift build -c release; it
# builds nothing itself). The binaries link the Swift runtime statically (Package.swift), so the
# package runs where no Swift toolchain is installed; the other libraries become Depends: through
# dpkg-shlibdeps. The version is what `rstpm --version` reports.
# Usage: scripts/package.sh [OUTPUT_DIRECTORY]   (default: out/package; prints the .deb's path)
set -euo pipefail
cd "$(dirname "$0")/.."
binaries="${RSTPM_BINARIES:-.build/release}"
output="${1:-out/package}"
fail() { echo "package: $*" >&2; exit 1; }

for binary in rstpm rstpmd; do
    [ -x "$binaries/$binary" ] || fail "no $binaries/$binary; build first: swift build -c release"
    if readelf -d "$binaries/$binary" | grep -qE 'NEEDED.*lib(swiftCore|Foundation|dispatch)'; then
        fail "$binaries/$binary needs the toolchain's Swift runtime; rebuild it (Package.swift links -static-stdlib)"
    fi
done
version="$("$binaries/rstpm" --version | cut -d' ' -f1)"
[[ "$version" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || fail "unusable version \"$version\" from rstpm --version"
[ "$("$binaries/rstpmd" --version)" = "$("$binaries/rstpm" --version)" ] || fail "rstpm and rstpmd are from different builds"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Staged as debian/rstpm, where dpkg-shlibdeps expects a package's files.
root="$scratch/debian/rstpm"
mkdir -p "$root/DEBIAN"

install -D -m 0755 "$binaries/rstpm" "$root/usr/bin/rstpm"
install -D -m 0755 "$binaries/rstpmd" "$root/usr/bin/rstpmd"
install -D -m 0644 systemd/rstpmd.service "$root/usr/lib/systemd/system/rstpmd.service"
install -D -m 0644 systemd/rstpm-review.service "$root/usr/lib/systemd/system/rstpm-review.service"
install -D -m 0644 systemd/rstpmd.sysusers.conf "$root/usr/lib/sysusers.d/rstpmd.conf"
install -D -m 0644 systemd/rstpmd.tmpfiles.conf "$root/usr/lib/tmpfiles.d/rstpmd.conf"
install -D -m 0644 etc/rstpmd/rstpmd.yaml "$root/etc/rstpmd/rstpmd.yaml"

doc="$root/usr/share/doc/rstpm"
install -D -m 0644 -t "$doc" README.md docs/rstpmd.md docs/verdict.md docs/review.md docs/accuracy.md packaging/README.Debian

man="$root/usr/share/man"
mkdir -p "$man/man1" "$man/man5" "$man/man8"
"$binaries/rstpm" --experimental-dump-help | jq -r --arg version "$version" -f packaging/man/rstpm.1.jq > "$man/man1/rstpm.1"
sed "s/@VERSION@/$version/" packaging/man/rstpmd.8 > "$man/man8/rstpmd.8"
sed "s/@VERSION@/$version/" packaging/man/rstpmd.yaml.5 > "$man/man5/rstpmd.yaml.5"
gzip -9n "$man/man1/rstpm.1" "$man/man8/rstpmd.8" "$man/man5/rstpmd.yaml.5"

for binary in rstpm rstpmd; do
    install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
    "$binaries/$binary" --generate-completion-script bash > "$root/usr/share/bash-completion/completions/$binary"
    "$binaries/$binary" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_$binary"
    "$binaries/$binary" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/$binary.fish"
done
find "$root/usr/share" -type f -exec chmod 0644 {} +
find "$root" -type d -exec chmod 0755 {} +

printf 'Source: rstpm\n\nPackage: rstpm\nArchitecture: amd64\n' > "$scratch/debian/control"
# (Its warning that binaries "should already be installed in their package's directory" is about
# a debhelper layout this script does not use.)
depends="$(cd "$scratch" && { dpkg-shlibdeps -O -e debian/rstpm/usr/bin/rstpm -e debian/rstpm/usr/bin/rstpmd 2>&1 1>&3 \
    | { grep -v "should already be installed in their package's directory" >&2 || true; }; } 3>&1 | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || fail "dpkg-shlibdeps found no dependencies"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" packaging/debian/control.in > "$root/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
(cd "$root" && find usr -type f -printf '%P\n' | sort | sed 's#^#usr/#' | xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

mkdir -p "$output"
deb="$output/rstpm_${version}_amd64.deb"
# zstd: xz takes minutes over two statically linked binaries; dpkg reads zstd since Debian 12.
dpkg-deb --root-owner-group -Zzstd --build "$root" "$deb" >/dev/null
echo "$deb"
