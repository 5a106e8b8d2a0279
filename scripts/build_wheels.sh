#!/usr/bin/env bash
# Build release wheels (abi3, CPython >= 3.11) and the sdist into dist/.
#
#   scripts/build_wheels.sh [TARGET...]     (no TARGET: all of them)
#
# TARGET is one of: manylinux2014-x86_64 manylinux2014-aarch64 musllinux_1_2-x86_64
# win-amd64 macos-x86_64 macos-arm64 sdist.
#
# Each wheel is built into .cache/wheelhouse/TARGET/ (emptied first, so that folder holds
# exactly the wheel just built) and copied to dist/; each target has its own cargo target
# folder under target/wheels/ so that alternating targets and toolchains recompile nothing.
# The Linux and macOS wheels are linked by zig (maturin --zig): against glibc 2.17 for
# manylinux2014, musl for musllinux_1_2, without an Apple SDK for macOS. Targets whose std
# rustup cannot fetch here use Debian's rustc-web (toolchain `debian-web`, see
# scripts/cross-setup.sh) and build std from source (-Z build-std, allowed by RUSTC_BOOTSTRAP=1).
# The Windows wheel built here (x86_64-pc-windows-gnu, MinGW) is the emulation-tested proxy;
# the one that ships is built natively with MSVC by .github/workflows/release.yml.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
DIST=${DIST:-dist}
HOUSE=.cache/wheelhouse
CROSS_TOOLCHAIN=${CROSS_TOOLCHAIN:-debian-web}
# The deployment targets of the macOS wheels (their tags say the same): the oldest macOS each
# architecture's Rust std supports.
MACOS_X86_64_TARGET=10.12
MACOS_ARM64_TARGET=11.0
ALL_TARGETS=(manylinux2014-x86_64 manylinux2014-aarch64 musllinux_1_2-x86_64 win-amd64
  macos-x86_64 macos-arm64 sdist)

# maturin, and zig for --zig (maturin looks for `python3 -m ziglang` on PATH).
export PATH="$PWD/$VENV/bin:$PATH"
export CARGO_TERM_COLOR=never

maturin_build() {
  local name=$1
  shift
  rm -rf "${HOUSE:?}/$name"
  mkdir -p "$HOUSE/$name" "$DIST"
  CARGO_TARGET_DIR="target/wheels/$name" maturin build --release --quiet -o "$HOUSE/$name" "$@"
  cp "$HOUSE/$name"/* "$DIST/"
}

cross() {
  # Debian's compiler with std built from source for the target.
  RUSTUP_TOOLCHAIN=$CROSS_TOOLCHAIN RUSTC_BOOTSTRAP=1 "$@" -Z build-std
}

build_target() {
  case "$1" in
    manylinux2014-x86_64)
      maturin_build "$1" --zig --compatibility manylinux2014 --target x86_64-unknown-linux-gnu ;;
    manylinux2014-aarch64)
      # Debian's prebuilt arm64 std (libstd-rust-web-dev:arm64), linked by zig against glibc 2.17.
      RUSTUP_TOOLCHAIN=$CROSS_TOOLCHAIN maturin_build "$1" --zig --compatibility manylinux2014 \
        --target aarch64-unknown-linux-gnu ;;
    musllinux_1_2-x86_64)
      cross maturin_build "$1" --zig --compatibility musllinux_1_2 --target x86_64-unknown-linux-musl ;;
    win-amd64)
      # MinGW-w64 links; pyo3 links python3.dll by raw-dylib, so no import library is needed.
      cross maturin_build "$1" --target x86_64-pc-windows-gnu ;;
    macos-x86_64)
      MACOSX_DEPLOYMENT_TARGET=$MACOS_X86_64_TARGET cross maturin_build "$1" --zig \
        --target x86_64-apple-darwin ;;
    macos-arm64)
      MACOSX_DEPLOYMENT_TARGET=$MACOS_ARM64_TARGET cross maturin_build "$1" --zig \
        --target aarch64-apple-darwin ;;
    sdist)
      rm -rf "${HOUSE:?}/sdist"
      mkdir -p "$HOUSE/sdist" "$DIST"
      maturin sdist --out "$HOUSE/sdist" >/dev/null
      cp "$HOUSE/sdist"/* "$DIST/" ;;
    *)
      echo "unknown target '$1' (known: ${ALL_TARGETS[*]})" >&2
      return 2 ;;
  esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for target in "${targets[@]}"; do
  start=$SECONDS
  echo "wheels: building $target"
  build_target "$target"
  echo "wheels: $target built in $((SECONDS - start)) s: $(cd "$HOUSE/$target" && ls)"
done
