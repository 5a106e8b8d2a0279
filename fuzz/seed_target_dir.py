"""Seed another target directory with copies of the main release build's artifacts.

The fuzz crate (its own workspace), the test build of the core (feature `testing`), the
pure-Rust `cargo test` and clippy each have their own target directory, so that none of them
overwrites another's build of the core (a cdylib: its files carry no hash) and alternating
between them recompiles nothing. Their dependencies, though, compile exactly as in the main
build (same profile, same lock file, no extra flags), so their artifacts can be shared: copying
them saves compiling aws-lc again (minutes on two cores). Cargo names every dependency artifact
by a hash of everything that shapes it, so an artifact under the same name is the same
artifact; files of our own crates (no hash) are never copied. Copies, not hard links: cargo
rewrites some files in place (a build script's output when an environment variable it watches
differs, such as the pyo3 config path maturin passes), and a shared inode would make each
build invalidate the other's.

usage: python3 fuzz/seed_target_dir.py MAIN_TARGET/release OTHER_TARGET/release
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Artifacts of the core (lib_core.*, and its fingerprints) and of the fuzz crate itself.
_OWN = ("lib_core", "_core-", "nomyo-native-core-", "nomyo_native_fuzz", "nomyo-native-fuzz")
_SHARED_DIRS = ("deps", "build", ".fingerprint")


def _is_own(relative: Path) -> bool:
    return any(part.startswith(_OWN) for part in relative.parts)


def seed(main: Path, other: Path) -> int:
    copied = 0
    for shared in _SHARED_DIRS:
        root = main / shared
        if not root.is_dir():
            continue
        for directory, _subdirs, files in os.walk(root):
            for name in files:
                source = Path(directory) / name
                relative = source.relative_to(main)
                target = other / relative
                if _is_own(relative) or target.exists() or source.is_symlink():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copy2(source, target)  # keeps the mtime cargo's freshness checks use
                except OSError:
                    continue  # a race with a build: compile instead
                copied += 1
    return copied


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main_dir, other_dir = Path(sys.argv[1]), Path(sys.argv[2])
    if not main_dir.is_dir():
        print(f"no main build at {main_dir}: {other_dir} compiles everything itself")
        return
    print(f"copied {seed(main_dir, other_dir)} dependency artifacts from {main_dir}")


if __name__ == "__main__":
    main()
