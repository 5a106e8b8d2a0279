"""The hybrid envelope (PROTOCOL.md sections 2 and 3), with pyca/cryptography as the peer.

What ``seal`` builds must open with pyca; what pyca builds in the protocol shape must open with
``open``; every envelope rule gives its typed error, and every crypto failure the same message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA1, SHA256
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.pyca_envelope import OAEP, b64, build_envelope, open_envelope
from tests.pyca_envelope import b64decode_strict as strict_b64decode

from nomyo_native import _core

ENVELOPE_KEYS = {
    "version",
    "algorithm",
    "encrypted_payload",
    "encrypted_aes_key",
    "key_algorithm",
    "payload_algorithm",
}
PAYLOAD = {
    "model": "test-model",
    "messages": [{"role": "user", "content": "héllo wörld ✓ 🔐"}],
    "temperature": 0.5,
    "max_tokens": 64,
    "stream": False,
    "tools": None,
}


@pytest.fixture(scope="module")
def server_private() -> rsa.RSAPrivateKey:
    """The server side of a request: a pyca key whose public half we seal to."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def server_key(server_private: rsa.RSAPrivateKey) -> _core.ServerPublicKey:
    pem = server_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _core.ServerPublicKey.from_pem(pem)


def pyca_open(body: bytes, private: rsa.RSAPrivateKey) -> Any:
    return json.loads(open_envelope(private, body)[0])


def pyca_envelope(
    plaintext: bytes,
    public: rsa.RSAPublicKey,
    *,
    key: bytes | None = None,
    nonce: bytes | None = None,
    oaep: padding.OAEP = OAEP,
    **extra: Any,
) -> dict[str, Any]:
    """A response envelope as a server on pyca/cryptography builds it."""
    return build_envelope(public, plaintext, aes_key=key, nonce=nonce, oaep=oaep, **extra)[0]


def dumps(env: dict[str, Any]) -> bytes:
    return json.dumps(env).encode()


# ---- seal -> pyca ----------------------------------------------------------------------------


def test_seal_opens_with_pyca(
    server_key: _core.ServerPublicKey, server_private: rsa.RSAPrivateKey
) -> None:
    body = _core.seal(PAYLOAD, server_key)
    assert isinstance(body, bytes)
    env = json.loads(body)
    assert set(env) == ENVELOPE_KEYS
    assert env["version"] == "1.0"
    assert env["algorithm"] == "hybrid-aes256-rsa4096"
    assert env["key_algorithm"] == "RSA-OAEP-SHA256"
    assert env["payload_algorithm"] == "AES-256-GCM"
    assert set(env["encrypted_payload"]) == {"ciphertext", "nonce", "tag"}
    assert len(strict_b64decode(env["encrypted_payload"]["nonce"])) == 12
    assert len(strict_b64decode(env["encrypted_payload"]["tag"])) == 16
    assert len(strict_b64decode(env["encrypted_aes_key"])) == 256
    assert pyca_open(body, server_private) == PAYLOAD


def test_seal_plaintext_is_compact_json_like_the_reference(
    server_key: _core.ServerPublicKey, server_private: rsa.RSAPrivateKey
) -> None:
    env = json.loads(_core.seal(PAYLOAD, server_key))
    key = server_private.decrypt(strict_b64decode(env["encrypted_aes_key"]), OAEP)
    p = env["encrypted_payload"]
    plain = AESGCM(key).decrypt(
        strict_b64decode(p["nonce"]),
        strict_b64decode(p["ciphertext"]) + strict_b64decode(p["tag"]),
        None,
    )
    assert plain == json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode()


def test_every_seal_uses_a_fresh_key_and_nonce(
    server_key: _core.ServerPublicKey, server_private: rsa.RSAPrivateKey
) -> None:
    keys, nonces = set(), set()
    for _ in range(20):
        env = json.loads(_core.seal({"same": "payload"}, server_key))
        keys.add(server_private.decrypt(strict_b64decode(env["encrypted_aes_key"]), OAEP))
        nonces.add(env["encrypted_payload"]["nonce"])
    assert len(keys) == 20
    assert len(nonces) == 20
    assert all(len(k) == 32 for k in keys)


def test_seal_refuses_oversized_plaintext_before_encrypting(
    server_key: _core.ServerPublicKey,
) -> None:
    limit = _core.MAX_PLAINTEXT_BYTES
    assert limit == 10 * 1024 * 1024
    with pytest.raises(_core.PayloadTooLargeError):
        _core.seal("x" * limit, server_key)
    # Just under the limit works (the JSON string adds two quotes).
    body = _core.seal("x" * (limit - 2), server_key)
    assert len(body) > limit


