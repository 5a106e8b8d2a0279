"""Seed the fuzz build's target directory with hard links to the main release build's artifacts.

The fuzz crate is its own workspace with its own target directory, so that its instrumented
build of the core never overwrites the main build's (the core is a cdylib: its files carry no
hash). Its dependencies, though, compile exactly as in the main build (same profile, same lock
file, no extra flags), so their artifacts can be shared: linking them saves compiling aws-lc
again (minutes on two cores). Cargo names every dependency artifact by a hash of everything
that shapes it, so an artifact under the same name is the same artifact; files of our own
crates (no hash) are never linked.

usage: python3 fuzz/seed_target_dir.py MAIN_TARGET/release FUZZ_TARGET/release
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Artifacts of the core (lib_core.*, and its fingerprints) and of the fuzz crate itself.
_OWN = ("lib_core", "_core-", "nomyo-native-core-", "nomyo_native_fuzz", "nomyo-native-fuzz")
_SHARED_DIRS = ("deps", "build", ".fingerprint")


def _is_own(relative: Path) -> bool:
    return any(part.startswith(_OWN) for part in relative.parts)


def seed(main: Path, fuzz: Path) -> int:
    linked = 0
    for shared in _SHARED_DIRS:
        root = main / shared
        if not root.is_dir():
            continue
        for directory, _subdirs, files in os.walk(root):
            for name in files:
                source = Path(directory) / name
                relative = source.relative_to(main)
                target = fuzz / relative
                if _is_own(relative) or target.exists() or source.is_symlink():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    continue  # another file system, or a race with a build: compile instead
                linked += 1
    return linked


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main_dir, fuzz_dir = Path(sys.argv[1]), Path(sys.argv[2])
    if not main_dir.is_dir():
        print(f"no main build at {main_dir}: the fuzz build compiles everything itself")
        return
    print(f"linked {seed(main_dir, fuzz_dir)} dependency artifacts from {main_dir}")


if __name__ == "__main__":
    main()
