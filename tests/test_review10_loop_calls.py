"""Review 10: the count of requests in flight per event loop (``_loop_calls.InFlight``) and
where a lone request's seal and open run, attacked: cancellation at every step of a request,
a coroutine closed half-way (GeneratorExit), failures at each stage, threads each with a loop
of their own, a client used from two loops, and ``crypto_on_loop=False`` against the
placement it restores."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.client.core_threads import spy_on_core_threads
from tests.client.peer import Peer
from tests.pyca_envelope import open_envelope

import nomyo_native as nomyo
from nomyo_native import _loop_calls
from nomyo_native import openai as nomyo_openai
from nomyo_native._loop_calls import INLINE_SEAL_MAX_BYTES, LoopCalls, json_size_bound

USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def peer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def peer(peer_key: rsa.RSAPrivateKey) -> Peer:
    return Peer(key=peer_key)


@pytest.fixture(autouse=True)
def no_count_left() -> Iterator[None]:
    """No test leaves a request counted on a loop it ran (what other modules' tests left on
    their loops, until the collector closes their coroutines, is theirs)."""
    before = dict(_loop_calls._in_flight)
    yield
    gc.collect()
    left = {
        loop: count for loop, count in _loop_calls._in_flight.items() if count > before.get(loop, 0)
    }
    assert not left, f"a request's count was left behind: {left}"


def _chat(transport: httpx2.MockTransport, **options: Any) -> nomyo.SecureChatCompletion:
    options.setdefault("max_retries", 0)
    return nomyo.SecureChatCompletion(
        base_url="https://peer.test", key_size=2048, transport=transport, **options
    )


def _leases(chat: nomyo.SecureChatCompletion) -> int:
    return sum(chat.client._keys._leases.values())


class _Hold:
    """A transport that answers through ``peer`` but, while ``holding``, parks each request
    of ``method`` until released, so that a test can cancel it there."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.holding: str | None = None
        self.parked = asyncio.Event()
        self.transport = httpx2.MockTransport(self.handle)

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == self.holding:
            self.parked.set()
            await asyncio.Event().wait()
        return self.peer.handle(request)


async def test_cancelling_a_request_after_any_number_of_loop_turns_leaves_no_count(
    peer, monkeypatch
):
    # Cancel the request after 0, 1, 2... turns of the loop, until it completes before the
    # cancel: wherever it was (key fetch, keygen on a worker, seal, the exchange, the open),
    # the count, the key lease and the next lone request's placement are as before.
    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with _chat(peer.transport()) as chat:
        finished = False
        turns = 0
        while not finished:
            task = asyncio.ensure_future(chat.create(model="m", messages=USER))
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                finished = True
            except asyncio.CancelledError:
                pass
            await asyncio.sleep(0.002)  # let a worker the request left behind finish
            assert _loop_calls.in_flight_here() == 0, f"count left after {turns} turns"
            assert _leases(chat) == 0, f"key lease left after {turns} turns"
            turns += 1
            assert turns < 2000, "the request never completed"
        assert turns > 3, "the request was cancelled at too few places to mean anything"
        seen["open"].clear()
        await chat.create(model="m", messages=USER)
    assert seen["open"] == {loop_thread}, "a lone request afterwards opens on the loop"


@pytest.mark.parametrize("where", ["GET", "POST"])
async def test_a_request_closed_half_way_by_generator_exit_leaves_no_count(peer, where):
    # A coroutine that is never resumed and then closed (or collected) exits its ``with``
    # through GeneratorExit: the count must still come down.
    hold = _Hold(peer)
    async with _chat(hold.transport) as chat:
        if where == "POST":
            await chat.create(model="m", messages=USER)  # server key and key pair in place
        hold.holding = where
        task = asyncio.ensure_future(chat.create(model="m", messages=USER))
        await hold.parked.wait()
        assert _loop_calls.in_flight_here() == 1
        coro = task.get_coro()
        task.cancel()  # the task lets go; the coroutine is closed directly below too
        with pytest.raises(asyncio.CancelledError):
            await task
        assert coro is not None
        coro.close()
        assert _loop_calls.in_flight_here() == 0
        assert _leases(chat) == 0
        # A coroutine never awaited by a task: stepped by hand to its first suspension, then
        # closed there.
        hold.parked.clear()
        manual = chat.create(model="m", messages=USER)
        stepper = asyncio.ensure_future(_step_until_parked(manual, hold.parked))
        await stepper
        assert _loop_calls.in_flight_here() == 1
        manual.close()
        assert _loop_calls.in_flight_here() == 0
        assert _leases(chat) == 0


