"""A large answer's body buffer through the whole client (``_body_buffers``): kept once the answer
is opened, taken again by the next one, and never handed back while the core may still read it,
as when the request was cancelled while its answer was being opened on a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import nomyo_native as nomyo
from nomyo_native import _body_buffers, _core
from nomyo_native._body_buffers import POOLED_MIN_BYTES, BodyBuffer, kept_sizes

from .loopback import ECHO_PREFIX, LoopbackPeer, chat_request

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")

BIG = "large answer " * 10_000  # its envelope is well over POOLED_MIN_BYTES
WAIT = 30.0  # a bound against hanging, never a measure


def _echo(response: dict[str, Any]) -> str:
    content: str = response["choices"][0]["message"]["content"]
    return content


async def test_a_large_answer_s_buffer_is_kept_and_taken_by_the_next(
    loopback: LoopbackPeer, chat_to: Callable[..., Any], free_list: None
) -> None:
    async with chat_to() as chat:
        first = await chat.create(**chat_request(BIG))
        kept = kept_sizes()
        second = await chat.create(**chat_request(BIG + "again"))
    assert _echo(first) == f"{ECHO_PREFIX}{BIG}>"
    assert _echo(second) == f"{ECHO_PREFIX}{BIG}again>"
    assert len(kept) == 1 and kept[0] > POOLED_MIN_BYTES
    # The second answer went into the same buffer (grown by what it had more): a fresh one
    # would be kept beside it.
    assert len(kept_sizes()) == 1 and kept_sizes()[0] >= kept[0]


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_a_cancelled_request_s_buffer_comes_back_only_after_the_core_read_it(
    loopback: LoopbackPeer, free_list: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Opened on a worker whatever else is in flight (a lone request's answer is opened on the
    # loop thread by default, where no cancellation can come between).
    chat = nomyo.SecureChatCompletion(
        base_url=loopback.url, allow_http=True, key_size=2048, timeout=WAIT, crypto_on_loop=False
    )
    await chat.create(**chat_request("warm up: keys and the server key"))
    real_open = _core.open_envelope
    opening, proceed = threading.Event(), threading.Event()
    opened: list[object] = []

    def gated_open(body: Any, keypair: Any) -> Any:
        first = not opening.is_set()
        opening.set()
        if first:
            proceed.wait(WAIT)
        result = real_open(body, keypair)
        opened.append(result[0])
        return result

    kept_at_take: list[list[int]] = []
    real_take = _body_buffers.take

    def take(length: int) -> BodyBuffer:
        kept_at_take.append(kept_sizes())
        return real_take(length)

    monkeypatch.setattr(_core, "open_envelope", gated_open)
    monkeypatch.setattr(_body_buffers, "take", take)
    try:
        cancelled = asyncio.create_task(chat.create(**chat_request(BIG)))
        await _until(opening.is_set)  # its answer is being opened on a worker thread
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert kept_sizes() == []  # the worker still reads it: not back yet
        # Another answer arrives meanwhile: its buffer cannot be the one still being read.
        second = asyncio.create_task(chat.create(**chat_request(BIG + "second")))
        await _until(lambda: len(kept_at_take) == 2)
        proceed.set()
        assert _echo(await second) == f"{ECHO_PREFIX}{BIG}second>"
        await _until(lambda: len(kept_sizes()) == 2)  # both back, once read
    finally:
        proceed.set()
        await chat.aclose()
    assert kept_at_take == [[], []]
    # The cancelled request's answer was opened whole: nothing wrote to its buffer meanwhile.
    echoed = sorted(_echo(payload) for payload in opened)  # type: ignore[arg-type]
    assert echoed == [f"{ECHO_PREFIX}{BIG}>", f"{ECHO_PREFIX}{BIG}second>"]
