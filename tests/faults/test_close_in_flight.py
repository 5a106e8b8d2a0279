"""A client closed (or disposed) while a request of it is in flight: the request ends now with
the connection error, the same on both drivers, not at its timeout (minutes by default)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_native as nomyo

from .loopback import STALL

USER = [{"role": "user", "content": "in flight"}]
# Far above how long closing takes, far below the client's timeout: a request still waiting
# after this long was not ended by the close.
PATIENCE = 20.0
TIMEOUT = 300.0
_SERVER_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)


def _stalled_peer(loopback: Any) -> Any:
    loopback.then(STALL)
    return loopback


@pytest.mark.parametrize("end", ["close", "dispose"])
def test_closing_a_sync_client_ends_a_request_in_flight_in_another_thread(loopback, end):
    chat = nomyo.SyncSecureChatCompletion(
        base_url=loopback.url, allow_http=True, key_size=2048, max_retries=0, timeout=TIMEOUT
    )
    chat.create(model="m", messages=USER)  # key fetched, pair made, connection pooled
    _stalled_peer(loopback)
    outcome: list[BaseException | None] = []

    def request() -> None:
        try:
            chat.create(model="m", messages=USER)
            outcome.append(None)
        except BaseException as exc:  # the outcome is what is checked
            outcome.append(exc)

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    while len(loopback.posts) < 2 and worker.is_alive():  # the request reached the peer
        worker.join(0.01)
    getattr(chat, end)()
    worker.join(PATIENCE)
    assert not worker.is_alive(), "the request in flight outlived the client's close"
    assert isinstance(outcome[0], nomyo.APIConnectionError), repr(outcome[0])


def test_closing_an_async_client_ends_a_request_in_flight(loopback):
    async def scenario() -> BaseException:
        chat = nomyo.SecureChatCompletion(
            base_url=loopback.url, allow_http=True, key_size=2048, max_retries=0, timeout=TIMEOUT
        )
        await chat.create(model="m", messages=USER)
        _stalled_peer(loopback)
        task = asyncio.create_task(chat.create(model="m", messages=USER))
        while len(loopback.posts) < 2 and not task.done():
            await asyncio.sleep(0.01)
        await chat.aclose()
        done, _ = await asyncio.wait({task}, timeout=PATIENCE)
        assert done, "the request in flight outlived the client's close"
        exc = task.exception()
        assert exc is not None
        return exc

    assert isinstance(asyncio.run(scenario()), nomyo.APIConnectionError)


class _CloseWaitsOnAFuture(httpx2.AsyncBaseTransport):
    """A transport whose close waits on a future only the closing task holds: a task the loop
    alone references (weakly) is collected at that point, and the close never finishes."""

    def __init__(self) -> None:
        self.waiting: weakref.ref[asyncio.Future[None]] | None = None
        self.closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=_SERVER_PEM)

    async def aclose(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting = weakref.ref(future)
        await future
        self.closed = True


def test_close_on_the_running_loop_keeps_its_cleanup_task_until_it_completes():
    transport = _CloseWaitsOnAFuture()

    async def scenario() -> None:
        client = nomyo.SecureCompletionClient(
            "http://127.0.0.1:1", allow_http=True, transport=transport, background_keygen=False
        )
        await client.fetch_server_public_key()  # this loop's pool exists
        client.close()  # from synchronous code on the running loop: closed by a task
        await asyncio.sleep(0)  # the task runs until it waits on its future
        gc.collect()
        waiting = transport.waiting() if transport.waiting is not None else None
        assert waiting is not None, "the cleanup task was collected before it completed"
        waiting.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert transport.closed


def test_close_on_the_running_loop_completes_before_asyncio_run_returns():
    closed: list[bool] = []

    class Recording(httpx2.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(200, content=_SERVER_PEM)

        async def aclose(self) -> None:
            closed.append(True)

    async def scenario() -> None:
        client = nomyo.SecureCompletionClient(
            "http://127.0.0.1:1", allow_http=True, transport=Recording(), background_keygen=False
        )
        await client.fetch_server_public_key()
        client.close()  # the last thing the program does: asyncio.run then shuts the loop down

    asyncio.run(scenario())
    assert closed == [True]
