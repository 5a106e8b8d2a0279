"""The client's decrypt path on mutated responses: always the client's ``SecurityError``.

``decrypt_response`` (the nomyo 0.2.9 API) and the full ``create`` path over a real socket get
the same hostile bodies as the core: the caller must only ever see ``SecurityError`` (its
``ResponseFormatError`` subclass for malformed envelopes), never a core exception, a
``KeyError`` from a missing field, or a response with a different plaintext.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nomyo_native as nomyo
from faults.loopback import LoopbackPeer, raw_body

from .envelopes import CALL_TIME_BOUND, REPLY, envelope_bytes, timed

PAYLOAD_ID = REPLY["_metadata"]["payload_id"]
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def client() -> Iterator[nomyo.SecureCompletionClient]:
    client = nomyo.SecureCompletionClient("https://peer.invalid", key_size=2048)
    client.generate_keys()
    yield client
    client.dispose()


@pytest.fixture(scope="module")
def client_key(client: nomyo.SecureCompletionClient) -> rsa.RSAPublicKey:
    assert client.public_key_pem is not None
    key = serialization.load_pem_public_key(client.public_key_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def decrypt(client: nomyo.SecureCompletionClient, body: bytes) -> tuple[Any, BaseException | None]:
    result, exc, elapsed = timed(
        lambda: asyncio.run(client.decrypt_response(body, PAYLOAD_ID, attestation="off"))
    )
    assert elapsed < CALL_TIME_BOUND, f"decrypt_response took {elapsed:.1f} s"
    return result, exc


def test_the_unmutated_response_decrypts(client, client_key) -> None:
    response, exc = decrypt(client, envelope_bytes(client_key, json.dumps(REPLY).encode()))
    assert exc is None, repr(exc)
    assert response["choices"] == REPLY["choices"]
    assert response["_metadata"]["payload_id"] == PAYLOAD_ID


@SETTINGS
@given(data=st.data())
def test_mutated_bytes_are_a_security_error(client, client_key, data: st.DataObject) -> None:
    valid = envelope_bytes(client_key, json.dumps(REPLY).encode())
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    body = bytearray(valid)
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            body[data.draw(st.integers(0, len(body) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        body = body[: data.draw(st.integers(1, len(body) - 1))]
    else:
        at = data.draw(st.integers(0, len(body)))
        body[at:at] = data.draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"[" * 5000, b"\x00"]))
    response, exc = decrypt(client, bytes(body))
    if exc is None:
        # Only a harmless edit (e.g. an unknown field renamed) may pass, and only unchanged.
        assert response["choices"] == REPLY["choices"]
    else:
        assert isinstance(exc, nomyo.SecurityError), repr(exc)


HOSTILE_REPLIES: list[Any] = [
    [],
    "a string",
    42,
    None,
    {"_metadata": "not an object"},
    {"_metadata": ["list"]},
    {**REPLY, "_metadata": {"payload_id": "someone-else"}},
    {**REPLY, "_metadata": {"payload_id": 12345}},
]


@pytest.mark.parametrize("reply", HOSTILE_REPLIES, ids=range(len(HOSTILE_REPLIES)))
def test_authentic_but_hostile_replies_are_a_security_error(client, client_key, reply) -> None:
    _response, exc = decrypt(client, envelope_bytes(client_key, json.dumps(reply).encode()))
    assert isinstance(exc, nomyo.SecurityError), repr(exc)


@pytest.mark.parametrize(
    "plaintext",
    [b"not json", b"[" * 100_000, b'{"a": "\xff"}', b"", b'{"a": 1} {"b": 2}'],
    ids=["not-json", "deep", "bad-utf8", "empty", "two-documents"],
)
def test_authentic_non_json_plaintext_is_a_security_error(client, client_key, plaintext) -> None:
    _response, exc = decrypt(client, envelope_bytes(client_key, plaintext))
    assert isinstance(exc, nomyo.SecurityError), repr(exc)


def test_wrong_length_aes_key_is_the_opaque_error(client, client_key) -> None:
    body = envelope_bytes(client_key, json.dumps(REPLY).encode(), aes_key=os.urandom(16))
    _response, exc = decrypt(client, body)
    assert type(exc) is nomyo.SecurityError, repr(exc)
    assert "Decryption failed" in str(exc)


@pytest.fixture(scope="module")
def peer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_hostile_200_bodies_over_the_wire(peer_key, body: bytes) -> None:
    # The whole create() path over a socket: a 200 whose body is garbage is a SecurityError
    # (or, for an empty body, the nomyo-compatible ValueError), and it is not retried.
    async def run() -> tuple[BaseException | None, int]:
        with LoopbackPeer(peer_key) as peer:
            peer.then(raw_body(body))
            async with nomyo.SecureChatCompletion(
                base_url=peer.url, allow_http=True, key_size=2048, max_retries=2
            ) as chat:
                try:
                    await chat.create(model="m", messages=[{"role": "user", "content": "x"}])
                except Exception as exc:
                    return exc, len(peer.posts)
            return None, len(peer.posts)

    exc, posts = asyncio.run(run())
    assert isinstance(exc, (nomyo.SecurityError, ValueError)), repr(exc)
    assert posts == 1
