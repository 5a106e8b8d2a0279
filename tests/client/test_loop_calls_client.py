"""Where the async client runs the core's seal and open: a lone request's on the event loop
thread (``crypto_on_loop``, the default), concurrent requests' on workers, and the bounds that
keep a lone request's stall short (``nomyo_native._loop_calls``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.parse

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization

import nomyo_native as nomyo
from nomyo_native import _core, _loop_calls, _protocol
from nomyo_native._loop_calls import INLINE_SEAL_MAX_BYTES, LoopCalls

from .core_threads import spy_on_core_threads
from .peer import Peer, seal_to

USER = [{"role": "user", "content": "What is the capital of France?"}]


def _large(size: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": "x" * size}]


async def test_a_lone_request_is_sealed_and_opened_on_the_loop_thread(make_chat, monkeypatch):
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        for messages in (USER, _large(INLINE_SEAL_MAX_BYTES)):
            await chat.create(model="m", messages=messages)
        assert seen["open"] == {loop_thread}
        # An answer above LONE_OPEN_MAX_BYTES (the peer echoes the prompt; the bound lowered
        # here to keep the test small) is opened on a worker.
        monkeypatch.setattr(_loop_calls, "LONE_OPEN_MAX_BYTES", 100_000)
        await chat.create(model="m", messages=_large(200_000))
    assert seen["seal"] == {loop_thread}
    assert seen["open"] - {loop_thread}, "the large answer was opened on the loop thread"
    assert seen["generate"] and loop_thread not in seen["generate"], "keygen never on the loop"


async def test_crypto_on_loop_false_keeps_open_and_large_seals_on_workers(make_chat, monkeypatch):
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat(crypto_on_loop=False) as chat:
        await chat.create(model="m", messages=_large(INLINE_SEAL_MAX_BYTES))
        assert seen["seal"] and loop_thread not in seen["seal"]
        seen["seal"].clear()
        await chat.create(model="m", messages=USER)
    assert seen["seal"] == {loop_thread}, "a small payload is still sealed inline"
    assert seen["open"] and loop_thread not in seen["open"]


@pytest.mark.parametrize("lone_seal_max", [20_000, 60_000])
async def test_a_lone_payload_above_its_bound_is_sealed_on_a_worker(
    make_chat, monkeypatch, lone_seal_max
):
    monkeypatch.setattr(_loop_calls, "LONE_SEAL_MAX_BYTES", lone_seal_max)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        # The bound is a worst case (6 bytes per ASCII character), so a string of a sixth of
        # the bound is inside it, and one of the bound's length is not.
        await chat.create(model="m", messages=_large(lone_seal_max // 6 - 100))
        assert seen["seal"] == {loop_thread}
        seen["seal"].clear()
        await chat.create(model="m", messages=_large(lone_seal_max))
    assert seen["seal"] and loop_thread not in seen["seal"]


@pytest.mark.parametrize("lone_open_max", [1_000, 50_000])
async def test_a_lone_envelope_above_its_bound_is_opened_on_a_worker(
    make_chat, monkeypatch, lone_open_max
):
    monkeypatch.setattr(_loop_calls, "LONE_OPEN_MAX_BYTES", lone_open_max)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        # The peer echoes the prompt: its envelope grows with it.
        await chat.create(model="m", messages=_large(lone_open_max))
        assert seen["open"] and loop_thread not in seen["open"]
        if lone_open_max > 10_000:
            seen["open"].clear()
            await chat.create(model="m", messages=USER)
            assert seen["open"] == {loop_thread}


# A server's answer that is cheap to decrypt and dear to build: many small values, a long run
# of digits (an integer's conversion grows faster than its digits), deep nesting repeated:
# dear by its structure, which the decryption counts.
DEAR_STRUCTURE = {
    "values": [[]] * 100_000,
    "digits": [int("9" * 4000)] * 2,
    "nesting": [[[[[[[[1]]]]]]]] * 1_000,
}
# Strings of nothing but escapes (each decoded apart from the text around it): quotes, control
# characters, backslashes, lone surrogates. Dear by their strings, which a build within the
# budget reads looking at the clock.
DEAR_STRINGS = {
    "quotes": '"' * 300_000,
    "controls": "\x01" * 100_000,
    "backslashes": "\\" * 300_000,
    "surrogates": "\ud800" * 100_000,
}


@pytest.mark.parametrize(
    ("name", "budget"),
    [(name, None) for name in DEAR_STRUCTURE] + [(name, 0.0) for name in DEAR_STRINGS],
)
async def test_a_lone_answer_dear_to_build_is_decrypted_on_the_loop_and_built_on_a_worker(
    make_chat, peer, monkeypatch, name, budget
):
    # Dear by its structure: on a worker whatever the budget. Dear by its strings: on a worker
    # once the build on the loop runs out of time (none here), from the plaintext as it was.
    costly = {"noise": {**DEAR_STRUCTURE, **DEAR_STRINGS}[name]}
    if budget is not None:
        monkeypatch.setattr(_loop_calls, "LONE_BUILD_BUDGET", budget)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER)
        assert seen["open"] == seen["build"] == {loop_thread}, "an ordinary answer, all inline"
        seen["build"].clear()
        peer.extra_metadata = costly
        reply = await chat.create(model="m", messages=USER)
    assert seen["open"] == {loop_thread}, "decrypted inline: RSA and AES-GCM cost no more"
    assert seen["build"] and loop_thread not in seen["build"]
    assert seen["gave_up"] == (set() if budget is None else {loop_thread})
    assert reply["choices"][0]["message"]["content"] == f"echo: {USER[0]['content']}"
    assert reply["_metadata"]["noise"] == costly["noise"]


@pytest.mark.parametrize("name", sorted(DEAR_STRINGS))
async def test_a_lone_answer_dear_by_its_strings_is_built_on_the_loop_within_the_budget(
    make_chat, peer, monkeypatch, name
):
    # With time enough (the budget raised far past what any of them takes), each is built on
    # the loop thread, as the build elsewhere builds it.
    monkeypatch.setattr(_loop_calls, "LONE_BUILD_BUDGET", 60.0)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)
        peer.extra_metadata = {"noise": DEAR_STRINGS[name]}
        reply = await chat.create(model="m", messages=USER)
    assert seen["open"] == seen["build"] == {loop_thread}
    assert not seen["gave_up"]
    assert reply["_metadata"]["noise"] == DEAR_STRINGS[name]


async def test_a_long_escaped_answer_is_built_on_the_loop_at_the_defaults(make_chat, monkeypatch):
    # 1 MiB of escaped non-ASCII text (the peer echoes the prompt, its json escapes every
    # non-ASCII character): past both bounds of the build without a budget, built within it.
    prompt = "héllo wörld Ελλάδα 漢字 🔐 " * 26_000
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        replies = [
            await chat.create(model="m", messages=[{"role": "user", "content": prompt}])
            for _ in range(3)
        ]
    assert all(r["choices"][0]["message"]["content"] == f"echo: {prompt}" for r in replies)
    assert seen["open"] == {loop_thread}
    # Built here (a slow moment of a shared machine may hand one on, at most one of three).
    assert loop_thread in seen["build"]


@pytest.mark.parametrize(("bound", "inline"), [("cost", False), ("bytes", True), (None, True)])
async def test_a_lone_answer_is_built_inline_up_to_both_bounds(
    make_chat, monkeypatch, bound, inline
):
    # The peer echoes the prompt: 1000 commas, ~3.4 KB of plaintext. The cost bound lowered
    # below what that answer needs (its commas are structure) moves its build to a worker; the
    # size bound moves it to a build within the budget, which takes it on the loop all the same
    # (whatever the budget: the reader first looks at the clock after 64 KiB); at their
    # defaults it is built inline.
    prompt = ",".join(["12"] * 1000)
    if bound == "cost":
        monkeypatch.setattr(_loop_calls, "LONE_BUILD_MAX_COST", 900)
    elif bound == "bytes":
        monkeypatch.setattr(_loop_calls, "LONE_BUILD_MAX_BYTES", 2_000)
        monkeypatch.setattr(_loop_calls, "LONE_BUILD_BUDGET", 0.0)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=[{"role": "user", "content": prompt}])
    assert reply["choices"][0]["message"]["content"] == f"echo: {prompt}"
    assert seen["open"] == {loop_thread}
    assert (seen["build"] == {loop_thread}) is inline
    assert seen["build"]


@pytest.mark.parametrize(("unit", "inline"), [("plain text ", True), ("héllo wörld ", False)])
async def test_past_the_byte_bound_a_long_string_is_begun_on_the_loop_if_its_worst_case_fits(
    make_chat, peer, monkeypatch, unit, inline
):
    # One long raw string (no costly byte; a server that does not escape), 64 KiB past the byte
    # bound: its envelope is decrypted inline, and its build, within the budget, takes ASCII
    # text (its worst case ~0.5 ns a byte) and hands text beyond it to a worker before it
    # begins (CPython's UTF-8 decoder: ~3 ns a byte at worst).
    size = _loop_calls.LONE_BUILD_MAX_BYTES + (64 << 10)
    text = unit * (size // len(unit.encode()))
    answer = json.dumps({"choices": [], "text": text}, ensure_ascii=False).encode()
    assert len(answer) * 4 // 3 < _loop_calls.LONE_OPEN_MAX_BYTES - (64 << 10)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)  # the keys, and the server's key
        client_pem = urllib.parse.unquote(peer.received[-1].headers["x-public-key"])
        client_key = serialization.load_pem_public_key(client_pem.encode())
        peer.script.append(httpx2.Response(200, content=seal_to(client_key, answer)))
        seen["build"].clear()
        reply = await chat.create(model="m", messages=USER)
    assert reply["text"] == text
    assert seen["open"] == {loop_thread}
    assert (seen["build"] == {loop_thread}) is inline
    assert (seen["gave_up"] == {loop_thread}) is not inline


async def test_a_build_on_a_worker_is_a_build_at_most_once(make_chat, peer, monkeypatch):
    # A failed build (a server's plaintext that is not JSON) on the worker is the client's
    # ResponseFormatError, as inline; the envelope's plaintext is gone either way.
    built: list[_core.OpenedEnvelope] = []
    real_build = _protocol.build_response

    def build_response(opened: _core.OpenedEnvelope, payload_id: str) -> dict[str, object]:
        built.append(opened)
        return real_build(opened, payload_id)

    monkeypatch.setattr(_protocol, "build_response", build_response)
    monkeypatch.setattr(_loop_calls, "LONE_BUILD_MAX_COST", 0)
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)  # the keys, and the server's key
        client_pem = urllib.parse.unquote(peer.received[-1].headers["x-public-key"])
        client_key = serialization.load_pem_public_key(client_pem.encode())
        peer.script.append(httpx2.Response(200, content=seal_to(client_key, b'{"a": [1,')))
        with pytest.raises(nomyo.ResponseFormatError, match="Invalid encrypted response"):
            await chat.create(model="m", messages=USER)
    assert len(built) == 2
    for opened in built:
        with pytest.raises(ValueError, match="already built"):
            opened.build()


class _Gate:
    """The peer's transport, holding each POST until ``together`` of them have arrived."""

    def __init__(self, peer: Peer, together: int) -> None:
        self.peer = peer
        self.together = together
        self.held = 0
        self.all_here = asyncio.Event()
        self.transport = httpx2.MockTransport(self.handle)

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and not self.all_here.is_set():
            self.held += 1
            if self.held >= self.together:
                self.all_here.set()
            await self.all_here.wait()
        return self.peer.handle(request)


