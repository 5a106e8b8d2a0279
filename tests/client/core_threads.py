"""Which threads the core's key generation, seal and open run on, for the async client's tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from nomyo_native import _core


def spy_on_core_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The names of the threads the core's keygen, seal and open run on."""
    seen: dict[str, set[str]] = {"generate": set(), "seal": set(), "open": set()}
    real = {
        "generate": _core.ClientKeyPair.generate,
        "seal": _core.seal,
        "open": _core.open_envelope,
    }

    def spy(name: str) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            seen[name].add(threading.current_thread().name)
            return real[name](*args)

        return wrapper

    monkeypatch.setattr(_core, "seal", spy("seal"))
    monkeypatch.setattr(_core, "open_envelope", spy("open"))

    class SpyKeyPair:
        generate = staticmethod(spy("generate"))
        load = staticmethod(_core.ClientKeyPair.load)

    monkeypatch.setattr(_core, "ClientKeyPair", SpyKeyPair)
    return seen
