"""Core speed, side by side with pyca/cryptography doing the same steps in the same run.

Targets (reported in the closing table, never asserted: a loaded machine must not fail CI):
- ``open`` of a small response within 1.2x of pyca's RSA-4096 OAEP decrypt + AES-GCM (+ the
  same JSON and base64 work);
- ``seal`` + ``open`` of a 1 MiB request within 5 ms of CPU time;
- 4096-bit key generation, median under 1 s.

Run: ``.venv/bin/python -m pytest benches/test_core_bench.py --benchmark-only``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

from nomyo_native import _core

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=SHA256()), algorithm=SHA256(), label=None)


# ---- pyca/cryptography doing the protocol's steps --------------------------------------------


def pyca_seal(payload: Any, public: rsa.RSAPublicKey, ensure_ascii: bool = False) -> bytes:
    plaintext = json.dumps(payload, separators=(",", ":"), ensure_ascii=ensure_ascii).encode()
    key = os.urandom(32)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    b64 = base64.b64encode
    envelope = {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {
            "ciphertext": b64(sealed[:-16]).decode(),
            "nonce": b64(nonce).decode(),
            "tag": b64(sealed[-16:]).decode(),
        },
        "encrypted_aes_key": b64(public.encrypt(key, OAEP)).decode(),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def pyca_open(body: bytes, private: rsa.RSAPrivateKey) -> tuple[Any, Any, str]:
    envelope = json.loads(body)
    payload = envelope["encrypted_payload"]
    key = private.decrypt(base64.b64decode(envelope["encrypted_aes_key"], validate=True), OAEP)
    plaintext = AESGCM(key).decrypt(
        base64.b64decode(payload["nonce"], validate=True),
        base64.b64decode(payload["ciphertext"], validate=True)
        + base64.b64decode(payload["tag"], validate=True),
        None,
    )
    return json.loads(plaintext), envelope.get("processed_at"), envelope["algorithm"]


def median_ms(benchmark: Any) -> float:
    return float(benchmark.stats.stats.median) * 1000.0


# ---- open of a small response ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_envelope(small_payload: dict[str, Any], pyca_private: rsa.RSAPrivateKey) -> bytes:
    # Built by the pyca peer, as a server would; both sides open these very bytes.
    return pyca_seal(small_payload, pyca_private.public_key())


@pytest.mark.benchmark(group="open-small-4096")
def test_open_small_core(
    benchmark: Any,
    small_envelope: bytes,
    small_payload: dict[str, Any],
    core_keypair: _core.ClientKeyPair,
    targets: Any,
) -> None:
    payload, _, _ = benchmark(_core.open, small_envelope, core_keypair)
    assert payload == small_payload
    row = targets.row("open", "open small response (RSA-4096)", factor=1.2)
    row.ours = median_ms(benchmark)


@pytest.mark.benchmark(group="open-small-4096")
def test_open_small_pyca(
    benchmark: Any,
    small_envelope: bytes,
    small_payload: dict[str, Any],
    pyca_private: rsa.RSAPrivateKey,
    targets: Any,
) -> None:
    payload, _, _ = benchmark(pyca_open, small_envelope, pyca_private)
    assert payload == small_payload
    row = targets.row("open", "open small response (RSA-4096)", factor=1.2)
    row.theirs = median_ms(benchmark)


# ---- seal + open of 1 MiB, CPU time ----------------------------------------------------------


@pytest.mark.benchmark(group="seal+open-1MiB-cpu", timer=time.process_time)
def test_seal_open_1mib_core(
    benchmark: Any,
    mib_payload: dict[str, Any],
    core_keypair: _core.ClientKeyPair,
    server_key: _core.ServerPublicKey,
    targets: Any,
) -> None:
    def round_trip() -> Any:
        return _core.open(_core.seal(mib_payload, server_key), core_keypair)[0]

    assert benchmark(round_trip) == mib_payload
    row = targets.row("mib", "seal+open 1 MiB, CPU time (RSA-4096 keys)", limit=5.0)
    row.ours = median_ms(benchmark)


@pytest.mark.benchmark(group="seal+open-1MiB-cpu", timer=time.process_time)
def test_seal_open_1mib_pyca(
    benchmark: Any,
    mib_payload: dict[str, Any],
    pyca_private: rsa.RSAPrivateKey,
    targets: Any,
) -> None:
    public = pyca_private.public_key()

    def round_trip() -> Any:
        return pyca_open(pyca_seal(mib_payload, public), pyca_private)[0]

    assert benchmark(round_trip) == mib_payload
    row = targets.row("mib", "seal+open 1 MiB, CPU time (RSA-4096 keys)", limit=5.0)
    row.theirs = median_ms(benchmark)


@pytest.mark.benchmark(group="seal+open-1MiB-cpu", timer=time.process_time)
def test_symmetric_part_1mib_core(
    benchmark: Any,
    mib_payload: dict[str, Any],
    core_keypair: _core.ClientKeyPair,
    server_key: _core.ServerPublicKey,
    targets: Any,
) -> None:
    """Only the seal (one RSA public op): isolates JSON + AES-GCM + base64 from the private op."""
    body = benchmark(_core.seal, mib_payload, server_key)
    assert _core.open(body, core_keypair)[0] == mib_payload
    targets.row("seal", "seal 1 MiB alone, CPU time").ours = median_ms(benchmark)


# ---- key generation --------------------------------------------------------------------------


@pytest.mark.benchmark(group="keygen-4096", min_rounds=10, warmup=False)
def test_keygen_4096_core(benchmark: Any, targets: Any) -> None:
    kp = benchmark.pedantic(_core.ClientKeyPair.generate, args=(4096,), rounds=10, iterations=1)
    assert kp.bits == 4096
    row = targets.row("keygen", "RSA-4096 key generation", unit="ms", limit=1000.0)
    row.ours = median_ms(benchmark)


@pytest.mark.benchmark(group="keygen-4096", min_rounds=10, warmup=False)
def test_keygen_4096_pyca(benchmark: Any, targets: Any) -> None:
    key = benchmark.pedantic(rsa.generate_private_key, args=(65537, 4096), rounds=10, iterations=1)
    assert key.key_size == 4096
    row = targets.row("keygen", "RSA-4096 key generation", unit="ms", limit=1000.0)
    row.theirs = median_ms(benchmark)


# ---- seal and open by size: 1 KiB, 1 MiB, 10 MiB ---------------------------------------------
# CPU time of each step alone, core beside pyca doing the same steps; `benches/report.py` pairs
# them (ratio core/pyca). 10 MiB is the largest plaintext the protocol allows, less the margin
# the JSON framing takes.

SIZES = {"1KiB": 1024, "1MiB": 1024 * 1024, "10MiB": 10 * 1024 * 1024 - 64}
# Non-ASCII content takes another path in `seal` (read as UCS-4 into locked memory and encoded
# there, so that no UTF-8 copy is cached in the caller's str): one row measures it.
NON_ASCII_SIZES = {"1MiB-non-ASCII": 1024 * 1024}


def payload_of_size(size: int, non_ascii: bool = False) -> dict[str, Any]:
    """A chat request whose compact JSON (UTF-8) is exactly ``size`` bytes: ASCII content, or
    mixed Latin, Greek, CJK and emoji text."""
    empty = {"model": "m", "messages": [{"role": "user", "content": ""}]}
    overhead = len(json.dumps(empty, separators=(",", ":")))
    room = size - overhead
    if non_ascii:
        unit = "héllo wörld Ελλάδα 漢字 🔐 "
        text = unit * (room // len(unit.encode()))
        text += "a" * (room - len(text.encode()))
    else:
        text = "a" * room
    payload = {"model": "m", "messages": [{"role": "user", "content": text}]}
    encoded = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(encoded) == size
    return payload


@pytest.fixture(scope="module", params=[*SIZES, *NON_ASCII_SIZES])
def sized(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if request.param in NON_ASCII_SIZES:
        return request.param, payload_of_size(NON_ASCII_SIZES[request.param], non_ascii=True)
    return request.param, payload_of_size(SIZES[request.param])


def _size_group(benchmark: Any, step: str, label: str) -> None:
    benchmark.group = f"{step}-{label}-cpu"


@pytest.mark.benchmark(timer=time.process_time)
def test_seal_sized_core(
    benchmark: Any,
    sized: tuple[str, dict[str, Any]],
    core_keypair: _core.ClientKeyPair,
    server_key: _core.ServerPublicKey,
) -> None:
    label, payload = sized
    _size_group(benchmark, "seal", label)
    body = benchmark(_core.seal, payload, server_key)
    assert _core.open(body, core_keypair)[0] == payload


@pytest.mark.benchmark(timer=time.process_time)
def test_seal_sized_pyca(
    benchmark: Any,
    sized: tuple[str, dict[str, Any]],
    core_keypair: _core.ClientKeyPair,
    pyca_private: rsa.RSAPrivateKey,
) -> None:
    label, payload = sized
    _size_group(benchmark, "seal", label)
    body = benchmark(pyca_seal, payload, pyca_private.public_key())
    assert _core.open(body, core_keypair)[0] == payload


@pytest.fixture(scope="module")
def sized_envelope(
    sized: tuple[str, dict[str, Any]], pyca_private: rsa.RSAPrivateKey
) -> tuple[str, dict[str, Any], bytes]:
    label, payload = sized
    return label, payload, pyca_seal(payload, pyca_private.public_key())


@pytest.mark.benchmark(timer=time.process_time)
def test_open_sized_core(
    benchmark: Any,
    sized_envelope: tuple[str, dict[str, Any], bytes],
    core_keypair: _core.ClientKeyPair,
) -> None:
    label, payload, body = sized_envelope
    _size_group(benchmark, "open", label)
    assert benchmark(_core.open, body, core_keypair)[0] == payload


@pytest.mark.benchmark(timer=time.process_time)
def test_open_sized_pyca(
    benchmark: Any,
    sized_envelope: tuple[str, dict[str, Any], bytes],
    pyca_private: rsa.RSAPrivateKey,
) -> None:
    label, payload, body = sized_envelope
    _size_group(benchmark, "open", label)
    assert benchmark(pyca_open, body, pyca_private)[0] == payload


# ---- open of a 1 MiB non-ASCII reply as the endpoint writes it ---------------------------------
# The endpoint's json.dumps escapes every non-ASCII character (ensure_ascii, its default): 1 MiB
# of mixed text becomes about 2.2 MB of plaintext, mostly \uXXXX, and a 3 MB envelope.


@pytest.fixture(scope="module")
def escaped_envelope(pyca_private: rsa.RSAPrivateKey) -> tuple[dict[str, Any], bytes]:
    payload = payload_of_size(NON_ASCII_SIZES["1MiB-non-ASCII"], non_ascii=True)
    return payload, pyca_seal(payload, pyca_private.public_key(), ensure_ascii=True)


@pytest.mark.benchmark(group="open-1MiB-non-ASCII-escaped-cpu", timer=time.process_time)
def test_open_escaped_core(
    benchmark: Any,
    escaped_envelope: tuple[dict[str, Any], bytes],
    core_keypair: _core.ClientKeyPair,
) -> None:
    payload, body = escaped_envelope
    assert benchmark(_core.open, body, core_keypair)[0] == payload


@pytest.mark.benchmark(group="open-1MiB-non-ASCII-escaped-cpu", timer=time.process_time)
def test_open_escaped_pyca(
    benchmark: Any,
    escaped_envelope: tuple[dict[str, Any], bytes],
    pyca_private: rsa.RSAPrivateKey,
) -> None:
    payload, body = escaped_envelope
    assert benchmark(pyca_open, body, pyca_private)[0] == payload
