#!/bin/sh
# RUSTC_WRAPPER for the fuzz build: adds libFuzzer's coverage instrumentation to our own crates
# only (the core and the fuzz targets). Dependencies compile exactly as in the main release
# build, so the fuzz build reuses their artifacts (aws-lc alone takes minutes to compile).
# The fuzz binaries link without LTO: the profile's thin LTO (kept for identical dependency
# artifacts) would cost ~25 s per binary and buy a fuzzer nothing.
rustc="$1"; shift
case " $* " in
  *" --crate-name _core "*|*" --crate-name nomyo_native_fuzz "*) ;;
  # Every binary under fuzz_targets/ (its source path is on the command line), so a new
  # target needs no edit here.
  *" fuzz_targets/"*) set -- "$@" -Clto=off ;;
  *) exec "$rustc" "$@" ;;
esac
exec "$rustc" "$@" --cfg fuzzing \
  -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cforce-frame-pointers
