"""Slow and idle clients cannot pin the endpoint (issue 10, item 13).

Stalled TLS handshakes, unfinished headers and stalled or trickled bodies are dropped (408
where a request was under way) while good requests keep being served; connections beyond the
cap and bodies beyond the in-flight budget get 503. The deadlines here are short (a few
seconds); each wait below is bounded generously so the tests never depend on timing, only on
the server eventually closing what the old endpoint held forever.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from nomyo_native.server import RunningServer
from nomyo_native.server.config import ServerConfig

from .conftest import ssl_context_for
from .wire import PATH, WireClient, open_response

CHAT = {"model": "m", "messages": [{"role": "user", "content": "still served"}]}
# Far above the configured deadlines: only a server that never drops a client reaches it.
DROP_BOUND_SECONDS = 60.0
# Short, yet long enough that a good request on a loaded machine is never cut.
SHORT = dict(header_timeout=3.0, body_timeout=3.0, request_timeout=8.0, tls_handshake_timeout=3.0)


def _address(endpoint: RunningServer) -> tuple[str, int]:
    parts = urlsplit(endpoint.base_url)
    return parts.hostname or "127.0.0.1", parts.port or 0


def _connect(endpoint: RunningServer, tls: bool) -> socket.socket:
    raw = socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS)
    if not tls:
        return raw
    context = ssl_context_for(endpoint)
    assert isinstance(context, ssl.SSLContext)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (raises socket.timeout past the bound)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return received
        except ssl.SSLError as exc:  # e.g. a handshake the server abandoned
            if "timed out" in str(exc):
                raise
            return received
        if not chunk:
            return received
        received += chunk


def _request_head(wire: WireClient, content_length: int) -> bytes:
    headers = wire.headers(str(uuid.uuid4()))
    headers["Content-Length"] = str(content_length)
    headers["Host"] = "127.0.0.1"
    lines = [f"POST {PATH} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _good_request(wire: WireClient, client_key: Any) -> None:
    pid, headers, body = wire.request(CHAT)
    response = httpx2.post(wire.base_url + PATH, headers=headers, content=body, verify=wire.verify)
    assert response.status_code == 200
    assert open_response(response.content, client_key)[0]["_metadata"]["payload_id"] == pid


def _stalled_clients(
    endpoint: RunningServer, wire: WireClient, count: int
) -> list[tuple[str, socket.socket]]:
    """``count`` clients, stalled in turn in the TLS handshake, in headers, and in the body."""
    stalled: list[tuple[str, socket.socket]] = []
    kinds = ["handshake", "headers", "body"]
    for index in range(count):
        kind = kinds[index % len(kinds)]
        if kind == "handshake":
            sock = socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS)
        else:
            sock = _connect(endpoint, tls=True)
            head = _request_head(wire, 5000)
            if kind == "headers":
                sock.sendall(head[: len(head) // 2])
            else:
                sock.sendall(head + b'{"version": ')  # 12 of the announced 5000 bytes
        stalled.append((kind, sock))
    return stalled


@pytest.mark.slow
def test_stalled_clients_are_dropped_while_good_requests_are_served(
    endpoint_factory: Callable[..., RunningServer], wire_for, client_key
):
    endpoint = endpoint_factory(tls_self_signed=True, **SHORT)
    wire = wire_for(endpoint)
    stalled = _stalled_clients(endpoint, wire, 40)
    try:
        for _ in range(3):
            _good_request(wire, client_key)
        answers = {kind: [] for kind in ("handshake", "headers", "body")}
        for kind, sock in stalled:
            answers[kind].append(_read_until_closed(sock))
    finally:
        for _, sock in stalled:
            sock.close()
    # Every stalled client was dropped; a request under way learned why.
    assert all(answer == b"" for answer in answers["handshake"])
    for kind in ("headers", "body"):
        assert answers[kind], kind
        for answer in answers[kind]:
            assert answer.startswith(b"HTTP/1.1 408 "), (kind, answer[:80])
            assert b"connection: close" in answer.lower()
    _good_request(wire, client_key)


@pytest.mark.slow
def test_slow_loris_on_a_kept_alive_connection_is_dropped(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(**SHORT)
    wire = wire_for(endpoint)
    _, _, body = wire.request(CHAT)
    with socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS) as sock:
        sock.sendall(_request_head(wire, len(body)) + body)
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        # Read the rest of the first response, then dribble a second request's headers
        # slower than the header deadline allows in total.
        length = int(first.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        rest = first.split(b"\r\n\r\n", 1)[1]
        while len(rest) < length:
            rest += sock.recv(65536)
        # 0.2 s a byte: 12 s in all, far beyond the 3 s header deadline.
        for byte in b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 3:
            if select.select([sock], [], [], 0.2)[0]:
                break  # the server answered: stop sending
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    _good_request(wire, client_key)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_stalled_request_pipelined_behind_a_good_one_gets_408(endpoint_factory, tls):
    endpoint = endpoint_factory(tls_self_signed=tls, **SHORT)
    good = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with _connect(endpoint, tls) as sock:
        sock.sendall(good + good[:20])  # the second request never finishes its headers
        answer = _read_until_closed(sock)
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in rest
    assert b"request headers took too long" in rest


@pytest.mark.slow
def test_trickled_body_is_cut_at_the_request_timeout(endpoint_factory, wire_for, client_key):
    # Never idle for body_timeout, but never finished either.
    endpoint = endpoint_factory(header_timeout=5.0, body_timeout=3.0, request_timeout=2.0)
    wire = wire_for(endpoint)
    with socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS) as sock:
        sock.sendall(_request_head(wire, 5000))
        answer = b""
        for _ in range(200):
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.1)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(DROP_BOUND_SECONDS)
        answer += _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"too slowly" in answer
    _good_request(wire, client_key)


class _HeldBackend:
    """Answers only once released: its requests are being served, not waiting on clients."""

    name = "held"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = 0

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        self.holding += 1
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        message = {"role": "assistant", "content": "released"}
        return {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}

    async def aclose(self) -> None:
        self.release.set()


def test_connections_beyond_the_cap_get_503(endpoint_factory, wire_for, client_key):
    backend = _HeldBackend()
    endpoint = endpoint_factory(max_connections=5, header_timeout=60.0, backend=backend)
    wire = wire_for(endpoint)
    held = []
    try:
        for _ in range(5):  # five requests being answered: none of them waits on its client
            _, _, body = wire.request(CHAT)
            sock = socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS)
            sock.sendall(_request_head(wire, len(body)) + body)
            held.append(sock)
        deadline = time.monotonic() + DROP_BOUND_SECONDS
        while backend.holding < 5:
            assert time.monotonic() < deadline, "the held requests never reached the backend"
            time.sleep(0.05)
        with socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS) as extra:
            answer = _read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in answer.lower()
        assert b"too many connections" in answer
    finally:
        backend.release.set()
        for sock in held:
            sock.close()
    # Once the held requests are answered, requests are served again.
    deadline = time.monotonic() + DROP_BOUND_SECONDS
    while True:
        try:
            _good_request(wire, client_key)
            break
        except (AssertionError, httpx2.TransportError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stall(endpoint: RunningServer, wire: WireClient, kind: str, tls: bool) -> socket.socket:
    """A client stalled in one way: connected and silent, mid-headers, mid-body (a
    Content-Length or a chunked one), or idle on a kept-alive connection after a response."""
    sock = _connect(endpoint, tls)
    head = _request_head(wire, 5000)
    if kind == "headers":
        sock.sendall(head[:7])
    elif kind == "body":
        sock.sendall(head + b'{"version": ')
    elif kind == "chunked":
        chunked = head.replace(b"Content-Length: 5000", b"Transfer-Encoding: chunked")
        sock.sendall(chunked + b'5\r\n{"ver\r\n')
    elif kind == "keep-alive":
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b'"status"' not in answer:
            answer += sock.recv(65536)
    return sock


STALLS = ["silent", "headers", "body", "chunked", "keep-alive"]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_stalled_clients_beyond_the_cap_do_not_lock_good_requests_out(
    endpoint_factory, wire_for, client_key, tls
):
    # Deadlines far away: only displacing the stalled clients can let a good request in.
    endpoint = endpoint_factory(
        tls_self_signed=tls,
        max_connections=4,
        header_timeout=120.0,
        body_timeout=120.0,
        request_timeout=240.0,
    )
    wire = wire_for(endpoint)
    stalled = [_stall(endpoint, wire, STALLS[i % len(STALLS)], tls) for i in range(4 * 6)]
    try:
        for _ in range(3):
            _good_request(wire, client_key)
        # Those displaced learned why where a request was under way, and are closed.
        dropped = [_read_until_closed(sock) for sock in stalled[:12]]
    finally:
        for sock in stalled:
            sock.close()
    for index, answer in enumerate(dropped):
        kind = STALLS[index % len(STALLS)]
        if kind in ("headers", "body", "chunked"):
            assert answer.startswith(b"HTTP/1.1 408 "), (kind, answer[:80])
            assert b"connection limit" in answer
        elif kind == "silent":
            assert answer == b"", (kind, answer[:80])
    assert len(endpoint._server.server_state.connections) <= 4
    _good_request(wire, client_key)


def test_request_bodies_beyond_the_in_flight_budget_get_503(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(
        max_body_bytes=100_000, max_inflight_body_bytes=250_000, body_timeout=60.0
    )
    wire = wire_for(endpoint)
    budget = endpoint._resources.state.body_budget
    stalled = []
    try:
        for _ in range(2):
            sock = socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS)
            sock.sendall(_request_head(wire, 100_000) + b"{")
            stalled.append(sock)
        deadline = time.monotonic() + DROP_BOUND_SECONDS
        while budget.in_use < 200_000:
            assert time.monotonic() < deadline, "the stalled bodies were never reserved"
            time.sleep(0.05)
        # A third large body does not fit: refused at once, before it is read.
        _, headers, _ = wire.request(CHAT)
        response = httpx2.post(wire.base_url + PATH, headers=headers, content=b"{" + b" " * 99_999)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "retry shortly" in response.json()["detail"]
        # A small one still fits beside them.
        _good_request(wire, client_key)
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + DROP_BOUND_SECONDS
    while budget.in_use:
        assert time.monotonic() < deadline, "reserved body bytes were never given back"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("header_timeout", 0),
        ("body_timeout", -1),
        ("request_timeout", 0),
        ("tls_handshake_timeout", 0),
        ("max_connections", 0),
    ],
)
def test_limits_must_be_positive(option, value):
    with pytest.raises(ValueError, match=option):
        ServerConfig(**{option: value})
    with pytest.raises(ValueError, match="max_inflight_body_bytes"):
        ServerConfig(max_body_bytes=100_000, max_inflight_body_bytes=50_000)


@pytest.mark.slow
def test_dropped_clients_free_their_connection_slots(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(max_connections=3, **SHORT)
    wire = wire_for(endpoint)
    head = _request_head(wire, 100)
    for _ in range(3):
        stalled = [
            socket.create_connection(_address(endpoint), timeout=DROP_BOUND_SECONDS)
            for _ in range(3)
        ]
        try:
            for sock in stalled:
                sock.sendall(head[:20])
            for sock in stalled:
                assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        finally:
            for sock in stalled:
                sock.close()
        # Were their slots leaked, the cap of 3 would now answer 503.
        deadline = time.monotonic() + DROP_BOUND_SECONDS
        while len(endpoint._server.server_state.connections) > 0:
            assert time.monotonic() < deadline, "dropped connections still counted"
            time.sleep(0.05)
        _good_request(wire, client_key)


@pytest.mark.slow
def test_client_that_never_reads_its_response_is_dropped(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(body_timeout=3.0, request_timeout=60.0)
    wire = wire_for(endpoint)
    # A ~8 MiB sealed answer: far more than the socket buffers between us can hold.
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * (6 * 1024 * 1024)}]}
    _, _, body = wire.request(big)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(DROP_BOUND_SECONDS)
    try:
        sock.connect(_address(endpoint))
        sock.sendall(_request_head(wire, len(body)) + body)
        connections = endpoint._server.server_state.connections
        deadline = time.monotonic() + DROP_BOUND_SECONDS
        while not connections:  # the request is being answered
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Never reading, the client is dropped with the response buffered for it ...
        while connections:
            assert time.monotonic() < deadline, "a client that never reads was kept"
            time.sleep(0.05)
        # ... and others are served.
        _good_request(wire, client_key)
    finally:
        sock.close()
