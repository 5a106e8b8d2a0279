"""The physical floors of issue 15: what a request's cryptography alone costs (pyca/OpenSSL).

- small: AES-GCM seal of the request, RSA-4096 OAEP wrap of its key, RSA-4096 OAEP unwrap of
  the response's key, AES-GCM open of the response; nothing else (no JSON, no base64, no HTTP).
- 1 MiB (1 MiB each way): the small floor plus the AES-GCM passes of the envelope (seal 1 MiB,
  open 1 MiB) and of TLS each way (the base64 envelope, 4/3 of the plaintext, encrypted on the
  way out and decrypted on the way in).
- 1 MiB non-ASCII: the same definition at that row's sizes. The request's plaintext is its
  UTF-8 JSON (1 MiB); the endpoint answers with ``json.dumps``' ASCII escapes (every non-ASCII
  character as ``\\uXXXX``, an emoji as two), so its response plaintext is about twice as large.

Measured as this thread's CPU per request over many repetitions, in the same run as the
clients it is the yardstick of: in processes of their own (``measure_floors``), and in each of
ours' processes beside the scenario held against them (``PAIRED_FLOORS``), so that a ratio
compares two figures of the same minute on a shared machine whose speed drifts by a fifth.
"""

from __future__ import annotations

import json
import os
import time
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
# The floors each of ours' scenarios is held against (report.py's targets): measured in ours'
# process just before and just after the scenario (e2e_worker.Yardsticks).
PAIRED_FLOORS = {
    "sequential small requests": ("floor small",),
    "sequential small non-ASCII": ("floor small",),
    "1 MiB prompts": ("floor 1 MiB",),
    "1 MiB non-ASCII prompts": ("floor 1 MiB", "floor 1 MiB non-ASCII"),
}


def _cpu() -> float:
    # This thread's CPU: beside a client in its own process (the paired floors), the client's
    # idle threads and timers are not the floor's.
    return time.thread_time()


def _per_call_ms(step: Callable[[], object], repetitions: int) -> float:
    step()  # first call outside: lazy initialisation in OpenSSL
    started = _cpu()
    for _ in range(repetitions):
        step()
    return 1000 * (_cpu() - started) / repetitions


def _envelope_bytes(plaintext: int) -> int:
    """Size on the wire of an envelope carrying ``plaintext`` bytes (base64 + framing)."""
    return 4 * -(-plaintext // 3) + 1024


class Floors:
    """The floors' keys and inputs, made once; each floor measured on demand."""

    def __init__(self) -> None:
        self._client_key = rsa.generate_private_key(65537, 4096)
        self._server_public = rsa.generate_private_key(65537, 4096).public_key()
        self._sealed_key = self._client_key.public_key().encrypt(os.urandom(32), OAEP)
        self._tls = AESGCM(AESGCM.generate_key(256))
        request_bytes, response_bytes = _non_ascii_plaintexts()
        self._steps: dict[str, tuple[int, Callable[[], None]]] = {
            "floor small": (
                SMALL_REPETITIONS,
                self._exchange(os.urandom(SMALL_REQUEST_BYTES), self._sealed(SMALL_RESPONSE_BYTES)),
            ),
            "floor 1 MiB": (MIB_REPETITIONS, self._sized_exchange(MIB, MIB)),
            "floor 1 MiB non-ASCII": (
                MIB_REPETITIONS,
                self._sized_exchange(request_bytes, response_bytes),
            ),
        }

    def repetitions(self, name: str) -> int:
        return self._steps[name][0]

    def measure(self, name: str) -> float:
        """CPU per request of the floor ``name`` (one of FLOOR_SCENARIOS), in ms."""
        repetitions, step = self._steps[name]
        return _per_call_ms(step, repetitions)

    def _exchange(self, request: bytes, response: bytes) -> Callable[[], None]:
        def one() -> None:
            # Client side of one request: seal + wrap out, unwrap + open in.
            key, nonce = AESGCM.generate_key(256), os.urandom(12)
            AESGCM(key).encrypt(nonce, request, None)
            self._server_public.encrypt(key, OAEP)
            answer_key = self._client_key.decrypt(self._sealed_key, OAEP)
            AESGCM(answer_key).decrypt(RESPONSE_NONCE, response, None)

        return one

    def _sized_exchange(self, request_bytes: int, response_bytes: int) -> Callable[[], None]:
        exchange = self._exchange(os.urandom(request_bytes), self._sealed(response_bytes))
        tls = self._tls
        wire_out = os.urandom(_envelope_bytes(request_bytes))
        wire_in = tls.encrypt(b"\0" * 12, os.urandom(_envelope_bytes(response_bytes)), None)

        def one() -> None:
            exchange()
            tls.encrypt(b"\0" * 12, wire_out, None)  # TLS out
            tls.decrypt(b"\0" * 12, wire_in, None)  # TLS in

        return one

    def _sealed(self, size: int) -> bytes:
        """A response of ``size`` plaintext bytes sealed under the key ``_sealed_key`` wraps."""
        key = self._client_key.decrypt(self._sealed_key, OAEP)
        return AESGCM(key).encrypt(RESPONSE_NONCE, os.urandom(size), None)


def measure_floors(job: dict[str, Any]) -> list[dict[str, Any]]:
    del job  # the floors depend on nothing the job says
    floors = Floors()
    return [
        {
            "scenario": name,
            "requests": floors.repetitions(name),
            "cpu_per_request_ms": floors.measure(name),
        }
        for name in FLOOR_SCENARIOS
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
