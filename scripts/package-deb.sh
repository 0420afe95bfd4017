#!/usr/bin/env bash
# Builds dist/starling_<version>_amd64.deb from a release build, offline (no apt-get here:
# dpkg-dev, help2man and lintian come from scripts/install-deps.sh).
#
#   scripts/package-deb.sh              # release build (Swift runtime linked statically), package, lintian
#   STARLING_BINARY=path scripts/package-deb.sh    # package an existing release binary instead
#   STARLING_BUILD_PATH=.build-release  # SwiftPM scratch path (default .build)
#   LINTIAN=0                           # skip lintian
#
# Depends is computed from the binary (dpkg-shlibdeps), not written by hand. The Swift runtime and
# Foundation are linked statically (--static-swift-stdlib): the package needs no toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

for tool in dpkg-deb dpkg-shlibdeps help2man gzip strip readelf; do
  command -v "$tool" >/dev/null 2>&1 || { echo "package-deb.sh: $tool is missing (run scripts/install-deps.sh)" >&2; exit 1; }
done

build_path=${STARLING_BUILD_PATH:-.build}
if [ -n "${STARLING_BINARY:-}" ]; then
  binary=$STARLING_BINARY
else
  start=$(date +%s)
  swift build -c release --static-swift-stdlib --product starling --scratch-path "$build_path"
  echo "package-deb.sh: release build took $(( $(date +%s) - start )) s"
  binary=$build_path/release/starling
fi
[ -x "$binary" ] || { echo "package-deb.sh: no binary at $binary" >&2; exit 1; }

version=$("$binary" version | awk '{print $2}')
[ -n "$version" ] || { echo "package-deb.sh: cannot read the version from $binary" >&2; exit 1; }
arch=$(dpkg --print-architecture)
pkg=starling_${version}_${arch}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/$pkg
mkdir -p "$stage/DEBIAN"

