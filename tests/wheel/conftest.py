"""Load scripts/inspect_wheel.py (a script, not part of the package) as a module for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_inspector() -> ModuleType:
    path = REPO / "scripts/inspect_wheel.py"
    spec = importlib.util.spec_from_file_location("inspect_wheel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["inspect_wheel"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def inspector() -> ModuleType:
    return _load_inspector()
