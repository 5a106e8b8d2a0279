"""The PROTOCOL.md envelope built and opened with pyca/cryptography.

This is the independent peer the suites check the native core, the client and the endpoint
against: written from the spec, sharing no code with ``nomyo_native._core``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
VERSION = "1.0"
ALGORITHM = "hybrid-aes256-rsa4096"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_envelope(
    public_key: rsa.RSAPublicKey,
    plaintext: bytes,
    *,
    aes_key: bytes | None = None,
    nonce: bytes | None = None,
    oaep: padding.OAEP = OAEP,
    **extra: Any,
) -> tuple[dict[str, Any], bytes]:
    """The envelope of ``plaintext`` for ``public_key`` (as a dict) and the AES key used.

    ``oaep`` lets a test wrap the key with other OAEP parameters; ``extra`` adds or overrides
    top-level fields (``processed_at``, a downgraded ``version``...).
    """
    key = aes_key if aes_key is not None else AESGCM.generate_key(256)
    iv = nonce if nonce is not None else os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, None)
    envelope: dict[str, Any] = {
        "version": VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": {
            "ciphertext": b64(sealed[:-16]),
            "nonce": b64(iv),
            "tag": b64(sealed[-16:]),
        },
        "encrypted_aes_key": b64(public_key.encrypt(key, oaep)),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
        **extra,
    }
    return envelope, key


def seal_json(public_key: rsa.RSAPublicKey, payload: Any, **extra: Any) -> tuple[bytes, bytes]:
    """``payload`` as JSON, sealed: the envelope's bytes and the AES key used."""
    plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    envelope, key = build_envelope(public_key, plaintext, **extra)
    return json.dumps(envelope).encode(), key


def b64decode_strict(text: str) -> bytes:
    """Standard alphabet, padding required: what PROTOCOL.md allows, nothing more."""
    return base64.b64decode(text, validate=True)


def open_envelope(
    private_key: rsa.RSAPrivateKey, body: bytes | dict[str, Any]
) -> tuple[bytes, bytes, dict[str, Any]]:
    """Unwrap and decrypt: the plaintext, the AES key and the parsed envelope."""
    envelope = json.loads(body) if isinstance(body, bytes) else body
    key = private_key.decrypt(b64decode_strict(envelope["encrypted_aes_key"]), OAEP)
    inner = envelope["encrypted_payload"]
    plaintext = AESGCM(key).decrypt(
        b64decode_strict(inner["nonce"]),
        b64decode_strict(inner["ciphertext"]) + b64decode_strict(inner["tag"]),
        None,
    )
    return plaintext, key, envelope
