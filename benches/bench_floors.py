"""The physical floors of issue 15: what a request's cryptography alone costs (pyca/OpenSSL).

- small: AES-GCM seal of the request, RSA-4096 OAEP wrap of its key, RSA-4096 OAEP unwrap of
  the response's key, AES-GCM open of the response; nothing else (no JSON, no base64, no HTTP).
- 1 MiB (1 MiB each way): the small floor plus the AES-GCM passes of the envelope (seal 1 MiB,
  open 1 MiB) and of TLS each way (the base64 envelope, 4/3 of the plaintext, encrypted on the
  way out and decrypted on the way in).
- 1 MiB non-ASCII: the same definition at that row's sizes. The request's plaintext is its
  UTF-8 JSON (1 MiB); the endpoint answers with ``json.dumps``' ASCII escapes (every non-ASCII
  character as ``\\uXXXX``, an emoji as two), so its response plaintext is about twice as large.

Measured as process CPU (``getrusage``) per request over many repetitions, in the same run as
the clients it is the yardstick of.
"""

from __future__ import annotations

import json
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
# Scenario names, in the order measure_floors returns them.
FLOOR_SCENARIOS = ["floor small", "floor 1 MiB", "floor 1 MiB non-ASCII"]
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

    tls = AESGCM(AESGCM.generate_key(256))

    def sized_exchange(request_bytes: int, response_bytes: int) -> float:
        request = os.urandom(request_bytes)
        response = _sealed(response_bytes, client_key, sealed_key)
        wire_out = os.urandom(_envelope_bytes(request_bytes))
        wire_in = tls.encrypt(b"\0" * 12, os.urandom(_envelope_bytes(response_bytes)), None)

        def one() -> None:
            exchange(request, response)
            tls.encrypt(b"\0" * 12, wire_out, None)  # TLS out
            tls.decrypt(b"\0" * 12, wire_in, None)  # TLS in

        return _per_call_ms(one, MIB_REPETITIONS)

    request_bytes, response_bytes = _non_ascii_plaintexts()
    figures = [
        ("floor small", SMALL_REPETITIONS, small),
        ("floor 1 MiB", MIB_REPETITIONS, sized_exchange(MIB, MIB)),
        ("floor 1 MiB non-ASCII", MIB_REPETITIONS, sized_exchange(request_bytes, response_bytes)),
    ]
    return [
        {"scenario": name, "requests": count, "cpu_per_request_ms": ms}
        for name, count, ms in figures
    ]


def _non_ascii_plaintexts() -> tuple[int, int]:
    """Plaintext bytes of the 1 MiB non-ASCII row: the request as UTF-8 JSON, the answer as
    the endpoint's ASCII-escaped JSON (the prompt echoed, plus the small answer's framing)."""
    from e2e_worker import MIB as PROMPT_BYTES
    from e2e_worker import sized_prompt

    prompt = sized_prompt(0, PROMPT_BYTES, non_ascii=True)
    request = {"model": "bench-model", "messages": [{"role": "user", "content": prompt}]}
    request_bytes = len(json.dumps(request, ensure_ascii=False).encode())
    return request_bytes, len(json.dumps(prompt)) + SMALL_RESPONSE_BYTES


def _sealed(size: int, client_key: rsa.RSAPrivateKey, sealed_key: bytes) -> bytes:
    """A response of ``size`` plaintext bytes sealed under the key ``sealed_key`` wraps."""
    key = client_key.decrypt(sealed_key, OAEP)
    return AESGCM(key).encrypt(RESPONSE_NONCE, os.urandom(size), None)
