#!/usr/bin/env bash
# Installs the Debian packages srprune needs (cross toolchains for arm64, qemu
# to run arm64 code here, clang's fuzzer runtime). Installs only what is missing; needs root or sudo.
set -euo pipefail

# command -> Debian package
declare -A NEED=(
  [clang]=clang
  [ld.lld]=lld
  [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
  [qemu-aarch64]=qemu-user
  [javac]=openjdk-17-jdk-headless  # android_app: Java sources compiled against stubs, jni.h for the JNI layer
  # `srprune android apk` (srprune/apk.py): Debian 12's Android build tools
  [aapt]=aapt  # also aapt2
  [zipalign]=zipalign
  [apksigner]=apksigner
  [dexdump]=dexdump
  [llvm-mca-19]=llvm-19  # `srprune latency estimate`: llvm-mca's CPU models (neoverse-n1/v1, cortex-a55)
)

# file -> Debian package (libraries that no command reveals)
declare -A NEED_FILES=(
  [/usr/aarch64-linux-gnu/lib/libc.so.6]=libc6-arm64-cross  # glibc for arm64: c-lib links and qemu runs
  [/usr/share/android-framework-res/framework-res.apk]=android-framework-res  # aapt2 links the APK against it
)

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=""
install() {
  echo "installing Debian packages: $*"
  [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
for file in "${!NEED_FILES[@]}"; do
  [ -e "$file" ] || missing+=("${NEED_FILES[$file]}")
done
# PostgreSQL's server binaries (initdb, pg_ctl): tests/test_search_shared.py starts a throw-away cluster to
# test a search shared through PostgreSQL. Debian keeps them in /usr/lib/postgresql/VERSION/bin.
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] || install "${missing[@]}"

# libFuzzer + ASan/UBSan runtimes of the installed clang (tests/fuzz, scripts/fuzz.py): Debian ships them per
# clang version as libclang-rt-N-dev, so the package name comes from clang itself.
fuzzer_rt=$(clang -print-file-name="libclang_rt.fuzzer-$(uname -m).a")
if [ ! -e "$fuzzer_rt" ]; then
  clang_major=$(clang -dumpversion | cut -d. -f1)
  install "libclang-rt-${clang_major}-dev"
fi

# Debian 11's android.jar (API 23) and dx for `srprune android apk`: not in Debian 12, fetched into the user's cache
# through a private apt configuration (the system's apt sources stay as they are); nothing to do when present.
# Runs as the calling user (only apt-get install above uses sudo), so the files land in that user's cache.
bash "$(dirname "$0")/fetch-android-bullseye.sh" ||
  echo "warning: Debian 11's android.jar and dx not fetched; only \`srprune android apk\` needs them" >&2
