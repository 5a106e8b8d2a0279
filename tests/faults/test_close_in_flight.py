"""A client closed (or disposed) while a request of it is in flight: the request ends now with
the connection error, the same on both drivers, not at its timeout (minutes by default)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import nomyo_native as nomyo

from .loopback import STALL

USER = [{"role": "user", "content": "in flight"}]
# Far above how long closing takes, far below the client's timeout: a request still waiting
# after this long was not ended by the close.
PATIENCE = 20.0
TIMEOUT = 300.0


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
