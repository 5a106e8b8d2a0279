"""Real envelopes to mutate, built by pyca/cryptography as an independent peer, and the checks
every mutated case must pass: a typed error (or the original plaintext), in bounded time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import OAEP, b64, build_envelope

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


def envelope_dict(
    public_key: rsa.RSAPublicKey,
    plaintext: bytes,
    *,
    aes_key: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """The PROTOCOL.md section 3 envelope of ``plaintext`` for ``public_key``.

    An ``aes_key`` of a length AES cannot use is wrapped as given while the payload is encrypted
    under a random key: the wrong-length-key case.
    """
    usable = aes_key is None or len(aes_key) in (16, 24, 32)
    envelope, _key = build_envelope(
        public_key,
        plaintext,
        aes_key=aes_key if usable else None,
        nonce=nonce,
        processed_at=1700000000.25,
    )
    if not usable:
        assert aes_key is not None
        envelope["encrypted_aes_key"] = b64(public_key.encrypt(aes_key, OAEP))
    return envelope


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
