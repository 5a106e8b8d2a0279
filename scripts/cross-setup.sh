#!/usr/bin/env bash
# Toolchains for the cross-built wheels and the emulated test runs, all from Debian's archive:
# - rustc-web/cargo-web 1.96 with its std sources (rust-web-src): rustup can fetch no other
#   targets here, but this compiler builds std for any target with -Zbuild-std. It is linked
#   into rustup as the toolchain `debian-web` (cargo +debian-web ...); rust-web-clippy lints the
#   extra targets with the same compiler (its lints differ from rustup's 1.95).
# - libstd-rust-web-dev:arm64: a prebuilt std for aarch64-unknown-linux-gnu (no build-std).
# - MinGW-w64 (+ nasm for aws-lc's assembly) for x86_64-pc-windows-gnu, wine64 to run it.
# - gcc-aarch64-linux-gnu and qemu-user for the aarch64 test binaries; debootstrap and
#   qemu-user-static (registered with binfmt_misc's F flag, so that it also runs inside a
#   chroot) for the emulated arm64 Debian root the aarch64 wheel is installed into.
# Idempotent and quick when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN=${CROSS_TOOLCHAIN:-debian-web}
PACKAGES=(rustc-web cargo-web rust-web-src rust-web-clippy libstd-rust-web-dev:arm64
  gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 nasm wine64
  gcc-aarch64-linux-gnu qemu-user qemu-user-static binfmt-support debootstrap cmake)

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup: adding the arm64 architecture to dpkg (for Debian's prebuilt arm64 Rust std)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO dpkg --add-architecture arm64
fi
# Runs `apt-get update` before installing whatever is missing (so the arm64 lists come in).
scripts/apt-install.sh "${PACKAGES[@]}"

if ! rustup toolchain list | grep -qx "$TOOLCHAIN"; then
  echo "setup: linking Debian's rustc-web into rustup as the toolchain '$TOOLCHAIN'"
  rustup toolchain link "$TOOLCHAIN" /usr
fi

# arm64 executables inside the chroot run through binfmt_misc; the interpreter must be
# opened at registration (flag F), as the chroot has no x86_64 qemu of its own.
binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
if ! grep -qs '^flags:.*F' "$binfmt/qemu-aarch64"; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if ! grep -qs '^flags:.*F' "$binfmt/qemu-aarch64"; then
  echo "setup: registering qemu-aarch64-static with binfmt_misc (flags F, P)"
  [ ! -e "$binfmt/qemu-aarch64" ] || echo -1 >"$binfmt/qemu-aarch64"
  magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
  mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
  echo ":qemu-aarch64:M::$magic:$mask:/usr/bin/qemu-aarch64-static:FP" >"$binfmt/register"
fi