async def _step_until_parked(coro: Any, parked: asyncio.Event) -> None:
    """Drive ``coro`` by hand (as a task would) until the transport has parked it."""
    while True:
        future = coro.send(None)
        if parked.is_set():
            return
        if isinstance(future, asyncio.Future):
            await asyncio.wait([future])
        else:
            await asyncio.sleep(0)


@pytest.mark.parametrize(
    "failure",
    ["key fetch", "key fetch raises", "not json", "tampered envelope", "status 500", "wrong id"],
)
async def test_a_request_failing_at_any_stage_leaves_no_count_and_no_lease(peer, failure):
    def handle(request: httpx2.Request) -> httpx2.Response:
        if failure == "key fetch" and request.method == "GET":
            return httpx2.Response(503, text="down")
        if failure == "key fetch raises" and request.method == "GET":
            raise httpx2.ConnectError("refused")
        response = peer.handle(request)
        if request.method != "POST":
            return response
        if failure == "tampered envelope":
            body = bytearray(response.content)
            at = body.index(b'"ciphertext": "') + 20
            body[at] = ord("A") if body[at] != ord("A") else ord("B")
            return httpx2.Response(200, content=bytes(body))
        if failure == "status 500":
            return httpx2.Response(500, json={"detail": "boom"})
        return response

    if failure == "wrong id":
        peer.echo_payload_id = "someone-else"
    payload: list[dict[str, object]] = USER
    if failure == "not json":
        payload = [{"role": "user", "content": float("nan")}]
    async with _chat(httpx2.MockTransport(handle)) as chat:
        with pytest.raises(Exception) as caught:
            await chat.create(model="m", messages=payload)
        assert not isinstance(caught.value, (KeyError, AssertionError)), caught.value
        assert _loop_calls.in_flight_here() == 0
        assert _leases(chat) == 0


def test_threads_each_with_a_loop_count_apart_and_open_on_their_own_loop(peer):
    # Two threads, each running its own loop with a request in flight at the same time: each
    # is alone on its loop, so each opens on its own loop thread, and neither's count reaches
    # the other's loop.
    barrier = threading.Barrier(2, timeout=30)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []
    patch = pytest.MonkeyPatch()
    try:
        seen = spy_on_core_threads(patch)

        def handle(request: httpx2.Request) -> httpx2.Response:
            if request.method == "POST":
                counts[threading.current_thread().name] = _loop_calls.in_flight_here()
                barrier.wait()  # both requests are in flight now
            return peer.handle(request)

        def run() -> None:
            async def one() -> None:
                async with _chat(httpx2.MockTransport(handle), background_keygen=False) as chat:
                    await chat.create(model="m", messages=USER)

            try:
                asyncio.run(one())
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, name=f"loop-{n}") for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        patch.undo()
    assert not errors, errors
    assert counts == {"loop-0": 1, "loop-1": 1}
    assert seen["open"] == {"loop-0", "loop-1"}


def test_one_client_used_from_two_loops_in_turn_counts_on_each(peer):
    seen: dict[str, set[str]]
    patch = pytest.MonkeyPatch()
    try:
        seen = spy_on_core_threads(patch)
        chat = _chat(peer.transport(), background_keygen=False)

        async def one() -> int:
            await chat.create(model="m", messages=USER)
            return _loop_calls.in_flight_here()

        assert asyncio.run(one()) == 0
        assert asyncio.run(one()) == 0
        chat.close()
    finally:
        patch.undo()
    assert seen["open"] == {threading.current_thread().name}