@pytest.mark.parametrize("concurrent", [2, 5])
async def test_concurrent_requests_seal_and_open_on_workers(
    make_chat, peer, monkeypatch, concurrent
):
    gate = _Gate(peer, 1)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat(transport=gate.transport) as chat:
        await chat.create(model="m", messages=USER)  # key pair and server key, alone
        gate.all_here.clear()
        gate.held, gate.together = 0, concurrent
        seen["seal"].clear()
        seen["open"].clear()
        sealed_on: list[str] = []
        opened_on: list[str] = []
        real_seal, real_open = LoopCalls.seal_payload_here, LoopCalls.open_here

        def seal_here(self: LoopCalls, payload: dict[str, object]) -> bool:
            here = real_seal(self, payload)
            sealed_on.append("loop" if here else "worker")
            return here

        def open_here(self: LoopCalls, envelope_bytes: int) -> bool:
            here = real_open(self, envelope_bytes)
            opened_on.append("loop" if here else "worker")
            return here

        monkeypatch.setattr(LoopCalls, "seal_payload_here", seal_here)
        monkeypatch.setattr(LoopCalls, "open_here", open_here)
        messages = [_large(INLINE_SEAL_MAX_BYTES + n) for n in range(concurrent)]
        replies = await asyncio.gather(*(chat.create(model="m", messages=m) for m in messages))
    assert [r["choices"][0]["message"]["content"] for r in replies] == [
        "echo: " + m[0]["content"] for m in messages
    ]
    assert gate.held == concurrent
    # The first request seals before the others start (alone); they seal in its company.
    assert sealed_on == ["loop"] + ["worker"] * (concurrent - 1)
    assert seen["seal"] - {loop_thread}, "no seal ran on a worker"
    # Every request but the last to finish had company when its answer came.
    assert opened_on.count("worker") >= concurrent - 1
    assert seen["open"] and seen["open"] != {loop_thread}


