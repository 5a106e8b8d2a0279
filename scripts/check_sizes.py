#!/usr/bin/env python3
"""Size limits of the Python package (issue 12): no module over 400 lines, no class over 250,
no function or method over 60, unless ALLOWLIST names it with the reason.

    python scripts/check_sizes.py [ROOT]      (default: python/nomyo_native)

A unit's size is the lines from its ``def``/``class`` line (decorators included) to its last
line; a nested function counts inside its parent as well as on its own. Prints one line per
unit over its limit, and per ALLOWLIST entry that no longer excuses anything (so that entries
go away with the code they excused); exit status 1 when there is either, 0 otherwise.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / "python" / "nomyo_native"

LIMITS: Mapping[str, int] = {"module": 400, "class": 250, "function": 60}

# Unit -> why it may exceed its limit. A unit is a module path relative to ROOT
# ("client.py"), which excuses the module and everything in it, or "path::Qualified.name"
# for one class or function.
ALLOWLIST: Mapping[str, str] = {}


@dataclass(frozen=True)
class Unit:
    """A module, class or function, and where it is."""

    path: str  # relative to the root, with forward slashes
    kind: str  # "module", "class" or "function"
    name: str  # qualified name within the module; "" for the module itself
    line: int
    size: int

    @property
    def key(self) -> str:
        return self.path if not self.name else f"{self.path}::{self.name}"

    def describe(self) -> str:
        what = "module" if not self.name else f"{self.kind} {self.name}"
        return f"{self.path}:{self.line}: {what} is {self.size} lines (limit {LIMITS[self.kind]})"


def _units_in(tree: ast.AST, path: str, prefix: str = "") -> Iterator[Unit]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            end = node.end_lineno if node.end_lineno is not None else node.lineno
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield Unit(path, kind, name, start, end - start + 1)
            yield from _units_in(node, path, f"{name}.")
        else:
            # Definitions under if/try/with blocks at any depth belong to the same scope.
            yield from _units_in(node, path, prefix)


def units(root: Path) -> Iterator[Unit]:
    """Every module under ``root`` and every class and function in it."""
    for file in sorted(root.rglob("*.py")):
        path = file.relative_to(root).as_posix()
        source = file.read_text(encoding="utf-8")
        yield Unit(path, "module", "", 1, len(source.splitlines()))
        yield from _units_in(ast.parse(source, filename=str(file)), path)


def _excused_by(unit: Unit, allowlist: Mapping[str, str]) -> str | None:
    if unit.key in allowlist:
        return unit.key
    return unit.path if unit.path in allowlist else None


def check(root: Path, allowlist: Mapping[str, str] = ALLOWLIST) -> list[str]:
    """One message per unit over its limit and not excused, and per unused allowlist entry."""
    problems: list[str] = []
    used: set[str] = set()
    for unit in units(root):
        if unit.size <= LIMITS[unit.kind]:
            continue
        entry = _excused_by(unit, allowlist)
        if entry is None:
            problems.append(unit.describe())
        else:
            used.add(entry)
    for entry in sorted(set(allowlist) - used):
        problems.append(f"{entry}: allowlisted ({allowlist[entry]}) but within the limits now")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else DEFAULT_ROOT
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        limits = ", ".join(f"{kind} {lines}" for kind, lines in LIMITS.items())
        print(
            f"check_sizes: {len(problems)} problem(s) (limits in lines: {limits}); split by "
            "concern, or add an ALLOWLIST entry with its reason in scripts/check_sizes.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
