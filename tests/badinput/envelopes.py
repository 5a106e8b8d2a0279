"""Real envelopes to mutate, built by pyca/cryptography as an independent peer, and the checks
every mutated case must pass: a typed error (or the original plaintext), in bounded time."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
# A hang guard, not a speed target: one open of a small envelope takes about a millisecond.
CALL_TIME_BOUND = 10.0

REPLY: dict[str, Any] = {
    "id": "chatcmpl-badinput",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "secret reply ✓ 🔐"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    "_metadata": {"payload_id": "pid-badinput"},
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope_dict(
    public_key: rsa.RSAPublicKey,
    plaintext: bytes,
    *,
    aes_key: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """The PROTOCOL.md section 3 envelope of ``plaintext`` for ``public_key``."""
    key = aes_key if aes_key is not None else AESGCM.generate_key(256)
    iv = nonce if nonce is not None else os.urandom(12)
    sealed = AESGCM(key if len(key) in (16, 24, 32) else os.urandom(32)).encrypt(
        iv, plaintext, None
    )
    return {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {
            "ciphertext": b64(sealed[:-16]),
            "nonce": b64(iv),
            "tag": b64(sealed[-16:]),
        },
        "encrypted_aes_key": b64(public_key.encrypt(key, OAEP)),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
        "processed_at": 1700000000.25,
    }


def envelope_bytes(public_key: rsa.RSAPublicKey, plaintext: bytes, **kw: Any) -> bytes:
    return json.dumps(envelope_dict(public_key, plaintext, **kw)).encode()


def timed(call: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    """Run ``call``; return (result, exception, seconds). Only ``Exception`` is caught: a
    ``BaseException`` such as a Rust panic surfacing as PanicException must fail the test."""
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:
        return None, exc, time.monotonic() - started
    return result, None, time.monotonic() - started


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