async def test_the_count_of_requests_in_flight_survives_failures_and_cancellation(
    make_chat, peer, monkeypatch
):
    stall = asyncio.Event()
    reached = asyncio.Event()

    async def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and stall.is_set():
            reached.set()
            await asyncio.Event().wait()  # never answers: the caller cancels
        return peer.handle(request)

    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    peer.script.append(httpx2.Response(400, json={"detail": "bad request"}))
    async with make_chat(max_retries=0, transport=httpx2.MockTransport(handle)) as chat:
        with pytest.raises(nomyo.InvalidRequestError):
            await chat.create(model="m", messages=USER)
        assert _loop_calls.in_flight_here() == 0
        stall.set()
        hung = asyncio.ensure_future(chat.create(model="m", messages=USER))
        await reached.wait()
        assert _loop_calls.in_flight_here() == 1
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung
        assert _loop_calls.in_flight_here() == 0
        stall.clear()
        seen["open"].clear()
        await chat.create(model="m", messages=USER)
    assert seen["open"] == {loop_thread}, "a lone request after them opens on the loop again"


async def test_requests_of_two_clients_on_one_loop_count_together(peer, monkeypatch):
    # Two clients (or a chat's siblings for other base URLs) share the loop: a request of one
    # is company for the other's.
    gate = _Gate(peer, 2)
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    options = {"base_url": "https://peer.test", "key_size": 2048, "transport": gate.transport}
    async with (
        nomyo.SecureChatCompletion(**options) as one,
        nomyo.SecureChatCompletion(**options) as other,
    ):
        await asyncio.gather(
            one.create(model="m", messages=_large(INLINE_SEAL_MAX_BYTES)),
            other.create(model="m", messages=_large(INLINE_SEAL_MAX_BYTES)),
        )
    assert seen["seal"] - {loop_thread}, "the second client's seal had company"
    assert seen["open"] != {loop_thread}


