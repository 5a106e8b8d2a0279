"""A purpose-built protocol peer on loopback that misbehaves on command.

The local endpoint is a well-behaved server; fault injection needs one that drops connections
mid-body, stalls, answers non-JSON errors or asks to retry later, at the socket level, where
``httpx2.MockTransport`` cannot reach. This peer speaks just enough HTTP/1.1 (keep-alive,
Content-Length bodies) and the protocol of PROTOCOL.md on pyca/cryptography, independently of
the Rust core. Every POST it receives is decrypted and recorded with its AES keys, so that the
forensics scan can hunt for them in the client afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import open_envelope, seal_json

COMPLETION_PATH = "/v1/chat/secure_completion"
KEY_PATH = "/pki/public_key"
ECHO_PREFIX = "ECHO<"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Action:
    """What the peer does with one POST. ``kind``:

    * ``ok``: a correct encrypted chat completion echoing the last user message;
    * ``status``: answer ``status`` with ``body`` and ``headers`` (no encryption);
    * ``drop_mid_body``: send the headers of a correct 200 and half its body, then close;
    * ``close``: close the connection without answering;
    * ``close_before_body``: close after the request headers, before reading the body;
    * ``stall``: never answer (until the peer stops);
    * ``trickle``: send the headers of a correct 200, then its body one byte every
      ``TRICKLE_INTERVAL`` seconds (a slow-loris answer that never idles long enough for a read
      timeout);
    * ``body``: a 200 whose body is ``body`` as given (a broken envelope);
    * ``tamper``: a correct 200 envelope with one ciphertext bit flipped (it unwraps, then
      fails authentication).
    """

    kind: str
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


OK = Action("ok")
DROP_MID_BODY = Action("drop_mid_body")
CLOSE = Action("close")
STALL = Action("stall")
TAMPER = Action("tamper")
CLOSE_BEFORE_BODY = Action("close_before_body")
TRICKLE = Action("trickle")
TRICKLE_INTERVAL = 0.2


def status(code: int, body: bytes | str = b"", **headers: str) -> Action:
    data = body.encode() if isinstance(body, str) else body
    pairs = tuple((name.replace("_", "-"), value) for name, value in headers.items())
    return Action("status", code, data, pairs)


def json_status(code: int, detail: str, **headers: str) -> Action:
    return status(code, json.dumps({"detail": detail}), content_type="application/json", **headers)


@dataclass
class Post:
    """One POST as the peer saw it."""

    arrived: float
    action: str
    payload_id: str
    request: dict[str, Any] | None
    request_key: bytes | None
    response_key: bytes | None = None


@dataclass
class LoopbackPeer:
    key: rsa.RSAPrivateKey
    script: deque[Action] = field(default_factory=deque)
    # Answers to GET /pki/public_key, in order: a ``status`` action is sent as scripted, any
    # other (and an empty script) sends the key.
    key_script: deque[Action] = field(default_factory=deque)
    posts: list[Post] = field(default_factory=list)
    key_fetches: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._lock = threading.Lock()
        self.port = 0

    # ---- lifecycle (called from the test's thread) ------------------------------------------

    def start(self) -> LoopbackPeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> LoopbackPeer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def then(self, *actions: Action) -> LoopbackPeer:
        with self._lock:
            self.script.extend(actions)
        return self

    def _pop_if(self, kind: str) -> bool:
        """Consume the next scripted action when it is ``kind``."""
        with self._lock:
            if self.script and self.script[0].kind == kind:
                self.script.popleft()
                return True
            return False

    def recorded_keys(self) -> list[bytes]:
        """Every AES key of every exchange: the clients' request keys and our response keys."""
        keys = []
        for post in self.posts:
            keys.extend(k for k in (post.request_key, post.response_key) if k is not None)
        return keys

    # ---- server (on the peer's own loop) ----------------------------------------------------

    async def _listen(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._stopping is not None and self._server is not None
        self._stopping.set()
        self._server.close()
        # Connection handlers (a stalled or trickling answer) would otherwise still be pending
        # when the loop closes; on this loop every other task is one of them.
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                method, path, headers = head
                if method == "POST" and self._pop_if("close_before_body"):
                    # Hang up while the client is still sending its request body.
                    self.posts.append(Post(time.monotonic(), "close_before_body", "", None, None))
                    return
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path == KEY_PATH:
                    self.key_fetches += 1
                    with self._lock:
                        scripted = self.key_script.popleft() if self.key_script else OK
                    if scripted.kind == "status":
                        await _respond(
                            writer, scripted.status, scripted.body, list(scripted.headers)
                        )
                        continue
                    pem = self.key.public_key().public_bytes(
                        serialization.Encoding.PEM,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                    await _respond(writer, 200, pem, [("Content-Type", "text/plain")])
                elif method == "POST" and path == COMPLETION_PATH:
                    if not await self._post(writer, headers, body):
                        return
                else:
                    await _respond(writer, 404, b'{"detail": "not found"}', [])
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _post(
        self, writer: asyncio.StreamWriter, headers: dict[str, str], body: bytes
    ) -> bool:
        """Handle one POST; False when the connection must end."""
        with self._lock:
            action = self.script.popleft() if self.script else OK
        post = Post(time.monotonic(), action.kind, headers.get("x-payload-id", ""), None, None)
        self.posts.append(post)
        try:
            post.request, post.request_key = _open_request(self.key, body)
        except Exception:  # a client sending garbage is itself what a test may look for
            post.request = None
        if action.kind == "status":
            await _respond(writer, action.status, action.body, list(action.headers))
            return True
        if action.kind == "body":
            await _respond(writer, 200, action.body, [])
            return True
        if action.kind == "close":
            return False
        if action.kind == "stall":
            assert self._stopping is not None
            await self._stopping.wait()
            return False
        envelope, post.response_key = self._reply(headers, post)
        if action.kind == "tamper":
            envelope = _flip_ciphertext_bit(envelope)
        if action.kind == "drop_mid_body":
            head = _head(200, len(envelope), [("Content-Type", "application/octet-stream")])
            writer.write(head + envelope[: len(envelope) // 2])
            await writer.drain()
            return False
        if action.kind == "trickle":
            writer.write(_head(200, len(envelope), [("Content-Type", "application/octet-stream")]))
            for offset in range(len(envelope)):
                writer.write(envelope[offset : offset + 1])
                await writer.drain()
                await asyncio.sleep(TRICKLE_INTERVAL)
            return False
        await _respond(writer, 200, envelope, [("Content-Type", "application/octet-stream")])
        return True

    def _reply(self, headers: dict[str, str], post: Post) -> tuple[bytes, bytes]:
        client_pem = urllib.parse.unquote(headers["x-public-key"]).encode()
        client_key = serialization.load_pem_public_key(client_pem)
        assert isinstance(client_key, rsa.RSAPublicKey)
        messages = (post.request or {}).get("messages") or [{}]
        last = messages[-1].get("content", "") if isinstance(messages[-1], dict) else ""
        completion = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": (post.request or {}).get("model", "loopback"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"{ECHO_PREFIX}{last}>"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "_metadata": {
                "payload_id": post.payload_id,
                "tpm_attestation": {"is_available": False},
            },
        }
        return _seal(client_key, json.dumps(completion).encode())


def _open_request(key: rsa.RSAPrivateKey, body: bytes) -> tuple[dict[str, Any], bytes]:
    plaintext, aes_key, _envelope = open_envelope(key, body)
    return json.loads(plaintext), aes_key


def _seal(public_key: rsa.RSAPublicKey, plaintext: bytes) -> tuple[bytes, bytes]:
    return seal_json(public_key, plaintext, processed_at=time.time())


def _flip_ciphertext_bit(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    sealed = doc["encrypted_payload"]
    ciphertext = bytearray(base64.b64decode(sealed["ciphertext"]))
    ciphertext[len(ciphertext) // 2] ^= 0x01
    sealed["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    return json.dumps(doc).encode()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, urllib.parse.urlsplit(target).path, headers


def _head(code: int, length: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Status')}", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _respond(
    writer: asyncio.StreamWriter, code: int, body: bytes, headers: list[tuple[str, str]]
) -> None:
    writer.write(_head(code, len(body), headers) + body)
    await writer.drain()


def raw_body(data: bytes) -> Action:
    """A 200 whose body is ``data`` verbatim (a broken or hostile envelope)."""
    return Action("body", 200, data)


def chat_request(text: str) -> dict[str, Any]:
    """``chat.create``'s arguments for one user message ``text`` to the loopback peer."""
    return {"model": "loopback-model", "messages": [{"role": "user", "content": text}]}
