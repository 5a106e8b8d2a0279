"""Issue 13 item 4: every attribute path of nomyo 0.2.9 resolves after
``import nomyo_native as nomyo``, and each is the same kind of thing.

The paths are enumerated from the reference client itself, by its own venv's interpreter
(tests/reference/driver.py ``paths``): every module of the package, every name each module
defines (or re-exports from the package), every public attribute of the classes it defines and
every enum member. They are resolved in a fresh interpreter that runs nothing but
``import nomyo_native as nomyo``, so a submodule another test happened to import cannot make a
path resolve by accident.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from tests.reference import run_reference

pytestmark = pytest.mark.reference

RESOLVE = textwrap.dedent(
    """
    import inspect, json, sys, types
    import nomyo_native as nomyo

    def kind(value):
        if isinstance(value, types.ModuleType):
            # Our SecureCompletionClient module also stands in for its class.
            return "module"
        if inspect.isclass(value):
            return "class"
        if callable(value):
            return "callable"
        return "value"

    results = {}
    for path in json.load(sys.stdin):
        value = nomyo
        try:
            for part in path.split(".")[1:]:
                value = getattr(value, part)
        except AttributeError as exc:
            results[path] = "missing: " + str(exc)
            continue
        results[path] = kind(value)
    print(json.dumps(results))
    """
)


def _run(script: str, stdin: str = "") -> dict:
    run = subprocess.run(
        [sys.executable, "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def reference_paths() -> dict[str, str]:
    """``path -> kind`` for every attribute path of nomyo 0.2.9, enumerated in a fresh
    interpreter of the reference venv (module state other tests changed cannot add or hide a
    path)."""
    enumerated = run_reference("paths")
    assert enumerated["version"] == "0.2.9"
    return enumerated["paths"]


def test_reference_has_the_paths_the_issue_names():
    # A sanity check of the enumeration itself: the paths users reported are in it.
    paths = reference_paths()
    for expected in (
        "nomyo.SecureMemory.secure_bytearray",
        "nomyo.SecureMemory.SecureMemory",
        "nomyo.SecureMemory.MemoryProtectionLevel.FULL",
        "nomyo.SecureCompletionClient.SecureCompletionClient.send_secure_request",
        "nomyo.nomyo.SecureChatCompletion.create",
    ):
        assert expected in paths
    assert len(paths) > 60


def test_every_reference_attribute_path_resolves_after_import_nomyo_native_as_nomyo():
    paths = reference_paths()
    resolved = _run(RESOLVE, json.dumps(sorted(paths)))
    missing = {path: got for path, got in resolved.items() if got.startswith("missing")}
    assert missing == {}, f"{len(missing)} of {len(paths)} paths do not resolve"
    # Same kind of thing; nomyo.SecureCompletionClient is a module there and here (ours is also
    # callable as the class).
    different = {
        path: (paths[path], resolved[path]) for path in paths if resolved[path] != paths[path]
    }
    assert different == {}


def test_the_compat_memory_handler_works_on_the_core():
    import nomyo_native as nomyo

    handler = nomyo.SecureMemory._get_secure_memory()
    assert handler is nomyo.SecureMemory._get_secure_memory()
    secret = bytearray(b"compat secret")
    level = nomyo.SecureMemory.MemoryProtectionLevel
    info = handler.get_protection_info()
    assert info["protection_level"] in {member.value for member in level}
    locked = handler.lock_memory(secret)
    assert locked is info["has_memory_locking"]
    assert handler.unlock_memory(secret) is locked
    handler.zero_memory(secret)
    assert secret == bytearray(len(secret))
    with handler.create_secure_buffer(bytearray(b"abc")) as buffer:
        assert bytes(buffer.data) == b"abc"
    assert nomyo.SecureMemory.SecureMemory(enable=False).lock_memory(bytearray(b"x")) is False
