"""The physical floors of issue 15: what a request's cryptography alone costs (pyca/OpenSSL).

- small: AES-GCM seal of the request, RSA-4096 OAEP wrap of its key, RSA-4096 OAEP unwrap of
  the response's key, AES-GCM open of the response; nothing else (no JSON, no base64, no HTTP).
- 1 MiB (1 MiB each way): the small floor plus the AES-GCM passes of the envelope (seal 1 MiB,
  open 1 MiB) and of TLS each way (the base64 envelope, 4/3 of the plaintext, encrypted on the
  way out and decrypted on the way in).

Measured as process CPU (``getrusage``) per request over many repetitions, in the same run as
the clients it is the yardstick of.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=SHA256()), algorithm=SHA256(), label=None)
MIB = 1024 * 1024
# Plaintext sizes of the small scenario: the request JSON and the echo endpoint's answer.
SMALL_REQUEST_BYTES = 110
SMALL_RESPONSE_BYTES = 480
SMALL_REPETITIONS = 200
MIB_REPETITIONS = 40
RESPONSE_NONCE = bytes(12)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _per_call_ms(step: Callable[[], object], repetitions: int) -> float:
    step()  # first call outside: lazy initialisation in OpenSSL
    started = _cpu()
    for _ in range(repetitions):
        step()
    return 1000 * (_cpu() - started) / repetitions


def _envelope_bytes(plaintext: int) -> int:
    """Size on the wire of an envelope carrying ``plaintext`` bytes (base64 + framing)."""
    return 4 * -(-plaintext // 3) + 1024


def measure_floors(job: dict[str, Any]) -> list[dict[str, Any]]:
    del job  # the floors depend on nothing the job says
    client_key = rsa.generate_private_key(65537, 4096)
    server_public = rsa.generate_private_key(65537, 4096).public_key()
    sealed_key = client_key.public_key().encrypt(os.urandom(32), OAEP)

    def exchange(request: bytes, response: bytes) -> None:
        # Client side of one request: seal + wrap out, unwrap + open in.
        key, nonce = AESGCM.generate_key(256), os.urandom(12)
        AESGCM(key).encrypt(nonce, request, None)
        server_public.encrypt(key, OAEP)
        answer_key = client_key.decrypt(sealed_key, OAEP)
        AESGCM(answer_key).decrypt(RESPONSE_NONCE, response, None)

    small_request = os.urandom(SMALL_REQUEST_BYTES)
    small_response = _sealed(SMALL_RESPONSE_BYTES, client_key, sealed_key)
    small = _per_call_ms(lambda: exchange(small_request, small_response), SMALL_REPETITIONS)

    mib_request = os.urandom(MIB)
    mib_response = _sealed(MIB, client_key, sealed_key)
    tls = AESGCM(AESGCM.generate_key(256))
    wire_out = os.urandom(_envelope_bytes(MIB))
    wire_in = tls.encrypt(b"\0" * 12, os.urandom(_envelope_bytes(MIB)), None)

    def mib_exchange() -> None:
        exchange(mib_request, mib_response)
        tls.encrypt(b"\0" * 12, wire_out, None)  # TLS out
        tls.decrypt(b"\0" * 12, wire_in, None)  # TLS in

    mib = _per_call_ms(mib_exchange, MIB_REPETITIONS)
    return [
        {"scenario": "floor small", "requests": SMALL_REPETITIONS, "cpu_per_request_ms": small},
        {"scenario": "floor 1 MiB", "requests": MIB_REPETITIONS, "cpu_per_request_ms": mib},
    ]


def _sealed(size: int, client_key: rsa.RSAPrivateKey, sealed_key: bytes) -> bytes:
    """A response of ``size`` plaintext bytes sealed under the key ``sealed_key`` wraps."""
    key = client_key.decrypt(sealed_key, OAEP)
    return AESGCM(key).encrypt(RESPONSE_NONCE, os.urandom(size), None)
