"""Issue 10 finding 12: the test probes live only in ``_core._testing``, a submodule that the
test build (cargo feature ``testing``) adds and the release module never has."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nomyo_native import _core

from ._probes import probes_module

_testing = probes_module()

REPO = Path(__file__).resolve().parents[2]
STUB = REPO / "tests" / "stubs" / "nomyo_native" / "_core" / "_testing.pyi"
PACKAGE_DIR = REPO / "python" / "nomyo_native"
CORE_STUB = PACKAGE_DIR / "_core.pyi"
# Names the probes had at the top of `_core` before they moved, and their names now.
OLD_PROBES = (
    "_LockedProbe",
    "_probe_overflow",
    "_json_roundtrip",
    "_json_digest",
    "_json_loads",
    "_release_pool",
)
PROBES = ("LockedProbe", "probe_overflow", "json_roundtrip", "json_digest", "json_loads")
# The release module `make build` compiles (and the wheel packs): cargo's output in target/.
RELEASE_LIBRARY = REPO / "target" / "release" / "lib_core.so"


def stub_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):  # an alias: `open = open_envelope`
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):  # an explicit re-export: `import X as X`
            names.update(a.asname for a in node.names if a.asname == a.name)
    return {n for n in names if not n.startswith("__")}


def public_names(module: object) -> set[str]:
    return {n for n in dir(module) if not n.startswith("__")}


def test_finding12_probes_are_only_in_the_testing_submodule() -> None:
    for name in OLD_PROBES:
        assert not hasattr(_core, name), name
    assert _testing.__name__ == "nomyo_native._core._testing"
    assert sys.modules["nomyo_native._core._testing"] is _testing
    assert _core._testing is _testing
    for name in PROBES:
        assert callable(getattr(_testing, name)), name


def test_finding12_stubs_match_the_modules() -> None:
    # Each stub declares exactly what its module has (no probe in _core's stub).
    assert stub_names(STUB) == public_names(_testing)
    assert stub_names(CORE_STUB) == public_names(_core) - {"_testing"}


def test_finding12_release_module_has_no_probes() -> None:
    """The release build (no `testing` feature) has neither the submodule nor a probe."""
    if not RELEASE_LIBRARY.is_file():
        pytest.fail(f"no release build at {RELEASE_LIBRARY}: run `make build` first")
    assert b"probe_overflow" not in RELEASE_LIBRARY.read_bytes()
    assert b"_core._testing" not in RELEASE_LIBRARY.read_bytes()
    code = textwrap.dedent(
        f"""
        import importlib.util, sys, types
        path = {str(RELEASE_LIBRARY)!r}
        # The core imports its exception classes from nomyo_native.errors: give it the package
        # as a bare namespace, so that the installed (test) module is not imported alongside.
        package = types.ModuleType("nomyo_native")
        package.__path__ = [{str(PACKAGE_DIR)!r}]
        sys.modules["nomyo_native"] = package
        spec = importlib.util.spec_from_file_location("nomyo_native._core", path)
        core = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(core)
        names = [n for n in dir(core) if "probe" in n.lower() or "testing" in n]
        names += [n for n in dir(core) if n.startswith(("_json", "_release"))]
        registered = "nomyo_native._core._testing" in sys.modules
        print(repr((names, registered, core.seal.__name__)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names, registered, seal_name = ast.literal_eval(result.stdout.strip())
    assert seal_name == "seal"  # the release module loaded and works
    assert names == []
    assert registered is False
