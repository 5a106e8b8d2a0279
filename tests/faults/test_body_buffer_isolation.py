"""Reused response body buffers (``_body_buffers``) never mix two answers, through the whole
client: requests cancelled at any point (while their answer arrives, waits for a worker or is
being opened on one) beside others that reuse buffers, and one blocking client shared by
threads. Every answer that completes is exactly its own; the core would refuse a body with
another answer's bytes in it (SecurityError), and the echo names each request."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

import nomyo_native as nomyo
from nomyo_native import _body_buffers, _core
from nomyo_native._body_buffers import POOLED_MIN_BYTES

from .loopback import ECHO_PREFIX, LoopbackPeer, chat_request

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")

WAIT = 60.0  # a bound against hanging, never a measure
# Prompt sizes whose answers are all received into kept buffers, of sizes that fit each other
# (a buffer is taken again for a body from half to twice its size).
SIZES = (70_000, 150_000, 300_000, 600_000)
THREADS = 6


def _prompt(tag: str, size: int) -> str:
    return (tag * (size // len(tag) + 1))[:size]


def _echo(response: dict[str, Any]) -> str:
    content: str = response["choices"][0]["message"]["content"]
    return content


async def test_cancelled_requests_beside_others_never_mix_answers(
    loopback: LoopbackPeer, free_list: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = nomyo.SecureChatCompletion(
        base_url=loopback.url, allow_http=True, key_size=2048, timeout=WAIT
    )
    taken = 0
    real_take = _body_buffers.take

    def counting_take(length: int) -> _body_buffers.BodyBuffer:
        nonlocal taken
        taken += 1
        return real_take(length)

    rnd = random.Random(15)
    completed = cancelled = 0
    try:
        await chat.create(**chat_request("warm up: keys and the server key"))
        monkeypatch.setattr(_body_buffers, "take", counting_take)
        for round_ in range(12):
            prompts = [_prompt(f"<{round_}.{i}>", rnd.choice(SIZES)) for i in range(8)]
            tasks = [asyncio.create_task(chat.create(**chat_request(p))) for p in prompts]
            # Cancelled after a random while: before sending, mid-answer, waiting for a worker
            # or while the core opens the answer on one.
            await asyncio.sleep(rnd.uniform(0.0, 0.1))
            for task in tasks[::2]:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for prompt, result in zip(prompts, results, strict=True):
                if isinstance(result, asyncio.CancelledError):
                    cancelled += 1
                    continue
                assert not isinstance(result, BaseException), repr(result)
                assert _echo(result) == f"{ECHO_PREFIX}{prompt}>"
                completed += 1
        # Then all at once into whatever buffers the cancelled ones gave back (or not).
        prompts = [_prompt(f"<after {i}>", size) for i, size in enumerate(SIZES * 2)]
        results = await asyncio.wait_for(
            asyncio.gather(*(chat.create(**chat_request(p)) for p in prompts)), WAIT
        )
        for prompt, result in zip(prompts, results, strict=True):
            assert _echo(result) == f"{ECHO_PREFIX}{prompt}>"
    finally:
        await chat.aclose()
    assert completed >= 12 * 4  # every other one was never cancelled
    assert taken >= completed + len(prompts)  # every large answer went through the free list
    assert 1 <= len(_body_buffers.kept_sizes()) <= _body_buffers.MAX_KEPT


def test_threads_sharing_a_blocking_client_each_get_their_own_answer(
    loopback: LoopbackPeer, free_list: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = nomyo.SyncSecureChatCompletion(
        base_url=loopback.url, allow_http=True, key_size=2048, timeout=WAIT
    )
    chat.create(**chat_request("warm up: keys and the server key"))
    # Each answer is opened only once every thread has received its own: all bodies are in
    # buffers at once, some kept ones, some fresh (more threads than buffers are kept).
    all_received = threading.Barrier(THREADS, timeout=WAIT)
    real_open = _core.open_envelope

    def open_together(body: Any, keypair: Any) -> Any:
        all_received.wait()
        return real_open(body, keypair)

    monkeypatch.setattr(_core, "open_envelope", open_together)
    wrong: list[str] = []
    failed: list[BaseException] = []

    def ask(thread: int) -> None:
        rnd = random.Random(thread)
        try:
            for i in range(5):
                prompt = _prompt(f"<{thread}.{i}>", rnd.choice(SIZES))
                if _echo(chat.create(**chat_request(prompt))) != f"{ECHO_PREFIX}{prompt}>":
                    wrong.append(prompt[:12])
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)
            all_received.abort()

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    finally:
        chat.close()
    assert failed == [] and wrong == []
    kept = _body_buffers.kept_sizes()
    assert 1 <= len(kept) <= _body_buffers.MAX_KEPT and min(kept) > POOLED_MIN_BYTES
