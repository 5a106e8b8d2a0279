"""A minimal protocol client on pyca/cryptography, written from PROTOCOL.md for these tests.

It lets the server suite build exact (and deliberately broken) requests without depending on
the native client, and open the responses the endpoint seals.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import build_envelope, open_envelope

PATH = "/v1/chat/secure_completion"


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def encode_uri_component(text: str) -> str:
    """JavaScript's encodeURIComponent (leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) alone)."""
    return urllib.parse.quote(text, safe="-_.!~*'()")


def seal(
    payload: dict[str, Any] | bytes, server_public_pem: str, *, aes_key: bytes | None = None
) -> tuple[dict[str, Any], bytes]:
    """The request envelope (as a dict) and the AES key used."""
    server_key = serialization.load_pem_public_key(server_public_pem.encode())
    assert isinstance(server_key, rsa.RSAPublicKey)
    plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return build_envelope(server_key, plaintext, aes_key=aes_key)


def open_response(body: bytes, client_key: rsa.RSAPrivateKey) -> tuple[dict[str, Any], bytes]:
    """The decrypted response object and the AES key the server chose."""
    plaintext, key, envelope = open_envelope(client_key, body)
    assert envelope["version"] == "1.0"
    assert envelope["algorithm"] == "hybrid-aes256-rsa4096"
    return json.loads(plaintext), key


@dataclass
class WireClient:
    """Builds and sends requests to one endpoint with one client key."""

    base_url: str
    server_public_pem: str
    client_key: rsa.RSAPrivateKey
    verify: Any = True
    api_key: str | None = None
    headers_extra: dict[str, str] = field(default_factory=dict)

    def headers(self, payload_id: str, *, tier: str | None = None) -> dict[str, str]:
        headers = {
            "X-Payload-ID": payload_id,
            "X-Public-Key": urllib.parse.quote(public_pem(self.client_key)),
            "Content-Type": "application/octet-stream",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if tier:
            headers["X-Security-Tier"] = tier
        headers.update(self.headers_extra)
        return headers

    def request(
        self, payload: dict[str, Any], *, tier: str | None = None, payload_id: str | None = None
    ) -> tuple[str, dict[str, str], bytes]:
        pid = payload_id or str(uuid.uuid4())
        envelope, _ = seal(payload, self.server_public_pem)
        return pid, self.headers(pid, tier=tier), json.dumps(envelope).encode()

    async def chat(
        self, http: httpx2.AsyncClient, text: str, *, model: str = "m", tier: str | None = None
    ) -> tuple[str, httpx2.Response]:
        payload = {"model": model, "messages": [{"role": "user", "content": text}]}
        pid, headers, body = self.request(payload, tier=tier)
        return pid, await http.post(self.base_url + PATH, headers=headers, content=body)
