"""Which threads the core's key generation, seal and open run on, for the async client's tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from nomyo_native import _core, _protocol


def spy_on_core_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The names of the threads the core's keygen, seal, open (an envelope decrypted: by
    ``open_envelope`` or ``decrypt_envelope``) and build (a payload built: by ``open_envelope``,
    ``_protocol.build_response`` or ``build_response_within``) run on, and those a build within
    a deadline gave up on (``gave_up``)."""
    seen: dict[str, set[str]] = {
        "generate": set(),
        "seal": set(),
        "open": set(),
        "build": set(),
        "gave_up": set(),
    }
    real_open = _core.open_envelope
    real = {
        "generate": _core.ClientKeyPair.generate,
        "seal": _core.seal,
        "decrypt": _core.decrypt_envelope,
        "build": _protocol.build_response,
    }

    def spy(name: str, *kinds: str) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            for kind in kinds:
                seen[kind].add(threading.current_thread().name)
            return real[name](*args)

        return wrapper

    real_within = _protocol.build_response_within

    def build_response_within(*args: Any) -> Any:
        answer = real_within(*args)
        seen["build" if answer is not None else "gave_up"].add(threading.current_thread().name)
        return answer

    def open_envelope(*args: Any) -> Any:
        seen["open"].add(threading.current_thread().name)
        seen["build"].add(threading.current_thread().name)
        return real_open(*args)

    monkeypatch.setattr(_core, "seal", spy("seal", "seal"))
    monkeypatch.setattr(_core, "open_envelope", open_envelope)
    monkeypatch.setattr(_core, "decrypt_envelope", spy("decrypt", "open"))
    monkeypatch.setattr(_protocol, "build_response", spy("build", "build"))
    monkeypatch.setattr(_protocol, "build_response_within", build_response_within)

    class SpyKeyPair:
        generate = staticmethod(spy("generate", "generate"))
        load = staticmethod(_core.ClientKeyPair.load)

    monkeypatch.setattr(_core, "ClientKeyPair", SpyKeyPair)
    return seen
