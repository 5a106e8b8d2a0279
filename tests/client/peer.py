"""A scriptable protocol peer on pyca/cryptography for unit tests over ``httpx2.MockTransport``.

It speaks PROTOCOL.md from the server side, independently of the Rust core, records what it
received (headers and the decrypted request) and can be told to answer with given statuses,
bodies, headers or a wrong ``payload_id``.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import open_envelope, seal_json


def seal_to(public_key: rsa.RSAPublicKey, payload: Any, **extra: Any) -> bytes:
    return seal_json(public_key, payload, **extra)[0]


def open_with(private_key: rsa.RSAPrivateKey, body: bytes) -> tuple[dict, dict]:
    plaintext, _key, envelope = open_envelope(private_key, body)
    return json.loads(plaintext), envelope


@dataclass
class Received:
    headers: dict[str, str]
    request: dict[str, Any]
    envelope: dict[str, Any]
    raw_body: bytes


@dataclass
class Peer:
    """State and scripted behaviour of the fake endpoint."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    script: list[httpx2.Response | Exception] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    key_fetches: int = 0
    posts: int = 0
    echo_payload_id: str | None = "echo"
    extra_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def fingerprint(self) -> str:
        import hashlib

        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET" and request.url.path == "/pki/public_key":
            self.key_fetches += 1
            return httpx2.Response(200, text=self.public_pem)
        assert request.method == "POST" and request.url.path == "/v1/chat/secure_completion"
        self.posts += 1
        body = request.read()
        plain, envelope = open_with(self.key, body)
        headers = dict(request.headers)
        self.received.append(Received(headers, plain, envelope, body))
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        client_pem = urllib.parse.unquote(request.headers["x-public-key"])
        client_key = serialization.load_pem_public_key(client_pem.encode())
        payload_id = request.headers["x-payload-id"]
        last_user = [m for m in plain["messages"] if m.get("role") == "user"][-1]["content"]
        metadata: dict[str, Any] = {
            "is_encrypted": True,
            "response_status": "success",
            "security_tier": request.headers.get("x-security-tier", "standard"),
            **self.extra_metadata,
        }
        if self.echo_payload_id == "echo":
            metadata["payload_id"] = payload_id
        elif self.echo_payload_id is not None:
            metadata["payload_id"] = self.echo_payload_id
        message: dict[str, Any] = {"role": "assistant", "content": f"echo: {last_user}"}
        if plain.get("tools"):
            tool = plain["tools"][0]["function"]["name"]
            message["tool_calls"] = [
                {"id": "call_0", "type": "function", "function": {"name": tool, "arguments": "{}"}}
            ]
        completion = {
            "id": "chatcmpl-peer",
            "object": "chat.completion",
            "created": 1700000000,
            "model": plain["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "_metadata": metadata,
        }
        return httpx2.Response(
            200, content=seal_to(client_key, completion, processed_at=1700000001)
        )
