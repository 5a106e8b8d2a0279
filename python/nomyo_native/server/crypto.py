"""The server's half of the hybrid envelope (PROTOCOL.md sections 2-3), on pyca/cryptography.

This is deliberately an independent implementation of the protocol: it never imports the
native core, so the client and this peer check each other. Every failure to unwrap or
authenticate raises one opaque :class:`DecryptionFailed`; structural problems raise
:class:`EnvelopeError` naming the field and the rule it broke (never secret content).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PROTOCOL_VERSION = "1.0"
ALGORITHM = "hybrid-aes256-rsa4096"
KEY_ALGORITHM = "RSA-OAEP-SHA256"
PAYLOAD_ALGORITHM = "AES-256-GCM"
MIN_RSA_BITS = 2048
# Unix mode bits say who may read the server key; on Windows st_mode says 0o666 for any
# writable file, so the mode check applies on POSIX systems only.
MODE_BITS_MEAN_ACCESS = os.name == "posix"
SERVER_KEY_BITS = 4096
NONCE_BYTES = 12
TAG_BYTES = 16
AES_KEY_BYTES = 32
# A PEM of an RSA-16384 key is ~2.8 kB; percent-encoding at most triples it.
MAX_PUBLIC_KEY_HEADER_CHARS = 12_000
MAX_CLIENT_RSA_BITS = 16_384

_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class EnvelopeError(ValueError):
    """The request envelope is malformed or names an unsupported version/algorithm."""


class DecryptionFailed(Exception):
    """Unwrapping or authentication failed. One message for every cause, by design."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class ClientKeyError(ValueError):
    """The X-Public-Key header does not hold a usable RSA public key."""


class ServerKeyFileError(Exception):
    """The server key file cannot be loaded or written safely."""


@dataclass(frozen=True)
class SealedResponse:
    """A response envelope and the AES key that sealed it (kept only for key recording)."""

    body: bytes
    aes_key: bytes


@dataclass(frozen=True)
class OpenedRequest:
    """A decrypted request plaintext and the AES key the client chose."""

    plaintext: bytes
    aes_key: bytes