def test_seal_refuses_non_json_values(server_key: _core.ServerPublicKey) -> None:
    with pytest.raises(TypeError, match="set"):
        _core.seal({"a": {1, 2}}, server_key)
    with pytest.raises(ValueError):
        _core.seal({"a": float("nan")}, server_key)
    with pytest.raises(TypeError):
        _core.seal({"a": 1}, "not a key")  # type: ignore[arg-type]


# ---- pyca -> open ----------------------------------------------------------------------------


def test_pyca_envelope_opens(keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey) -> None:
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok ✓"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    env = pyca_envelope(json.dumps(response).encode(), client_public, processed_at=1700000000)
    payload, processed_at, algorithm = _core.open(dumps(env), keypair)
    assert payload == response
    assert processed_at == 1700000000
    assert isinstance(processed_at, int)
    assert algorithm == "hybrid-aes256-rsa4096"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [({}, None), ({"processed_at": None}, None), ({"processed_at": 1700000000.5}, 1700000000.5)],
)
def test_processed_at(
    keypair: _core.ClientKeyPair,
    client_public: rsa.RSAPublicKey,
    extra: dict[str, Any],
    expected: float | None,
) -> None:
    env = pyca_envelope(b"{}", client_public, **extra)
    assert _core.open(dumps(env), keypair)[1] == expected