@pytest.mark.parametrize("value", ["yes", 1, None, 0.0])
def test_crypto_on_loop_must_be_a_bool(make_chat, value):
    with pytest.raises(TypeError, match="crypto_on_loop"):
        make_chat(crypto_on_loop=value)


def test_the_sync_chat_client_takes_the_option_too():
    # The option is a ClientOptions field, so both chat clients accept it; the blocking client
    # seals and opens on the calling thread whatever it says.
    for value in (True, False):
        chat = nomyo.SyncSecureChatCompletion(
            base_url="https://peer.test", crypto_on_loop=value, background_keygen=False
        )
        chat.close()


@pytest.mark.parametrize(
    ("in_flight", "size", "seal", "open_"),
    [
        (1, 100, True, True),
        (1, INLINE_SEAL_MAX_BYTES + 1, True, True),
        (1, _loop_calls.LONE_SEAL_MAX_BYTES + 1, False, False),
        (2, 100, True, False),
        (2, INLINE_SEAL_MAX_BYTES + 1, False, False),
        (0, 100, True, True),
    ],
)
def test_loop_calls_decisions(in_flight, size, seal, open_):
    async def decide() -> tuple[bool, bool, bool, bool]:
        on, off = LoopCalls(True), LoopCalls(False)
        with contextlib.ExitStack() as requests:
            for _ in range(in_flight):
                requests.enter_context(on.counted())
            assert _loop_calls.in_flight_here() == in_flight
            decisions = (
                on.seal_bytes_here(size),
                on.open_here(size),
                off.seal_bytes_here(size),
                off.open_here(size),
            )
        assert _loop_calls.in_flight_here() == 0
        return decisions

    on_seal, on_open, off_seal, off_open = asyncio.run(decide())
    assert on_seal is seal
    assert on_open is (open_ and size <= _loop_calls.LONE_OPEN_MAX_BYTES)
    assert off_seal is (size <= INLINE_SEAL_MAX_BYTES)
    assert off_open is False
