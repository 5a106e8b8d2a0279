"""``_core.open`` on mutated real envelopes: every case a typed error, quickly, leaking nothing.

The envelopes are real (pyca/cryptography seals a chat completion to our key); hypothesis then
flips bits, truncates, deletes or retypes fields, inserts invalid UTF-8, swaps in huge numbers,
deep nesting and wrong-length keys. Each call must end, within a hang guard, either in a
``CoreError`` subclass or (for a harmless edit such as renaming an unknown field) in exactly the
original plaintext: never another exception, a panic, a crash or a different plaintext. Error
paths must release every locked buffer, and thousands of them must not grow the process.
"""

from __future__ import annotations

import array
import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nomyo_native import _core

from .envelopes import (
    CALL_TIME_BOUND,
    REPLY,
    b64,
    envelope_bytes,
    envelope_dict,
    rss_bytes,
    timed,
)

FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REQUIRED = (
    ("version",),
    ("algorithm",),
    ("encrypted_payload",),
    ("encrypted_payload", "ciphertext"),
    ("encrypted_payload", "nonce"),
    ("encrypted_payload", "tag"),
    ("encrypted_aes_key",),
)
OPTIONAL = (("key_algorithm",), ("payload_algorithm",), ("processed_at",))
PLAINTEXT = json.dumps(REPLY).encode()


@pytest.fixture(scope="module")
def valid(client_public: rsa.RSAPublicKey) -> bytes:
    return envelope_bytes(client_public, PLAINTEXT)


def open_outcome(body: Any, keypair: _core.ClientKeyPair) -> tuple[Any, BaseException | None]:
    result, exc, elapsed = timed(lambda: _core.open(body, keypair))
    assert elapsed < CALL_TIME_BOUND, f"open took {elapsed:.1f} s"
    return result, exc


def assert_typed_or_original(result: Any, exc: BaseException | None) -> None:
    if exc is None:
        assert result[0] == REPLY, "a mutated envelope opened to a different plaintext"
    else:
        assert isinstance(exc, _core.CoreError), f"untyped error: {exc!r}"


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        doc = doc[name]
    doc[path[-1]] = value


def _delete(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    for name in path[:-1]:
        doc = doc[name]
    del doc[path[-1]]


def test_the_unmutated_envelope_opens(valid: bytes, keypair: _core.ClientKeyPair) -> None:
    # The baseline every mutation departs from really is valid.
    payload, processed_at, algorithm = _core.open(valid, keypair)
    assert payload == REPLY
    assert processed_at == 1700000000.25
    assert algorithm == "hybrid-aes256-rsa4096"


@FAST
@given(data=st.data())
def test_bit_flips(valid: bytes, keypair: _core.ClientKeyPair, data: st.DataObject) -> None:
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 7)), min_size=1, max_size=8
        )
    )
    body = bytearray(valid)
    for position, bit in flips:
        body[position] ^= 1 << bit
    assert_typed_or_original(*open_outcome(bytes(body), keypair))


@FAST
@given(data=st.data())
def test_truncation(valid: bytes, keypair: _core.ClientKeyPair, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(valid) - 1))
    _result, exc = open_outcome(valid[:cut], keypair)
    assert isinstance(exc, _core.EnvelopeError), repr(exc)


INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]


@FAST
@given(data=st.data())
def test_invalid_utf8_inserted(
    valid: bytes, keypair: _core.ClientKeyPair, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(valid)))
    junk = data.draw(st.sampled_from(INVALID_UTF8))
    _result, exc = open_outcome(valid[:at] + junk + valid[at:], keypair)
    assert isinstance(exc, _core.EnvelopeError), repr(exc)


HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.just(10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@FAST
@given(path=st.sampled_from(REQUIRED), value=HOSTILE_VALUES)
def test_required_field_retyped(
    client_public: rsa.RSAPublicKey,
    keypair: _core.ClientKeyPair,
    path: tuple[str, ...],
    value: Any,
) -> None:
    doc = envelope_dict(client_public, PLAINTEXT)
    original = doc[path[0]] if len(path) == 1 else doc[path[0]][path[1]]
    assume(value != original)
    _set(doc, path, value)
    _result, exc = open_outcome(json.dumps(doc).encode(), keypair)
    # Any value in place of a required field is a format error or, for a well-formed string of
    # the right length, a crypto error: never a success.
    assert isinstance(exc, (_core.EnvelopeError, _core.CryptoError)), repr(exc)


@pytest.mark.parametrize("path", REQUIRED, ids=".".join)
def test_required_field_deleted_is_named(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair, path: tuple[str, ...]
) -> None:
    doc = envelope_dict(client_public, PLAINTEXT)
    _delete(doc, path)
    _result, exc = open_outcome(json.dumps(doc).encode(), keypair)
    assert isinstance(exc, _core.EnvelopeError), repr(exc)
    assert path[-1] in str(exc)


@FAST
@given(path=st.sampled_from(OPTIONAL), value=HOSTILE_VALUES, delete=st.booleans())
def test_optional_field_mutated(
    client_public: rsa.RSAPublicKey,
    keypair: _core.ClientKeyPair,
    path: tuple[str, ...],
    value: Any,
    delete: bool,
) -> None:
    doc = envelope_dict(client_public, PLAINTEXT)
    if delete:
        _delete(doc, path)
    else:
        _set(doc, path, value)
    assert_typed_or_original(*open_outcome(json.dumps(doc).encode(), keypair))


@pytest.mark.parametrize(
    "literal",
    ["1e400", "-1e400", "123456789012345678901234567890", "1" + "0" * 5000, "-0", "1E-400"],
)
def test_huge_numbers_in_processed_at(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair, literal: str
) -> None:
    body = envelope_bytes(client_public, PLAINTEXT).replace(b"1700000000.25", literal.encode())
    result, exc = open_outcome(body, keypair)
    assert_typed_or_original(result, exc)


@pytest.mark.parametrize("depth", [129, 10_000, 1_000_000])
def test_deep_nesting_in_the_envelope(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair, depth: int
) -> None:
    nested = b"[" * depth + b"]" * depth
    body = envelope_bytes(client_public, PLAINTEXT)[:-1] + b', "x": ' + nested + b"}"
    _result, exc = open_outcome(body, keypair)
    assert isinstance(exc, _core.EnvelopeError), repr(exc)
    # And nesting that never closes.
    _result, exc = open_outcome(b"[" * depth, keypair)
    assert isinstance(exc, _core.EnvelopeError), repr(exc)


@FAST
@given(
    field=st.sampled_from(
        [
            ("encrypted_payload", "nonce", 12),
            ("encrypted_payload", "tag", 16),
            ("encrypted_aes_key", None, 256),
        ]
    ),
    length=st.integers(0, 600),
)
def test_wrong_length_fields_are_named(
    client_public: rsa.RSAPublicKey,
    keypair: _core.ClientKeyPair,
    field: tuple[str, str | None, int],
    length: int,
) -> None:
    outer, inner, right = field
    if length == right:
        length += 1
    doc = envelope_dict(client_public, PLAINTEXT)
    _set(doc, (outer, inner) if inner else (outer,), b64(os.urandom(length)))
    _result, exc = open_outcome(json.dumps(doc).encode(), keypair)
    assert isinstance(exc, _core.EnvelopeError), repr(exc)
    assert (inner or outer) in str(exc)


@FAST
@given(length=st.integers(0, 190).filter(lambda n: n != 32))
def test_wrapped_aes_key_of_wrong_length_is_the_opaque_error(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair, length: int
) -> None:
    # A correctly wrapped key of the wrong size: OAEP succeeds, the AES key is refused, and the
    # error is the same opaque one as for every other crypto failure.
    body = envelope_bytes(client_public, PLAINTEXT, aes_key=os.urandom(length))
    _result, exc = open_outcome(body, keypair)
    assert isinstance(exc, _core.CryptoError), repr(exc)
    assert str(exc) == "decryption failed: the response could not be authenticated"


HOSTILE_PLAINTEXTS = [
    b"",
    b"not json",
    b'{"a": 1} trailing',
    b"[" * 100_000,
    b"[" * (_core.MAX_JSON_DEPTH + 1) + b"]" * (_core.MAX_JSON_DEPTH + 1),
    b'{"a": "\xff\xfe"}',
    b'{"a": "\xed\xa0\x80"}',
    b'{"a": 1e400}',
    b'{"a": ' + b"9" * 100_000 + b"}",
    b'{"a": "\\ud800"}',
    b'{"a": "\\u00"}',
    b"\x00" * 64,
    b'{"' + b"k" * 1_000_000 + b'": 1}',
]


@pytest.mark.parametrize("plaintext", HOSTILE_PLAINTEXTS, ids=range(len(HOSTILE_PLAINTEXTS)))
def test_authentic_but_hostile_plaintext(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair, plaintext: bytes
) -> None:
    # The crypto is valid; what it carries is not sane JSON: a typed error or some value.
    _result, exc = open_outcome(envelope_bytes(client_public, plaintext), keypair)
    if exc is not None:
        assert isinstance(exc, _core.CoreError), repr(exc)


@pytest.mark.parametrize(
    "body",
    [
        "a str",
        None,
        3,
        memoryview(b"{}{}")[::2],  # not contiguous
        memoryview(b"{}{}").cast("H"),  # not bytes
        array.array("i", [0]),
    ],
    ids=["str", "None", "int", "strided", "uint16", "int32-array"],
)
def test_body_of_the_wrong_type_is_a_type_error(keypair: _core.ClientKeyPair, body: Any) -> None:
    _result, exc = open_outcome(body, keypair)
    assert isinstance(exc, TypeError), repr(exc)


@pytest.mark.parametrize(
    "wrap", [bytearray, memoryview, lambda b: memoryview(bytearray(b))], ids=range(3)
)
def test_a_byte_buffer_body_is_read_as_its_bytes(keypair: _core.ClientKeyPair, wrap: Any) -> None:
    # The HTTP layer hands over the bytearray it received the body into: the same outcome as
    # the same bytes, a typed error included.
    _result, exc = open_outcome(wrap(b"{}"), keypair)
    _result, expected = open_outcome(b"{}", keypair)
    assert type(exc) is type(expected) and str(exc) == str(expected), repr(exc)


def test_body_over_the_cap_is_refused_before_parsing(keypair: _core.ClientKeyPair) -> None:
    _result, exc = open_outcome(b" " * (_core.MAX_ENVELOPE_BYTES + 1), keypair)
    assert isinstance(exc, _core.PayloadTooLargeError), repr(exc)


def test_error_paths_release_every_buffer_and_do_not_grow(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair
) -> None:
    # Failures at every stage: parse, field checks, unwrap, authentication, JSON after decrypt.
    valid = envelope_bytes(client_public, PLAINTEXT)
    tampered = bytearray(valid)
    tampered[valid.index(b'"ciphertext": "') + 20] ^= 1
    cases = [
        valid[: len(valid) // 2],
        bytes(tampered),
        envelope_bytes(client_public, PLAINTEXT, aes_key=os.urandom(16)),
        envelope_bytes(client_public, b"[" * 100_000),
        envelope_bytes(client_public, b'{"a": "\xff"}'),
        valid.replace(b'"1.0"', b'"0.9"'),
    ]
    _core.open(valid, keypair)  # warm up allocator pools and caches once
    buffers_before = _core.memory_status()["buffers_live"]
    rss_before = rss_bytes()
    for _round in range(400):
        for body in cases:
            with pytest.raises(_core.CoreError):
                _core.open(body, keypair)
    assert _core.memory_status()["buffers_live"] == buffers_before
    # 2400 failures: a leak of even one small buffer each would show as megabytes.
    assert rss_bytes() - rss_before < 16 * 2**20


def test_envelope_at_the_size_cap_fails_cleanly(
    client_public: rsa.RSAPublicKey, keypair: _core.ClientKeyPair
) -> None:
    # 10 MiB of ciphertext (more than RLIMIT_MEMLOCK allows to lock) under a forged tag: the
    # core decodes it into a locked buffer, fails authentication, and gives everything back.
    doc = envelope_dict(client_public, PLAINTEXT)
    doc["encrypted_payload"]["ciphertext"] = b64(os.urandom(_core.MAX_PLAINTEXT_BYTES))
    body = json.dumps(doc).encode()
    assert len(body) <= _core.MAX_ENVELOPE_BYTES
    buffers_before = _core.memory_status()["buffers_live"]
    rss_before = rss_bytes()
    for _round in range(5):
        _result, exc = open_outcome(body, keypair)
        assert isinstance(exc, _core.CryptoError), repr(exc)
    assert _core.memory_status()["buffers_live"] == buffers_before
    assert rss_bytes() - rss_before < 48 * 2**20
