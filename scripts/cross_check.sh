#!/usr/bin/env bash
# Clippy (-D warnings, all targets) for the platforms other than the host, so that a change
# cannot break Windows, macOS, aarch64 or musl unseen: their cfg code compiles and lints here.
#
#   scripts/cross_check.sh [TARGET...]   (default: all five triples below)
#
# Uses Debian's rustc-web and its clippy (toolchain `debian-web`, scripts/cross-setup.sh), with
# std built from source where no prebuilt one exists; C code (aws-lc) is compiled by MinGW for
# Windows, the aarch64 cross gcc for aarch64 Linux, and zig (cargo-zigbuild) for macOS and musl.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export RUSTUP_TOOLCHAIN=${CROSS_TOOLCHAIN:-debian-web}
export CARGO_TERM_COLOR=never
# With std built from source, clippy 1.96 flags `thread_local!` entries whose initialisers are
# already `const { ... }` (lc_heap.rs); allow that one lint rather than rewrite correct code.
STD_FROM_SOURCE_LINTS=(-A clippy::missing_const_for_thread_local)
ALL=(x86_64-pc-windows-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl
  x86_64-apple-darwin aarch64-apple-darwin)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for target in "${targets[@]}"; do
  start=$SECONDS
  dir="target/cross-check/$target"
  case "$target" in
    x86_64-pc-windows-gnu)
      RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$dir cargo clippy --release --all-targets \
        --target "$target" -Z build-std -- -D warnings "${STD_FROM_SOURCE_LINTS[@]}" ;;
    aarch64-unknown-linux-gnu)
      CARGO_TARGET_DIR=$dir CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        cargo clippy --release --all-targets --target "$target" -- -D warnings ;;
    x86_64-unknown-linux-musl | *-apple-darwin)
      RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$dir cargo-zigbuild clippy --release --all-targets \
        --target "$target" -Z build-std -- -D warnings "${STD_FROM_SOURCE_LINTS[@]}" ;;
    *)
      echo "unknown target $target (known: ${ALL[*]})" >&2
      exit 2 ;;
  esac
  echo "cross-check: $target clean in $((SECONDS - start)) s"
done