# Files
install -D -m 0755 "$binary" "$stage/usr/bin/starling"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/starling"
install -D -m 0644 packaging/starling.toml "$stage/etc/starling/starling.toml"
install -D -m 0644 routes/default.lua "$stage/etc/starling/routes/default.lua"
install -D -m 0644 packaging/starling.service "$stage/lib/systemd/system/starling.service"
doc=$stage/usr/share/doc/starling
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
mkdir -p "$doc/docs" "$doc/examples"
cp -r docs/. "$doc/docs/"
cp -r examples/. "$doc/examples/"
cp routes/default.lua "$doc/examples/default.lua"
install -m 0644 packaging/starling.toml "$doc/examples/starling.toml"
[ -f compose.yaml ] && install -m 0644 compose.yaml "$doc/examples/compose.yaml"
find "$doc" -type d -exec chmod 0755 {} +
find "$doc" -type f -exec chmod 0644 {} +
# The changelog (a native package: changelog.gz; the history is the git log)
cat > "$work/changelog" <<CHANGELOG
starling ($version) unstable; urgency=medium

  * Starling $version, built from $(git rev-parse --short HEAD 2>/dev/null || echo "a source tree").

 -- Starling maintainers <maintainers@starling.invalid>  $(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
CHANGELOG
gzip -9n -c "$work/changelog" > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
# LuaLS annotations for editors
"$binary" api --luals "$stage/usr/share/starling/luals" >/dev/null
chmod 0644 "$stage"/usr/share/starling/luals/*
# The man page, from --help
mkdir -p "$stage/usr/share/man/man1"
# Each subcommand's --help as a section of its own (verbatim, roff-escaped).
{
  echo "[SUBCOMMANDS IN DETAIL]"
  for sub in run config check ctl test parse api subscriber; do
    echo ".SS \"starling $sub\""
    echo ".nf"
    "$binary" help "$sub" 2>&1 | sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
    echo ".fi"
  done
  echo "[FILES]"
  echo "/etc/starling/starling.toml, /etc/starling/routes/default.lua, /lib/systemd/system/starling.service,"
  echo "/var/lib/starling/ (database), /usr/share/doc/starling/ (README, docs/Deploying.md, examples)."
} > "$work/include.h2m"
help2man --no-info --no-discard-stderr --section 1 --name "SIP router that runs Kamailio KEMI Lua routing scripts" \
  --include "$work/include.h2m" --version-string "$version" "$binary" > "$work/starling.1"
gzip -9n -c "$work/starling.1" > "$stage/usr/share/man/man1/starling.1.gz"
chmod 0644 "$stage/usr/share/man/man1/starling.1.gz"
# Lintian's tags for what this package does on purpose
mkdir -p "$stage/usr/share/lintian/overrides"
cat > "$stage/usr/share/lintian/overrides/starling" <<'OVERRIDES'
# The Swift runtime, Foundation and BoringSSL (swift-nio-ssl) are linked into the binary on purpose:
# Debian has no Swift runtime package.
starling: embedded-library *
OVERRIDES
chmod 0644 "$stage/usr/share/lintian/overrides/starling"

# Maintainer scripts and conffiles
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
printf '/etc/starling/routes/default.lua\n/etc/starling/starling.toml\n' > "$stage/DEBIAN/conffiles"

# Every library the binary links must come from a Debian package (the Swift runtime is linked
# statically; a binary built without --static-swift-stdlib is refused here).
for lib in $(readelf -d "$stage/usr/bin/starling" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
  case "$lib" in ld-linux*) continue ;; esac   # the dynamic loader (libc6)
  path=$(ldd "$binary" | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$path" ] && [ "$path" != "not" ] || { echo "package-deb.sh: $lib is not found (ldd)" >&2; exit 1; }
  real=$(readlink -f "$path")
  if ! dpkg -S "$path" >/dev/null 2>&1 && ! dpkg -S "$real" >/dev/null 2>&1 \
     && ! dpkg -S "/usr${path}" >/dev/null 2>&1 && ! dpkg -S "${path#/usr}" >/dev/null 2>&1; then
    echo "package-deb.sh: the binary links $lib ($path), which no Debian package provides;" \
         "build with --static-swift-stdlib (scripts/package-deb.sh does)" >&2
    exit 1
  fi
done

# Depends, from the binary's NEEDED libraries
mkdir -p "$work/shlibs/debian"
printf 'Source: starling\n\nPackage: starling\nArchitecture: any\n' > "$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$stage/usr/bin/starling" 2>"$work/shlibdeps.err") || {
  cat "$work/shlibdeps.err" >&2
  echo "package-deb.sh: dpkg-shlibdeps failed: the binary links a library no Debian package provides (was the Swift runtime linked statically?)" >&2
  exit 1
}
libdeps=${shlibs#shlibs:Depends=}
# dpkg-shlibdeps goes by the versions of the symbols used. The packed relocations of the lld link
# (Package.swift) need glibc 2.36 too: the binary names GLIBC_ABI_DT_RELR, no symbol does.
if readelf -V "$stage/usr/bin/starling" | grep -q 'GLIBC_ABI_DT_RELR'; then
  have=$(printf '%s\n' "$libdeps" | sed -nE 's/.*libc6 \(>= ([0-9.]+)\).*/\1/p')
  if [ -z "$have" ] || dpkg --compare-versions "$have" lt 2.36; then
    libdeps=$(printf '%s\n' "$libdeps" | sed -E 's/libc6( \(>= [0-9.]+\))?/libc6 (>= 2.36)/')
  fi
fi
depends="$libdeps, adduser, ca-certificates"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)

cat > "$stage/DEBIAN/control" <<CONTROL
Package: starling
Version: $version
Architecture: $arch
Maintainer: Starling maintainers <maintainers@starling.invalid>
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Homepage: https://starling.invalid/
Description: SIP router that runs Kamailio KEMI Lua routing scripts
 Starling is a SIP proxy and router written in Swift. Routing logic is Lua
 written for Kamailio's app_lua (the KSR table), run unchanged: stateless and
 stateful forwarding (tm), registrar and usrloc on an embedded SQLite database,
 digest authentication, htable, pike, permissions, nathelper, uac and more, on
 UDP, TCP, TLS and WebSocket. A JSON-RPC control API with Kamailio's method
 names, Prometheus metrics and hot script reload come with it.
 .
 The package runs it as a systemd service (starling.service) with
 /etc/starling/starling.toml, listening on 127.0.0.1:5060 until configured
 otherwise.
CONTROL

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

mkdir -p dist
out=dist/${pkg}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "package-deb.sh: built $out ($(du -h "$out" | cut -f1)); Depends: $depends"

if [ "${LINTIAN:-1}" != "0" ]; then
  command -v lintian >/dev/null 2>&1 || { echo "package-deb.sh: lintian is missing (run scripts/install-deps.sh)" >&2; exit 1; }
  # Errors fail the build; warnings are shown.
  lintian --fail-on error --tag-display-limit 0 "$out"
  echo "package-deb.sh: lintian: no errors"
fi
