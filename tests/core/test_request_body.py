"""``_core.RequestBody``: an SDK's serialized request read straight into locked memory and sealed.

Differential against ``_core.seal`` of the same payload as a dict: for the bytes the openai SDK
writes (``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``) both seal the very same
plaintext; for any other spelling of the same JSON, the plaintext reads back to the same value.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.test_json import json_values, texts
from tests.pyca_envelope import open_envelope

from nomyo_native import _core

TOP_LEVEL_REFUSED = {"stream", "stream_options"}
payloads = st.dictionaries(
    texts.filter(lambda k: k not in TOP_LEVEL_REFUSED), json_values, min_size=1, max_size=6
)


def sdk_bytes(payload: Any) -> bytes:
    """What the openai SDK sends (its own serializer and httpx's agree on this form)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@pytest.fixture(scope="module")
def server_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def server_key(server_private: rsa.RSAPrivateKey) -> _core.ServerPublicKey:
    pem = server_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _core.ServerPublicKey.from_pem(pem)


def sealed_plaintext(private: rsa.RSAPrivateKey, envelope: bytes) -> bytes:
    plaintext, _, _ = open_envelope(private, envelope)
    return plaintext


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=payloads)
def test_sdk_bytes_seal_to_the_same_plaintext_as_the_dict(
    payload: dict[str, Any], server_private: rsa.RSAPrivateKey, server_key: _core.ServerPublicKey
) -> None:
    body = sdk_bytes(payload)
    from_bytes = sealed_plaintext(server_private, _core.RequestBody(body).seal(server_key))
    from_dict = sealed_plaintext(server_private, _core.seal(payload, server_key))
    assert from_bytes == from_dict == body


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=payloads, indent=st.sampled_from([None, 2]))
def test_other_spellings_read_back_to_the_same_value_without_whitespace(
    payload: dict[str, Any],
    indent: int | None,
    server_private: rsa.RSAPrivateKey,
    server_key: _core.ServerPublicKey,
) -> None:
    # json.dumps' default form (old httpx): ", " and ": " separators, non-ASCII as \\u escapes.
    body = json.dumps(payload, indent=indent).encode()
    plaintext = sealed_plaintext(server_private, _core.RequestBody(body).seal(server_key))
    assert json.loads(plaintext) == payload
    # Only whitespace went: strings and numbers are as written.
    assert plaintext == json.dumps(payload, separators=(",", ":")).encode()


def test_the_sdks_bytes_are_read_not_copied_or_changed(server_key: _core.ServerPublicKey) -> None:
    body = sdk_bytes({"model": "m", "messages": [{"role": "user", "content": "Grüße 🌍"}]})
    before = bytes(bytearray(body))
    request = _core.RequestBody(body)
    assert request.size == len(body)
    request.seal(server_key)
    assert body == before