def _random_payload(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 4 or roll < 0.4:
        return rng.choice(
            ["x" * rng.randint(0, 6000), "é" * rng.randint(0, 3000), 2**70, 1.5, None, True, 7]
        )
    if roll < 0.7:
        return [_random_payload(rng, depth + 1) for _ in range(rng.randint(0, 12))]
    return {f"k{n}": _random_payload(rng, depth + 1) for n in range(rng.randint(0, 12))}


@pytest.mark.parametrize("in_flight", [0, 1, 2, 7])
def test_crypto_on_loop_false_places_calls_as_before_whatever_is_in_flight(in_flight):
    # The placement before crypto_on_loop: a payload sealed inline exactly when its JSON is
    # provably small (the default bound), an SDK body when its size is at most the inline
    # bound, every open on a worker.
    rng = random.Random(10 + in_flight)
    payloads = [{"model": "m", "extra": _random_payload(rng)} for _ in range(300)]

    async def decide() -> None:
        off = LoopCalls(False)
        with _counted(in_flight):
            for payload in payloads:
                assert off.seal_payload_here(payload) is (json_size_bound(payload) is not None)
            for size in (0, 1, INLINE_SEAL_MAX_BYTES, INLINE_SEAL_MAX_BYTES + 1, 10**6):
                assert off.seal_bytes_here(size) is (size <= INLINE_SEAL_MAX_BYTES)
                assert off.open_here(size) is False

    asyncio.run(decide())
    inline = sum(json_size_bound(p) is not None for p in payloads)
    assert 0 < inline < len(payloads), "the payloads must fall on both sides of the bound"


class _counted:
    def __init__(self, requests: int) -> None:
        self.spans = [LoopCalls.counted() for _ in range(requests)]

    def __enter__(self) -> None:
        for span in self.spans:
            span.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        for span in self.spans:
            span.__exit__(None, None, None)


@pytest.mark.parametrize("value", [1, 0, "", "true", None, 1.0, [True], type("B", (int,), {})(1)])
def test_crypto_on_loop_refuses_anything_but_a_bool_in_both_clients(value):
    with pytest.raises(TypeError, match="crypto_on_loop"):
        nomyo.SecureChatCompletion(base_url="https://peer.test", crypto_on_loop=value)
    with pytest.raises(TypeError, match="crypto_on_loop"):
        nomyo.SyncSecureChatCompletion(base_url="https://peer.test", crypto_on_loop=value)


async def test_the_openai_adapter_gives_the_size_of_what_it_seals(peer, monkeypatch):
    # send_sealed_request's plaintext_bytes decides where the SDK's body is sealed: it must be
    # the size of the plaintext that reaches the server, and a lone request's body (small or
    # large) is sealed and opened on the loop thread.
    asked: list[tuple[int, bool]] = []
    real = LoopCalls.seal_bytes_here

    def seal_bytes_here(self: LoopCalls, plaintext_bytes: int) -> bool:
        here = real(self, plaintext_bytes)
        asked.append((plaintext_bytes, here))
        return here

    monkeypatch.setattr(LoopCalls, "seal_bytes_here", seal_bytes_here)
    seen = spy_on_core_threads(monkeypatch)
    http_client = nomyo_openai.async_http_client(
        base_url="https://peer.test", transport=peer.transport(), key_size=2048
    )
    sdk = openai.AsyncOpenAI(base_url="https://peer.test/v1", api_key="k", http_client=http_client)
    async with sdk:
        for text in ("hi", "x" * (2 * INLINE_SEAL_MAX_BYTES)):
            reply = await sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": text}]
            )
            assert reply.choices[0].message.content == "echo: " + text
    sent = [len(open_envelope(peer.key, r.raw_body)[0]) for r in peer.received]
    assert [size for size, _ in asked] == sent
    assert [here for _, here in asked] == [True, True]
    assert seen["open"] == {threading.current_thread().name}
