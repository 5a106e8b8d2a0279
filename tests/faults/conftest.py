"""Fixtures of the fault-injection suite: a misbehaving loopback peer and clients aimed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_native as nomyo

from .loopback import LoopbackPeer


@pytest.fixture(scope="session")
def loopback_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def loopback(loopback_key: rsa.RSAPrivateKey) -> Iterator[LoopbackPeer]:
    with LoopbackPeer(loopback_key) as peer:
        yield peer


class Sleeps:
    """Stands in for asyncio.sleep: records each retry wait instead of taking it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def chat_to(
    loopback: LoopbackPeer, sleeps: Sleeps
) -> Iterator[Callable[..., nomyo.SecureChatCompletion]]:
    made: list[nomyo.SecureChatCompletion] = []

    def factory(**options: Any) -> nomyo.SecureChatCompletion:
        options.setdefault("base_url", loopback.url)
        options.setdefault("allow_http", True)
        options.setdefault("key_size", 2048)
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", 30.0)
        chat = nomyo.SecureChatCompletion(**options)
        made.append(chat)
        return chat

    yield factory
    for chat in made:
        chat.close()