@pytest.mark.parametrize("body", [bytearray(b'{"a":1}'), memoryview(b'{"a":1}'), '{"a":1}', None])
def test_only_immutable_bytes_are_taken(body: Any) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        _core.RequestBody(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model":"m","stream":true}', "stream=true is not supported"),
        (b'{"model":"m","stream":1}', "stream=true is not supported"),
        (b'{"model":"m","str\\u0065am":true}', "stream=true is not supported"),
        (b'{"model":"m","stream":false,"stream":"yes"}', "stream=true is not supported"),
        (b'{"model":"m","stream_options":{"include_usage":true}}', "stream_options"),
    ],
)
def test_streaming_is_refused_before_anything_is_sealed(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _core.RequestBody(body)


@pytest.mark.parametrize("value", [b"false", b"null"])
def test_stream_false_or_null_is_kept_as_the_dict_path_keeps_it(
    value: bytes, server_private: rsa.RSAPrivateKey, server_key: _core.ServerPublicKey
) -> None:
    body = b'{"model":"m","stream":' + value + b"}"
    assert sealed_plaintext(server_private, _core.RequestBody(body).seal(server_key)) == body
    payload = json.loads(body)
    assert sealed_plaintext(server_private, _core.seal(payload, server_key)) == body


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[]", "must be a JSON object"),
        (b"{}", "empty object"),
        (b'{"content":"secret words', "unterminated string"),
        (b'{"content":"secret\\ud800"}', "lone surrogate"),
        (b'{"content":"secret","n":1e400}', "double range"),
        (b'{"content":"secret"} trailing', "unexpected data"),
        (b'{"content":"secret\xff"}', "invalid UTF-8"),
    ],
)
def test_bad_bodies_name_the_rule_and_offset_never_the_content(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        _core.RequestBody(body)
    assert "at byte" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_the_dict_path_refuses_the_same_lone_surrogate_and_infinity(
    server_key: _core.ServerPublicKey,
) -> None:
    for body in (b'{"content":"\\udc00"}', b'{"n":1e400}'):
        with pytest.raises(ValueError):
            _core.RequestBody(body)
        with pytest.raises(ValueError):
            _core.seal(json.loads(body), server_key)


@pytest.mark.parametrize("sign", [b"", b"-"])
def test_integers_past_pythons_digit_limit_are_refused_as_the_dict_path_refuses_them(
    sign: bytes,
) -> None:
    """CPython reads at most 4300 digits into an int (its default int_max_str_digits): json.loads
    refuses a longer integer, so neither the dict path nor the endpoint can read it. The body
    reader copied it through and sealed a request the endpoint cannot parse."""
    limit = 4300
    longest = b'{"n":' + sign + b"9" * limit + b"}"
    assert json.loads(longest)["n"] != 0
    assert _core.RequestBody(longest).size == len(longest)
    for digits in (limit + 1, 100_000):
        body = b'{"n":' + sign + b"9" * digits + b"}"
        with pytest.raises(ValueError, match="4300 digits"):
            json.loads(body)
        with pytest.raises(ValueError, match="digits") as caught:
            _core.RequestBody(body)
        assert "at byte 5" in str(caught.value)
    # A fraction or an exponent makes it a float, which has no digit limit.
    for body in (b'{"n":0.' + b"9" * 5000 + b"}", b'{"n":' + b"1" * 5000 + b"e-4990}"):
        json.loads(body)
        assert _core.RequestBody(body).size == len(body)


def test_nesting_limit_is_the_dict_paths(server_key: _core.ServerPublicKey) -> None:
    def nested(levels: int) -> bytes:
        return b'{"a":' + b"[" * levels + b"]" * levels + b"}"

    limit = _core.MAX_JSON_DEPTH - 1
    _core.RequestBody(nested(limit))
    _core.seal(json.loads(nested(limit)), server_key)
    with pytest.raises(ValueError, match="nesting deeper"):
        _core.RequestBody(nested(limit + 1))
    with pytest.raises(ValueError, match="nesting deeper"):
        _core.seal(json.loads(nested(limit + 1)), server_key)


def test_the_size_cap_counts_the_compacted_plaintext() -> None:
    cap = _core.MAX_PLAINTEXT_BYTES
    filler = "x" * (cap - len(b'{"a":""}'))
    at_cap = sdk_bytes({"a": filler})
    assert _core.RequestBody(at_cap).size == cap
    with pytest.raises(_core.PayloadTooLargeError):
        _core.RequestBody(sdk_bytes({"a": filler + "x"}))
    # Whitespace beyond the cap is no plaintext: it goes, and the body fits.
    padded = b'{"a":' + b" " * 64 + sdk_bytes(filler) + b"}"
    assert _core.RequestBody(padded).size == cap


def test_a_body_seals_once_with_fresh_keys_and_can_be_wiped(
    server_private: rsa.RSAPrivateKey, server_key: _core.ServerPublicKey
) -> None:
    body = sdk_bytes({"model": "m", "messages": []})
    first, second = _core.RequestBody(body), _core.RequestBody(body)
    sealed = [first.seal(server_key), second.seal(server_key)]
    assert first.consumed and "consumed" in repr(first)
    with pytest.raises(ValueError, match="already sealed"):
        first.seal(server_key)
    _, key_one, env_one = open_envelope(server_private, sealed[0])
    _, key_two, env_two = open_envelope(server_private, sealed[1])
    assert key_one != key_two
    assert env_one["encrypted_payload"]["nonce"] != env_two["encrypted_payload"]["nonce"]
    wiped = _core.RequestBody(body)
    wiped.wipe()
    assert wiped.consumed
    with pytest.raises(ValueError, match="already sealed or wiped"):
        wiped.seal(server_key)
