"""The bound under which the async client seals a payload on the event loop thread."""

from __future__ import annotations

import json
import random

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import open_envelope

from nomyo_native import _core
from nomyo_native._loop_calls import INLINE_SEAL_MAX_BYTES, json_size_bound, seals_inline

CHAT = {"model": "m", "messages": [{"role": "user", "content": "What is the capital of France?"}]}


@pytest.fixture(scope="module")
def server_key() -> tuple[rsa.RSAPrivateKey, _core.ServerPublicKey]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, _core.ServerPublicKey.from_pem(pem)


def _sealed_plaintext_size(payload: object, keys: tuple[rsa.RSAPrivateKey, object]) -> int:
    private, public = keys
    plaintext, _key, _envelope = open_envelope(private, _core.seal(payload, public))
    return len(plaintext)


def _worst_case_strings() -> list[str]:
    return [
        "",
        "plain ascii",
        "\x00\x01\x1f\x7f" * 50,  # control characters: \\u00XX each
        '"\\\\"' * 40,
        "héllo wörld Ελλάδα 漢字" * 10,
        "🔐" * 100,  # beyond the BMP
        "\ud7ff\ue000\uffff" * 30,
    ]


def _random_payload(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [
                rng.choice(_worst_case_strings()),
                rng.randint(-(2**63), 2**64 - 1),
                rng.uniform(-1.0, 1.0) * 1e308,
                5e-324,
                -2.2250738585072014e-308,
                True,
                False,
                None,
            ]
        )
    if roll < 0.75:
        return [_random_payload(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [rng.choice(_worst_case_strings()), rng.randint(-5, 5), 1.5, True, None]
    return {rng.choice(keys): _random_payload(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_the_bound_is_never_below_what_the_core_writes(server_key):
    rng = random.Random(15)
    checked = 0
    for _ in range(400):
        payload = {"model": "m", "extra": _random_payload(rng)}
        bound = json_size_bound(payload)
        if bound is None:
            continue
        checked += 1
        assert bound >= _sealed_plaintext_size(payload, server_key), payload
        assert bound <= INLINE_SEAL_MAX_BYTES
    assert checked >= 100


@pytest.mark.parametrize("text", _worst_case_strings())
def test_the_bound_holds_for_every_kind_of_string(server_key, text):
    payload = {"model": "m", "messages": [{"role": "user", "content": text}]}
    bound = json_size_bound(payload)
    assert bound is not None
    assert bound >= _sealed_plaintext_size(payload, server_key)
    assert bound >= len(json.dumps(payload).encode())  # every character escaped


@pytest.mark.parametrize(
    "value",
    [-2.2250738585072014e-308, -1.7976931348623157e308, -(2**63), 2**64 - 1, True, None],
)
def test_the_bound_holds_for_numbers_and_constants_at_their_longest(server_key, value):
    payload = {"model": "m", "values": [value] * 40}
    bound = json_size_bound(payload)
    assert bound is not None
    assert bound >= _sealed_plaintext_size(payload, server_key)


def test_a_small_chat_is_sealed_inline():
    assert seals_inline(CHAT)
    with_options = {**CHAT, "temperature": 0.2, "max_tokens": 64, "stop": ["\n"], "seed": 7}
    assert seals_inline(with_options)


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "messages": [{"role": "user", "content": "a" * INLINE_SEAL_MAX_BYTES}]},
        {"model": "m", "messages": [{"role": "user", "content": "é" * 2000}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 40},  # many values
        {"model": "m", "n": 2**64},  # an integer of unknown length
        {"model": "m", "messages": [{"role": "user", "content": bytearray(b"x")}]},  # refused
        {"model": "m", "user": type("Name", (str,), {})("a subclass")},
    ],
    ids=["long-ascii", "long-non-ascii", "many-values", "huge-int", "not-json", "str-subclass"],
)
def test_large_or_unusual_payloads_go_to_a_worker(payload):
    assert not seals_inline(payload)


def test_deciding_stops_early_however_large_the_payload(monkeypatch):
    # Thousands of messages: the walk gives up after its first few values instead of visiting
    # every one.
    from nomyo_native import _loop_calls

    visits = 0
    real_add = _loop_calls._Bound.add

    def counting_add(self: object, value: object) -> bool:
        nonlocal visits
        visits += 1
        return real_add(self, value)  # type: ignore[arg-type]

    monkeypatch.setattr(_loop_calls._Bound, "add", counting_add)
    messages = [{"role": "user", "content": "hi"}] * 5000
    assert not seals_inline({"model": "m", "messages": messages})
    assert visits <= _loop_calls._MAX_ENTRIES + 1


class _SpiedBody:
    """A real ``RequestBody`` whose seal records the thread it ran on."""

    def __init__(self, body: _core.RequestBody) -> None:
        self.body = body
        self.size = body.size
        self.threads: list[str] = []

    def seal(self, server_key: _core.ServerPublicKey) -> bytes:
        import threading

        self.threads.append(threading.current_thread().name)
        return self.body.seal(server_key)

    def wipe(self) -> None:
        self.body.wipe()


@pytest.mark.parametrize("content_bytes", [30, INLINE_SEAL_MAX_BYTES])
async def test_the_openai_transport_seals_a_small_body_on_the_loop_thread(
    make_chat, peer, content_bytes
):
    # The SDK's body is sealed where the client seals a payload of its size: with
    # crypto_on_loop=False, on the loop thread at most INLINE_SEAL_MAX_BYTES, else on a worker.
    import threading

    from nomyo_native.openai._exchange import exchange

    chat = {"model": "m", "messages": [{"role": "user", "content": "x" * content_bytes}]}
    body = _SpiedBody(_core.RequestBody(json.dumps(chat).encode()))
    async with make_chat(crypto_on_loop=False) as client:
        answer = await exchange(client.client, body, None, None)  # type: ignore[arg-type]
    assert answer["choices"][0]["message"]["content"] == "echo: " + "x" * content_bytes
    assert peer.received[-1].request == chat
    loop_thread = threading.current_thread().name
    small = body.size <= INLINE_SEAL_MAX_BYTES
    assert small == (content_bytes < INLINE_SEAL_MAX_BYTES)
    assert (body.threads == [loop_thread]) == small
    assert len(body.threads) == 1


@pytest.mark.parametrize("content_bytes", [30, INLINE_SEAL_MAX_BYTES, 300_000])
async def test_the_openai_transport_seals_a_lone_body_on_the_loop_thread(
    make_chat, peer, monkeypatch, content_bytes
):
    # A lone request's body is sealed on the loop thread up to LONE_SEAL_MAX_BYTES (here
    # lowered to 100 kB so that the largest body is above it).
    import threading

    from nomyo_native import _loop_calls
    from nomyo_native.openai._exchange import exchange

    monkeypatch.setattr(_loop_calls, "LONE_SEAL_MAX_BYTES", 100_000)
    chat = {"model": "m", "messages": [{"role": "user", "content": "x" * content_bytes}]}
    body = _SpiedBody(_core.RequestBody(json.dumps(chat).encode()))
    async with make_chat() as client:
        answer = await exchange(client.client, body, None, None)  # type: ignore[arg-type]
    assert answer["choices"][0]["message"]["content"] == "echo: " + "x" * content_bytes
    loop_thread = threading.current_thread().name
    assert (body.threads == [loop_thread]) == (body.size <= 100_000)
    assert len(body.threads) == 1
