"""A decrypted answer the client refuses (not a JSON object, a `_metadata` that is not one, the
echo of another request's payload id) does not outlive the refusal in the traceback's frames:
error reporters that record frame locals (Sentry's default) would send it on."""

from __future__ import annotations

import asyncio
import types
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization

import nomyo_native as nomyo
from nomyo_native import _core, _protocol

from .peer import seal_to

SECRET = "the-decrypted-answer-7d1c0b"
PAYLOAD_ID = "pid-refused"

# Answers the client refuses, each holding SECRET, and what it raises for each.
REFUSED: dict[str, tuple[Any, type[Exception]]] = {
    "a list": ([{"content": SECRET}, SECRET], nomyo.ResponseFormatError),
    "a string": (SECRET * 3, nomyo.ResponseFormatError),
    "metadata not an object": (
        {"choices": [{"message": {"content": SECRET}}], "_metadata": [SECRET]},
        nomyo.ResponseFormatError,
    ),
    "another request's echo": (
        {"choices": [{"message": {"content": SECRET}}], "_metadata": {"payload_id": "other"}},
        nomyo.SecurityError,
    ),
}


@pytest.fixture(scope="module")
def keypair() -> Iterator[_core.ClientKeyPair]:
    kp = _core.ClientKeyPair.generate(2048)
    yield kp
    kp.wipe()


def _public(keypair: _core.ClientKeyPair) -> Any:
    return serialization.load_pem_public_key(keypair.public_key_pem.encode())


def _frames(error: BaseException) -> Iterator[types.FrameType]:
    """The frames of ``error``'s traceback and of every exception chained to it."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next
        pending += [current.__cause__, current.__context__]


def _library_locals_holding_the_secret(error: BaseException) -> list[str]:
    found = []
    for frame in _frames(error):
        if "nomyo_native" not in frame.f_code.co_filename:
            continue
        for name, value in frame.f_locals.items():
            if SECRET in repr(value):
                found.append(f"{frame.f_code.co_name}:{name}")
    return found


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("halves", [False, True], ids=["open_response", "decrypt+build"])
def test_a_refused_answer_is_in_no_frame_of_the_refusal(keypair, kind, halves):
    answer, refusal = REFUSED[kind]
    body = seal_to(_public(keypair), answer)
    with pytest.raises(refusal) as caught:
        if halves:
            opened = _protocol.decrypt_response(body, keypair, 10**9)
            _protocol.build_response(opened, PAYLOAD_ID)
        else:
            _protocol.open_response(body, PAYLOAD_ID, keypair)
    assert SECRET not in str(caught.value)
    assert list(_frames(caught.value)), "the refusal has a traceback to look through"
    assert _library_locals_holding_the_secret(caught.value) == []


def test_an_accepted_answer_is_returned_whole(keypair):
    answer = {"choices": [{"message": {"content": SECRET}}], "_metadata": {"x": 1}}
    opened = _protocol.open_response(seal_to(_public(keypair), answer), PAYLOAD_ID, keypair)
    assert opened["choices"] == answer["choices"]
    assert opened["_metadata"]["x"] == 1 and opened["_metadata"]["payload_id"] == PAYLOAD_ID


@pytest.mark.parametrize("kind", REFUSED)
async def test_a_client_refusing_an_answer_keeps_it_in_no_frame(make_chat, peer, kind):
    answer, refusal = REFUSED[kind]

    def refused(request: httpx2.Request) -> httpx2.Response:
        client_pem = request.headers["x-public-key"]
        client_key = serialization.load_pem_public_key(urllib.parse.unquote(client_pem).encode())
        return httpx2.Response(200, content=seal_to(client_key, answer))

    original = peer.handle

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            original(request)  # counted and checked as any post
            return refused(request)
        return original(request)

    peer.handle = handle  # type: ignore[method-assign]
    async with make_chat(max_retries=0) as chat:
        with pytest.raises(refusal) as caught:
            await chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert SECRET not in str(caught.value)
    assert _library_locals_holding_the_secret(caught.value) == []


# ---- refused by the attestation policy, after the answer was opened ------------------------


def _run(kind: str, call: Any) -> Any:
    return asyncio.run(call) if kind == "async" else call


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_an_answer_the_policy_refuses_is_in_no_frame_of_the_refusal(peer, kind):
    # At tier maximum an answer bound by nothing (no echo, no quote) is refused after it was
    # opened; the answer holds SECRET (its metadata), the request does not.
    peer.echo_payload_id = None
    peer.extra_metadata = {"note": SECRET}
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    chat = cls(base_url="https://peer.test", key_size=2048, transport=peer.transport())
    try:
        with pytest.raises(nomyo.SecurityError, match="maximum") as caught:
            _run(
                kind,
                chat.create(
                    model="m",
                    messages=[{"role": "user", "content": "hi"}],
                    security_tier="maximum",
                    attestation="off",
                ),
            )
    finally:
        chat.dispose()
    assert peer.posts == 1, "refused after the answer came back"
    assert SECRET not in str(caught.value)
    assert _library_locals_holding_the_secret(caught.value) == []


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_decrypt_response_refusing_by_the_policy_keeps_nothing(peer, kind):
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    chat = cls(base_url="https://peer.test", key_size=2048, transport=peer.transport())
    client = chat.client
    try:
        client.generate_keys()
        own_key = serialization.load_pem_public_key(client.public_key_pem.encode())
        answer = {"choices": [{"message": {"content": SECRET}}], "_metadata": {}}
        with pytest.raises(nomyo.SecurityError) as caught:
            _run(
                kind,
                client.decrypt_response(seal_to(own_key, answer), "p-1", attestation="bound"),
            )
    finally:
        chat.dispose()
    assert SECRET not in str(caught.value)
    assert _library_locals_holding_the_secret(caught.value) == []
