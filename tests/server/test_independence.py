"""The endpoint is an independent implementation: no server module imports the native core or
the client, so client and server really check each other."""

from __future__ import annotations

import ast
from pathlib import Path

import nomyo_native.server

ALLOWED_PREFIXES = ("nomyo_native.server",)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_server_modules_import_only_the_server_package_from_nomyo_native():
    package = Path(nomyo_native.server.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) >= 8
    for source in sources:
        ours = {name for name in _imports(source) if name.split(".")[0] == "nomyo_native"}
        foreign = {name for name in ours if not name.startswith(ALLOWED_PREFIXES)}
        assert not foreign, f"{source.name} imports {sorted(foreign)}"
