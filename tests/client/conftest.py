"""Fixtures for the client suite: a scriptable pyca peer behind httpx2.MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_native as nomyo
from nomyo_native import _body_buffers

from .peer import Peer


@pytest.fixture
def free_list(monkeypatch: pytest.MonkeyPatch) -> _body_buffers._FreeList:
    """An empty free list of response body buffers for this test alone (the process's own
    keeps what earlier tests' bodies left)."""
    fresh = _body_buffers._FreeList(_body_buffers._free_list.generation)
    monkeypatch.setattr(_body_buffers, "_free_list", fresh)
    return fresh


@pytest.fixture(scope="session")
def peer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def peer(peer_key: rsa.RSAPrivateKey) -> Peer:
    return Peer(key=peer_key)


class SleepRecorder:
    """Injected in place of asyncio.sleep: records the waits instead of taking them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_chat(peer: Peer, sleeps: SleepRecorder) -> Callable[..., nomyo.SecureChatCompletion]:
    def factory(**kwargs: Any) -> nomyo.SecureChatCompletion:
        kwargs.setdefault("base_url", "https://peer.test")
        kwargs.setdefault("key_size", 2048)
        kwargs.setdefault("transport", peer.transport())
        kwargs.setdefault("sleep", sleeps)
        return nomyo.SecureChatCompletion(**kwargs)

    return factory
