"""The README's Layout section is the map of the tree (issue 12 item 8): every path it names
exists, and every module of the package and every source file of the core is on it, so the
map cannot silently fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Folders whose every module must be on the map (subfolders included).
COMPLETE = ("python/nomyo_native", "rust/src")
_SOURCE_SUFFIXES = (".py", ".pyi", ".rs")


def _layout_tree(readme: str) -> str:
    section = re.search(r"^## Layout\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README has no '## Layout' section"
    tree = re.search(r"^```text\n(.*?)^```", section.group(1), re.S | re.M)
    assert tree, "README's Layout section has no ```text tree"
    return tree.group(1)


def mapped_paths(tree: str) -> list[str]:
    """The paths a tree names: two spaces of indent per level under a ``folder/`` line, the
    name first on its line and its description after."""
    parents: list[str] = []
    paths = []
    for line in tree.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"odd indent in the Layout tree: {line!r}"
        level = indent // 2
        assert level <= len(parents), f"Layout tree skips a level: {line!r}"
        del parents[level:]
        name = line.split()[0]
        path = "".join(parents) + name
        paths.append(path.rstrip("/"))
        if name.endswith("/"):
            parents.append(name)
    return paths


def test_mapped_paths_reads_nesting():
    tree = "a/     x\n  b.py   y\n  c/     z\n    d.rs w\ne.py   v\n"
    assert mapped_paths(tree) == ["a", "a/b.py", "a/c", "a/c/d.rs", "e.py"]
    with pytest.raises(AssertionError):
        mapped_paths("a/\n   b.py\n")


def _sources(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*"):
        relative = path.relative_to(ROOT)
        if "__pycache__" in relative.parts:
            continue
        if path.is_dir() or path.suffix in _SOURCE_SUFFIXES:
            found.add(relative.as_posix())
    return found


def test_every_path_on_the_map_exists():
    mapped = mapped_paths(_layout_tree((ROOT / "README.md").read_text(encoding="utf-8")))
    missing = [path for path in mapped if not (ROOT / path).exists()]
    assert not missing, f"the README's Layout tree names what does not exist: {missing}"


@pytest.mark.parametrize("folder", COMPLETE)
def test_every_module_is_on_the_map(folder):
    mapped = set(mapped_paths(_layout_tree((ROOT / "README.md").read_text(encoding="utf-8"))))
    unmapped = sorted(_sources(ROOT / folder) - mapped)
    assert not unmapped, f"add to the README's Layout tree, with what they hold: {unmapped}"
