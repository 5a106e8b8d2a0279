"""Fixtures of the fault-injection suite: a misbehaving loopback peer and clients aimed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_native as nomyo
from nomyo_native import _body_buffers

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


class SyncAsAsync:
    """A SyncSecureChatCompletion behind the async interface these tests use, so that each
    test runs on both drivers. Its blocking calls run in the test's loop thread, which only
    waits for them (the peer has a thread of its own)."""

    def __init__(self, sync: nomyo.SyncSecureChatCompletion) -> None:
        self._sync = sync
        self.client = sync.client

    async def create(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._sync.create(*args, **kwargs)

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> SyncAsAsync:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._sync.close()


@pytest.fixture(params=["async", "sync"])
def driver(request: pytest.FixtureRequest) -> str:
    """Which client the fault tests drive: SecureChatCompletion or SyncSecureChatCompletion."""
    return str(request.param)


@pytest.fixture
def chat_to(loopback: LoopbackPeer, sleeps: Sleeps, driver: str) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        options.setdefault("base_url", loopback.url)
        options.setdefault("allow_http", True)
        options.setdefault("key_size", 2048)
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", 30.0)
        chat: Any
        if driver == "sync":
            if options["sleep"] is sleeps:
                options["sleep"] = sleeps.waits.append
            chat = SyncAsAsync(nomyo.SyncSecureChatCompletion(**options))
        else:
            chat = nomyo.SecureChatCompletion(**options)
        made.append(chat)
        return chat

    yield factory
    for chat in made:
        chat.close()


@pytest.fixture
def free_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty free list of body buffers of the test's own (``_body_buffers``)."""
    monkeypatch.setattr(
        _body_buffers, "_free_list", _body_buffers._FreeList(_body_buffers._free_list.generation)
    )
