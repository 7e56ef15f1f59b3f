#!/usr/bin/env bash
# Fetches the two Debian 11 (bullseye) packages that `srprune android apk` needs and Debian 12 no longer has:
#   libandroid-23-java  (the API 23 android.jar that javac compiles the app against)
#   dalvik-exchange     (dx, the dexer; its dx.jar is self-contained: the package's other dependencies, a JRE
#                        and proguard for mainDexClasses, are not needed)
# They are downloaded with `apt-get download` through a private apt
# configuration (its own sources list, state and cache folders under the destination) and unpacked with
# `dpkg -x`: the system's apt sources and installed packages are never changed, and no root is needed.
#
# Destination: $SRPRUNE_ANDROID_SDK, else ${XDG_CACHE_HOME:-~/.cache}/srprune/android-sdk (srprune/apk.py sdk_dir()
# looks in the same place). Idempotent: does nothing when the unpacked tree is complete.
set -euo pipefail

DEST="${SRPRUNE_ANDROID_SDK:-${XDG_CACHE_HOME:-$HOME/.cache}/srprune/android-sdk}"
# deb.debian.org while bullseye is there; archive.debian.org once it has moved (its Release files may be expired)
MIRRORS=("${SRPRUNE_BULLSEYE_MIRROR:-http://deb.debian.org/debian}" http://archive.debian.org/debian)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PACKAGES=(libandroid-23-java dalvik-exchange)
STAMP="$DEST/bullseye.done"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PACKAGES[*]}" ]; then
  exit 0
fi
for cmd in apt-get dpkg; do
  command -v "$cmd" >/dev/null || { echo "error: $cmd not found (a Debian-based system is needed)" >&2; exit 1; }
done
[ -r "$KEYRING" ] || { echo "error: $KEYRING missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

APT="$DEST/apt"
mkdir -p "$APT/etc/apt.conf.d" "$APT/etc/preferences.d" "$APT/etc/sources.list.d" "$APT/etc/trusted.gpg.d" \
  "$APT/state/lists/partial" "$APT/cache/archives/partial" "$DEST/debs"
: >"$APT/state/status"
cat >"$APT/apt.conf" <<EOF
Dir::Etc "$APT/etc";
Dir::Etc::main "/dev/null";
Dir::Etc::sourcelist "$APT/etc/sources.list";
Dir::Etc::sourceparts "$APT/etc/sources.list.d";
Dir::Etc::parts "$APT/etc/apt.conf.d";
Dir::Etc::preferences "$APT/etc/preferences";
Dir::Etc::preferencesparts "$APT/etc/preferences.d";
Dir::Etc::trustedparts "$APT/etc/trusted.gpg.d";
Dir::State "$APT/state";
Dir::State::status "$APT/state/status";
Dir::Cache "$APT/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
EOF
[ "$(id -u)" -eq 0 ] && echo 'APT::Sandbox::User "root";' >>"$APT/apt.conf"  # _apt cannot enter a private cache
export APT_CONFIG="$APT/apt.conf"

echo "fetching ${PACKAGES[*]} from Debian 11 into $DEST" >&2
updated=""
for mirror in "${MIRRORS[@]}"; do
  echo "deb [signed-by=$KEYRING] $mirror bullseye main" >"$APT/etc/sources.list"
  if apt-get -qq --error-on=any -o Acquire::Check-Valid-Until=false update; then updated=1; break; fi
done
[ -n "$updated" ] || { echo "error: cannot reach a Debian 11 mirror (${MIRRORS[*]})" >&2; exit 1; }
cd "$DEST/debs"
rm -f "$DEST"/debs/*.deb
apt-get -qq download "${PACKAGES[@]}"
rm -rf "$DEST/root.tmp"
mkdir -p "$DEST/root.tmp"
for deb in "$DEST"/debs/*.deb; do
  dpkg -x "$deb" "$DEST/root.tmp"
done
rm -rf "$DEST/root"
mv "$DEST/root.tmp" "$DEST/root"
echo "${PACKAGES[*]}" >"$STAMP"
echo "unpacked into $DEST/root: $(ls "$DEST"/debs)" >&2
