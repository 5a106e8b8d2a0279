"""The core's test probes, ``nomyo_native._core._testing`` (issue 10 finding 12).

They exist only in the test build of the core (``make build-test``, cargo feature ``testing``).
Run from this repository the suite needs that build and fails without it; run against an
installed wheel (the release workflow's portable suite) the modules that need probes skip.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from nomyo_native import _core


def probes_module() -> ModuleType:
    try:
        from nomyo_native._core import _testing
    except ImportError:
        if "site-packages" not in (_core.__file__ or ""):
            raise ImportError(
                f"{_core.__file__} is the release build, without the test probes: "
                "run `make build-test` (or `make test`)"
            ) from None
        pytest.skip("an installed wheel has no test probes", allow_module_level=True)
    assert sys.modules["nomyo_native._core._testing"] is _testing
    return _testing