def spki_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """``"sha256:" + hex(SHA-256(SubjectPublicKeyInfo DER))``: the client's pin format."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


class ServerKey:
    """The endpoint's RSA key pair: request AES keys are wrapped under its public half."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if private_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"server key must be at least {MIN_RSA_BITS} bits")
        self._private_key = private_key
        self.public_key_pem: str = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )
        self.fingerprint: str = spki_fingerprint(private_key.public_key())
        self.bits: int = private_key.key_size

    @classmethod
    def generate(cls, bits: int = SERVER_KEY_BITS) -> ServerKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def load_or_create(
        cls, path: str | os.PathLike[str], password: bytes | None = None
    ) -> ServerKey:
        """Load a PKCS#8/PKCS#1 PEM key, or create a 4096-bit one there (mode 0600)."""
        key_path = Path(path)
        if not key_path.exists():
            key = cls.generate()
            key.save(key_path, password)
            return key
        mode = key_path.stat().st_mode
        # Windows reports 0o666 for any writable file: mode bits say nothing about access there.
        if MODE_BITS_MEAN_ACCESS and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ServerKeyFileError(
                f"{key_path} is accessible by group or others; run: chmod 600 {key_path}"
            )
        try:
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=password)
        except (ValueError, TypeError) as exc:
            # pyca's messages name the cause (wrong password, not PEM) without key content.
            raise ServerKeyFileError(f"cannot load server key {key_path}: {exc}") from None
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ServerKeyFileError(f"{key_path} is not an RSA private key")
        if loaded.key_size < MIN_RSA_BITS:
            raise ServerKeyFileError(
                f"{key_path} is {loaded.key_size} bits; minimum {MIN_RSA_BITS}"
            )
        return cls(loaded)

    def save(self, path: str | os.PathLike[str], password: bytes | None = None) -> None:
        """Write the private key as PKCS#8 PEM, created with mode 0600 (never wider)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

    def unwrap_aes_key(self, wrapped: bytes) -> bytes:
        if len(wrapped) != self._private_key.key_size // 8:
            raise DecryptionFailed
        try:
            key = self._private_key.decrypt(wrapped, _OAEP)
        except ValueError:
            raise DecryptionFailed from None
        if len(key) != AES_KEY_BYTES:
            raise DecryptionFailed
        return key


def parse_client_public_key(header_value: str) -> rsa.RSAPublicKey:
    """Decode X-Public-Key: ``quote(pem)`` or ``encodeURIComponent(pem)``, RSA >= 2048 bits."""
    if len(header_value) > MAX_PUBLIC_KEY_HEADER_CHARS:
        raise ClientKeyError("X-Public-Key is too long")
    try:
        pem = urllib.parse.unquote(header_value, errors="strict")
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, UnicodeError):
        raise ClientKeyError("X-Public-Key is not a PEM public key") from None
    except Exception:  # pyca raises UnsupportedAlgorithm for unknown key types
        raise ClientKeyError("X-Public-Key holds an unsupported key type") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ClientKeyError("X-Public-Key must be an RSA public key")
    if key.key_size < MIN_RSA_BITS:
        raise ClientKeyError(f"X-Public-Key is {key.key_size} bits; minimum is {MIN_RSA_BITS}")
    if key.key_size > MAX_CLIENT_RSA_BITS:
        raise ClientKeyError(
            f"X-Public-Key is {key.key_size} bits; maximum is {MAX_CLIENT_RSA_BITS}"
        )
    return key


def _b64_field(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{name} is not valid base64") from None


def _parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError("body is not a JSON envelope") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError("envelope must be a JSON object")
    for field in ("version", "algorithm", "encrypted_payload", "encrypted_aes_key"):
        if field not in envelope:
            raise EnvelopeError(f"envelope is missing '{field}'")
    if envelope["version"] != PROTOCOL_VERSION:
        raise EnvelopeError(f"unsupported version; expected '{PROTOCOL_VERSION}'")
    if envelope["algorithm"] != ALGORITHM:
        raise EnvelopeError(f"unsupported algorithm; expected '{ALGORITHM}'")
    # The two sub-algorithm fields are optional, but when present they must not disagree.
    if envelope.get("key_algorithm", KEY_ALGORITHM) != KEY_ALGORITHM:
        raise EnvelopeError(f"unsupported key_algorithm; expected '{KEY_ALGORITHM}'")
    if envelope.get("payload_algorithm", PAYLOAD_ALGORITHM) != PAYLOAD_ALGORITHM:
        raise EnvelopeError(f"unsupported payload_algorithm; expected '{PAYLOAD_ALGORITHM}'")
    if not isinstance(envelope["encrypted_payload"], dict):
        raise EnvelopeError("encrypted_payload must be an object")
    return envelope


def open_request(body: bytes, server_key: ServerKey) -> OpenedRequest:
    """Check the envelope, unwrap the AES key and decrypt. CPU-bound: call off the event loop."""
    envelope = _parse_envelope(body)
    payload = envelope["encrypted_payload"]
    for field in ("ciphertext", "nonce", "tag"):
        if field not in payload:
            raise EnvelopeError(f"encrypted_payload is missing '{field}'")
    ciphertext = _b64_field(payload["ciphertext"], "encrypted_payload.ciphertext")
    nonce = _b64_field(payload["nonce"], "encrypted_payload.nonce")
    tag = _b64_field(payload["tag"], "encrypted_payload.tag")
    wrapped_key = _b64_field(envelope["encrypted_aes_key"], "encrypted_aes_key")
    if len(nonce) != NONCE_BYTES:
        raise EnvelopeError(f"encrypted_payload.nonce must be {NONCE_BYTES} bytes")
    if len(tag) != TAG_BYTES:
        raise EnvelopeError(f"encrypted_payload.tag must be {TAG_BYTES} bytes")
    aes_key = server_key.unwrap_aes_key(wrapped_key)
    try:
        plaintext = AESGCM(aes_key).decrypt(nonce, ciphertext + tag, None)
    except InvalidTag:
        raise DecryptionFailed from None
    return OpenedRequest(plaintext=plaintext, aes_key=aes_key)


def seal_response(plaintext: bytes, client_key: rsa.RSAPublicKey) -> SealedResponse:
    """Encrypt a response to the client's key: fresh AES key and nonce for every response."""
    aes_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(aes_key).encrypt(nonce, plaintext, None)
    ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    envelope = {
        "version": PROTOCOL_VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": {
            "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "tag": base64.b64encode(tag).decode("ascii"),
        },
        "encrypted_aes_key": base64.b64encode(client_key.encrypt(aes_key, _OAEP)).decode("ascii"),
        "key_algorithm": KEY_ALGORITHM,
        "payload_algorithm": PAYLOAD_ALGORITHM,
        "processed_at": time.time(),
    }
    return SealedResponse(body=json.dumps(envelope).encode("utf-8"), aes_key=aes_key)
