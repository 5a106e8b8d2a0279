"""The core's share of each end-to-end scenario: ``_core.seal`` + ``_core.open_envelope`` alone.

The same payloads the chat client seals, and responses the way the endpoint answers them (its
echo backend's completion, its ``_metadata``, ``json.dumps`` with its ASCII escapes, sealed by
its own ``seal_response``), so that ``report.py`` can split a scenario's client CPU into the
core's part and the rest (HTTP stack, TLS, asyncio, hand-offs, kernel): where the milliseconds
go. Measured as process CPU (``getrusage``) per request in a worker process of its own.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import urllib.parse
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nomyo_native import _core
from nomyo_native.server.backends import EchoBackend
from nomyo_native.server.crypto import parse_client_public_key, seal_response

# The single-request scenarios of e2e_worker (concurrency adds no core work per request).
MODEL = "bench-model"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _endpoint_answer(payload: dict[str, Any], client_key: Any) -> bytes:
    """The response envelope the local endpoint's echo backend would send for ``payload``."""
    completion = asyncio.run(EchoBackend().complete(payload))
    completion["_metadata"] = {
        "payload_id": "00000000-0000-4000-8000-000000000000",
        "processed_at": time.time(),
        "is_encrypted": True,
        "response_status": "success",
        "security_tier": None,
        "memory_protection": {"platform": "linux", "memory_locking": True},
        "cuda_device": {"available": False, "device_hash": None},
        "tpm_attestation": {"available": False},
    }
    return seal_response(json.dumps(completion, allow_nan=False).encode(), client_key).body


def _keys() -> tuple[_core.ClientKeyPair, Any, _core.ServerPublicKey]:
    """A client key pair, its public key as the endpoint reads it, and a server's public key."""
    keypair = _core.ClientKeyPair.generate(4096)
    client_key = parse_client_public_key(urllib.parse.quote(keypair.public_key_pem))
    server_pem = (
        rsa.generate_private_key(65537, 4096)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return keypair, client_key, _core.ServerPublicKey.from_pem(server_pem)


def wire_bytes(prompts: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Per scenario (``name -> a prompt``): the bytes of its sealed request and of the endpoint's
    sealed answer (HTTP bodies)."""
    _, client_key, server_key = _keys()
    sizes = {}
    for name, prompt in prompts.items():
        payload = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
        sizes[name] = (
            len(_core.seal(payload, server_key)),
            len(_endpoint_answer(payload, client_key)),
        )
    return sizes


def measure_core_share(
    scenarios: dict[str, tuple[list[str], int]],
) -> list[dict[str, Any]]:
    """Per scenario (``name -> (prompts, repetitions)``): the core's CPU per request."""
    keypair, client_key, server_key = _keys()
    results = []
    for name, (prompts, repetitions) in scenarios.items():
        payloads = [{"model": MODEL, "messages": [{"role": "user", "content": p}]} for p in prompts]
        answers = [_endpoint_answer(p, client_key) for p in payloads]
        _core.open_envelope(answers[0], keypair)  # first call outside: lazy initialisation
        seal_cpu = open_cpu = 0.0
        for i in range(repetitions):
            payload, answer = payloads[i % len(payloads)], answers[i % len(answers)]
            started = _cpu()
            _core.seal(payload, server_key)
            sealed = _cpu()
            _core.open_envelope(answer, keypair)
            seal_cpu += sealed - started
            open_cpu += _cpu() - sealed
        results.append(
            {
                "scenario": name,
                "requests": repetitions,
                "cpu_per_request_ms": 1000 * (seal_cpu + open_cpu) / repetitions,
                "seal_ms": 1000 * seal_cpu / repetitions,
                "open_ms": 1000 * open_cpu / repetitions,
                "response_envelope_bytes": len(answers[0]),
            }
        )
    return results