def test_optional_algorithm_labels_may_be_absent(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    env = pyca_envelope(b"[1]", client_public)
    del env["key_algorithm"], env["payload_algorithm"]
    assert _core.open(dumps(env), keypair)[0] == [1]


def test_unknown_extra_fields_are_ignored(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    env = pyca_envelope(b'"x"', client_public, server_note="hi")
    assert _core.open(dumps(env), keypair)[0] == "x"


def test_escaped_slashes_are_accepted(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    # Some JSON encoders (PHP's json_encode) write "/" as "\\/": still the same string.
    for _ in range(20):
        env = pyca_envelope(b'{"ok": true}', client_public)
        body = dumps(env)
        if b"/" in body:
            break
    escaped = body.replace(b"/", b"\\/")
    assert escaped != body
    assert _core.open(escaped, keypair)[0] == {"ok": True}


def test_empty_plaintext_is_not_json(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    env = pyca_envelope(b"", client_public)
    with pytest.raises(_core.EnvelopeError):
        _core.open(dumps(env), keypair)


def test_open_accepts_only_bytes(keypair: _core.ClientKeyPair) -> None:
    with pytest.raises(TypeError):
        _core.open("{}", keypair)  # type: ignore[arg-type]


def test_oversized_body_is_refused(keypair: _core.ClientKeyPair) -> None:
    with pytest.raises(_core.PayloadTooLargeError):
        _core.open(b" " * (_core.MAX_ENVELOPE_BYTES + 1), keypair)


# ---- envelope rules --------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(env: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = env
        for p in parents:
            node = node[p]
        node[last] = value

    return apply


def _delete(path: str) -> Mutation:
    def apply(env: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = env
        for p in parents:
            node = node[p]
        del node[last]

    return apply


ENVELOPE_RULES: list[tuple[str, Mutation, str]] = [
    ("version 2.0", _set("version", "2.0"), "version"),
    ("version number", _set("version", 1.0), "version"),
    ("version missing", _delete("version"), "version"),
    ("algorithm downgrade", _set("algorithm", "hybrid-aes128-rsa2048"), "algorithm"),
    ("algorithm missing", _delete("algorithm"), "algorithm"),
    ("key algorithm", _set("key_algorithm", "RSA-OAEP-SHA1"), "key_algorithm"),
    ("payload algorithm", _set("payload_algorithm", "AES-128-GCM"), "payload_algorithm"),
    ("payload algorithm type", _set("payload_algorithm", None), "payload_algorithm"),
    ("payload not object", _set("encrypted_payload", "abc"), "encrypted_payload"),
    ("payload missing", _delete("encrypted_payload"), "encrypted_payload"),
    ("ciphertext missing", _delete("encrypted_payload.ciphertext"), "ciphertext"),
    ("ciphertext bad b64", _set("encrypted_payload.ciphertext", "@@@@"), "ciphertext"),
    ("ciphertext whitespace", _set("encrypted_payload.ciphertext", "AAAA AAAA"), "ciphertext"),
    ("ciphertext url alphabet", _set("encrypted_payload.ciphertext", "-_-_"), "ciphertext"),
    ("ciphertext type", _set("encrypted_payload.ciphertext", 1234), "ciphertext"),
    ("ciphertext non-canonical", _set("encrypted_payload.ciphertext", "Zh=="), "ciphertext"),
    ("ciphertext missing padding", _set("encrypted_payload.ciphertext", "Zg"), "ciphertext"),
    ("nonce 8 bytes", _set("encrypted_payload.nonce", b64(b"\x00" * 8)), "nonce"),
    ("nonce 16 bytes", _set("encrypted_payload.nonce", b64(b"\x00" * 16)), "nonce"),
    ("nonce unpadded", _set("encrypted_payload.nonce", b64(b"\x01" * 11).rstrip("=")), "nonce"),
    ("nonce bad b64", _set("encrypted_payload.nonce", "not base64!"), "nonce"),
    ("nonce missing", _delete("encrypted_payload.nonce"), "nonce"),
    ("tag 12 bytes", _set("encrypted_payload.tag", b64(b"\x00" * 12)), "tag"),
    ("tag 17 bytes", _set("encrypted_payload.tag", b64(b"\x00" * 17)), "tag"),
    ("tag list", _set("encrypted_payload.tag", [1, 2]), "tag"),
    ("wrapped key 255", _set("encrypted_aes_key", b64(b"\x01" * 255)), "encrypted_aes_key"),
    ("wrapped key 512", _set("encrypted_aes_key", b64(b"\x01" * 512)), "encrypted_aes_key"),
    ("wrapped key bad b64", _set("encrypted_aes_key", "%%%%"), "encrypted_aes_key"),
    ("wrapped key missing", _delete("encrypted_aes_key"), "encrypted_aes_key"),
    ("processed_at string", _set("processed_at", "now"), "processed_at"),
]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [(m, f) for _, m, f in ENVELOPE_RULES],
    ids=[n for n, _, _ in ENVELOPE_RULES],
)
def test_envelope_rule(
    keypair: _core.ClientKeyPair,
    client_public: rsa.RSAPublicKey,
    mutate: Mutation,
    field: str,
) -> None:
    env = pyca_envelope(b'{"secret": "do not echo"}', client_public)
    mutate(env)
    with pytest.raises(_core.EnvelopeError) as info:
        _core.open(dumps(env), keypair)
    message = str(info.value)
    assert field in message
    assert "do not echo" not in message


@pytest.mark.parametrize("body", [b"", b"[]", b"null", b'"1.0"', b"{", b"\xff\xfe{}", b"{} {}"])
def test_body_that_is_not_an_envelope(keypair: _core.ClientKeyPair, body: bytes) -> None:
    with pytest.raises(_core.EnvelopeError):
        _core.open(body, keypair)


# ---- crypto failures: one opaque error -------------------------------------------------------


def _flip(path: str, index: int) -> Mutation:
    def apply(env: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = env
        for p in parents:
            node = node[p]
        raw = bytearray(strict_b64decode(node[last]))
        raw[index % len(raw)] ^= 0x80
        node[last] = b64(bytes(raw))

    return apply


def crypto_failures(keypair: _core.ClientKeyPair, public: rsa.RSAPublicKey) -> dict[str, bytes]:
    plain = b'{"answer": 42}'
    cases: dict[str, bytes] = {}
    paths = ("encrypted_payload.ciphertext", "encrypted_payload.tag")
    paths += ("encrypted_payload.nonce", "encrypted_aes_key")
    for path in paths:
        for index in (0, 5, -1):
            env = pyca_envelope(plain, public)
            _flip(path, index)(env)
            cases[f"flip {path}[{index}]"] = dumps(env)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    cases["wrong keypair"] = dumps(pyca_envelope(plain, other))
    cases["aes-128 key wrapped"] = dumps(pyca_envelope(plain, public, key=os.urandom(16)))
    cases["sha1 oaep"] = dumps(
        pyca_envelope(
            plain,
            public,
            oaep=padding.OAEP(mgf=padding.MGF1(algorithm=SHA1()), algorithm=SHA1(), label=None),
        )
    )
    labelled = padding.OAEP(mgf=padding.MGF1(algorithm=SHA256()), algorithm=SHA256(), label=b"l")
    cases["oaep label"] = dumps(pyca_envelope(plain, public, oaep=labelled))
    pkcs1 = pyca_envelope(plain, public)
    pkcs1["encrypted_aes_key"] = b64(public.encrypt(b"k" * 32, padding.PKCS1v15()))
    cases["pkcs1 v1.5 wrap"] = dumps(pkcs1)
    swapped = pyca_envelope(plain, public)
    donor = pyca_envelope(plain, public)
    swapped["encrypted_aes_key"] = donor["encrypted_aes_key"]
    cases["key from another envelope"] = dumps(swapped)
    truncated = pyca_envelope(plain, public)
    ct = strict_b64decode(truncated["encrypted_payload"]["ciphertext"])
    truncated["encrypted_payload"]["ciphertext"] = b64(ct[:-1])
    cases["truncated ciphertext"] = dumps(truncated)
    return cases


def test_every_crypto_failure_is_the_same_opaque_error(
    keypair: _core.ClientKeyPair, client_public: rsa.RSAPublicKey
) -> None:
    messages = set()
    for name, body in crypto_failures(keypair, client_public).items():
        with pytest.raises(_core.CryptoError) as info:
            _core.open(body, keypair)
        assert type(info.value) is _core.CryptoError, name
        messages.add(str(info.value))
    assert len(messages) == 1
    assert "answer" not in messages.pop()


def test_flipped_bytes_in_our_own_envelope(keypair: _core.ClientKeyPair) -> None:
    body = _core.seal({"a": 1}, _core.ServerPublicKey.from_pem(keypair.public_key_pem))
    assert _core.open(body, keypair)[0] == {"a": 1}
    env = json.loads(body)
    for path in ("encrypted_payload.ciphertext", "encrypted_payload.tag", "encrypted_aes_key"):
        tampered = json.loads(body)
        _flip(path, 3)(tampered)
        with pytest.raises(_core.CryptoError):
            _core.open(dumps(tampered), keypair)
    assert env["version"] == "1.0"


# ---- round trips -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_round_trip_arbitrary_json(keypair: _core.ClientKeyPair, value: Any) -> None:
    server = _core.ServerPublicKey.from_pem(keypair.public_key_pem)
    assert _core.open(_core.seal(value, server), keypair)[0] == value


def test_round_trip_at_the_depth_limit(keypair: _core.ClientKeyPair) -> None:
    server = _core.ServerPublicKey.from_pem(keypair.public_key_pem)
    deep: Any = "leaf"
    for _ in range(_core.MAX_JSON_DEPTH):
        deep = [deep]
    assert _core.open(_core.seal(deep, server), keypair)[0] == deep


def test_round_trip_of_a_megabyte(keypair: _core.ClientKeyPair) -> None:
    server = _core.ServerPublicKey.from_pem(keypair.public_key_pem)
    value = {"content": "ü" * (512 * 1024)}
    assert _core.open(_core.seal(value, server), keypair)[0] == value


def test_threads_seal_and_open_concurrently(keypair: _core.ClientKeyPair) -> None:
    server = _core.ServerPublicKey.from_pem(keypair.public_key_pem)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                value = {"thread": i, "round": j}
                assert _core.open(_core.seal(value, server), keypair)[0] == value
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []


# ---- fork safety -----------------------------------------------------------------------------

FORK_WHILE_BUSY = """
import os, threading, time
from nomyo_native import _core

kp = _core.ClientKeyPair.generate(2048)
server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
stop = threading.Event()

def hammer():
    while not stop.is_set():
        _core.open(_core.seal({"x": "y" * 5000}, server), kp)

threads = [threading.Thread(target=hammer) for _ in range(3)]
for t in threads:
    t.start()
failures = []
for i in range(40):
    pid = os.fork()
    if pid == 0:
        # The child uses the very key the parent's threads were using at fork time.
        ok = _core.open(_core.seal({"child": i}, server), kp)[0] == {"child": i}
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.waitstatus_to_exitcode(status) != 0:
                failures.append(os.waitstatus_to_exitcode(status))
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            failures.append("hung")
            break
        time.sleep(0.005)
stop.set()
for t in threads:
    t.join()
print(failures)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_other_threads_use_the_key() -> None:
    # Without the core's fork gate, children abort in aws-lc (RSA blinding state caught mid-
    # update) or hang on a lock held by a thread that does not exist in the child.
    result = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_BUSY], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
