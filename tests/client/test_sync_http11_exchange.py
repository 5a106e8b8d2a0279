"""The sync driver's own HTTP/1.1 layer (``_sync_http11``), against a raw loopback server in a
thread sending the crafted responses of ``test_http11_exchange``.

Both read paths: the direct one (a ``Content-Length`` body received with ``recv_into`` into its
own buffer) and the one through ``read()`` that a stream with its own ``read`` gets. Reuse is
counted at the server (its accepted connections).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from nomyo_native._body_buffers import POOLED_MIN_BYTES, BodyBuffer
from nomyo_native._sync_driver import DeadlineBackend, SyncDriver, _DeadlineTransport
from nomyo_native._sync_stream import DeadlineStream as _DeadlineStream

from .test_http11_exchange import NOT_REUSABLE, REFUSED, ok

LIMITS = httpx2.Limits(max_connections=10, max_keepalive_connections=5)
Reply = Callable[[socket.socket], None]


class ReadingStream(_DeadlineStream):
    """A stream whose ``read`` is its own: the HTTP/1.1 layer must read through it."""

    reads = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        ReadingStream.reads += 1
        return super().read(max_bytes, timeout)


class ReadingBackend(DeadlineBackend):
    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        return ReadingStream(super().connect_tcp(*args, **kwargs)._inner)


def make_client(path: str, timeout: float = 5) -> httpx2.Client:
    transport = _DeadlineTransport(None, LIMITS)
    if path == "read":
        transport._pool._network_backend = ReadingBackend()
    return httpx2.Client(transport=transport, timeout=timeout)


@pytest.fixture(params=["direct", "read"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Server:
    url: str
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)


def read_request(conn: socket.socket, pending: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    pending[:] = rest
    while len(pending) < length:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    body = bytes(pending[:length])
    del pending[:length]
    return body


@contextmanager
def serving(replies: Callable[[int], Reply | bytes]) -> Iterator[Server]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = Server(f"http://127.0.0.1:{listener.getsockname()[1]}")
    served = 0
    lock = threading.Lock()

    def handle(conn: socket.socket) -> None:
        nonlocal served
        pending = bytearray()
        with conn:
            while (body := read_request(conn, pending)) is not None:
                with lock:
                    server.requests.append(body)
                    reply = replies(served)
                    served += 1
                try:
                    if isinstance(reply, bytes):
                        conn.sendall(reply)
                    else:
                        reply(conn)
                except OSError:
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            server.accepted += 1
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        listener.close()


def get_body(http: httpx2.Client, url: str) -> list[bytes]:
    with http.stream("POST", url, content=b"ping") as response:
        return list(response.iter_raw())


def test_a_content_length_body_arrives_as_one_buffer_and_the_connection_is_reused(
    path: str,
) -> None:
    bodies = [b"first", b"x" * 300_000, b"third"]
    with serving(lambda n: ok(bodies[n])) as server, make_client(path) as http:
        for body in bodies:
            chunks = get_body(http, server.url)
            assert b"".join(chunks) == body
            if path == "direct":
                # The buffer it was received into (a large one's: a view of the kept one).
                [chunk] = chunks
                if len(body) > POOLED_MIN_BYTES:
                    assert type(chunk) is memoryview and type(chunk.obj) is BodyBuffer
                else:
                    assert type(chunk) is bytearray
    assert server.accepted == 1
    assert server.requests == [b"ping"] * 3


def test_a_body_in_one_byte_pieces_arrives_whole_and_the_connection_is_reused(
    path: str,
) -> None:
    body = bytes(range(256)) * 8

    def trickle(conn: socket.socket) -> None:
        for i, byte in enumerate(ok(body)):
            conn.sendall(bytes([byte]))
            if i % 64 == 0:
                time.sleep(0.001)

    replies: list[Reply | bytes] = [trickle, ok(b"after")]
    with serving(lambda n: replies[n]) as server, make_client(path) as http:
        assert b"".join(get_body(http, server.url)) == body
        assert b"".join(get_body(http, server.url)) == b"after"
    assert server.accepted == 1


def test_a_chunked_body_goes_through_h11_and_the_connection_is_reused(path: str) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    replies = [chunked, ok(b"next")]
    with serving(lambda n: replies[n]) as server, make_client(path) as http:
        assert b"".join(get_body(http, server.url)) == b"hello"
        assert b"".join(get_body(http, server.url)) == b"next"
    assert server.accepted == 1


@pytest.mark.parametrize("case", sorted(NOT_REUSABLE))
def test_an_unclear_exchange_closes_the_connection(path: str, case: str) -> None:
    replies = [NOT_REUSABLE[case], ok(b"fresh")]
    with serving(lambda n: replies[n]) as server, make_client(path) as http:
        assert b"".join(get_body(http, server.url)) == b"body"
        assert b"".join(get_body(http, server.url)) == b"fresh"
    assert server.accepted == 2


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_malformed_framing_is_a_protocol_error_and_closes_the_connection(
    path: str, case: str
) -> None:
    with serving(lambda n: REFUSED[case]) as server, make_client(path) as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            get_body(http, server.url)
        assert http._transport._pool.connections == []  # type: ignore[attr-defined]


def test_a_body_cut_short_is_a_protocol_error(path: str) -> None:
    def cut(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
        conn.shutdown(socket.SHUT_RDWR)

    with serving(lambda n: cut) as server, make_client(path) as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="received 10 bytes"):
            get_body(http, server.url)


def test_a_stalled_body_is_a_read_timeout_and_closes_the_connection(path: str) -> None:
    def stall(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        time.sleep(2)

    replies: list[Reply | bytes] = [stall, ok(b"fresh")]
    with serving(lambda n: replies[n]) as server, make_client(path, timeout=0.3) as http:
        with pytest.raises(httpx2.ReadTimeout):
            get_body(http, server.url)
        assert b"".join(get_body(http, server.url)) == b"fresh"
    assert server.accepted == 2


def test_large_and_small_request_bodies_arrive_whole(path: str) -> None:
    big = bytes(range(256)) * 12_000
    with serving(lambda n: ok(b"done")) as server, make_client(path) as http:
        assert http.post(server.url, content=big).content == b"done"
        assert http.post(server.url, content=b"ab").content == b"done"
    assert server.requests == [big, b"ab"]
    assert server.accepted == 1


def test_the_read_path_is_taken_for_a_stream_with_its_own_read() -> None:
    ReadingStream.reads = 0
    with serving(lambda n: ok(b"x" * 100_000)) as server, make_client("read") as http:
        assert len(b"".join(get_body(http, server.url))) == 100_000
    assert ReadingStream.reads >= 1


def test_the_driver_hands_on_a_large_body_as_received_and_a_small_one_as_bytes() -> None:
    large = bytes(range(256)) * 1000
    with serving(lambda n: ok(large if n == 0 else b"small")) as server:
        driver = SyncDriver(timeout=5, ssl_context=None, auth=None, transport=None, sleep=None)
        try:
            first = driver.send("POST", server.url, {}, b"a", 1 << 20, 10)
            second = driver.send("POST", server.url, {}, b"b", 1 << 20, 10)
        finally:
            driver.close()
    assert type(first.body) is memoryview and type(first.body.obj) is BodyBuffer
    assert first.body == large
    assert type(second.body) is bytes and second.body == b"small"
    assert server.accepted == 1


def test_a_body_arriving_in_many_pieces_is_received_in_few_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A TLS socket returns one record per receive: the view is filled in one call, not one
    # trip through the HTTP layer per record.
    body = bytes(range(256)) * 1200  # 300 KiB in 10 KiB pieces

    def pieces(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 10_240):
            time.sleep(0.002)
            conn.sendall(body[start : start + 10_240])

    calls: list[int] = []
    receive_into = _DeadlineStream._receive_into

    def counted(self: _DeadlineStream, view: memoryview, timeout: float | None) -> int:
        got = receive_into(self, view, timeout)
        calls.append(got)
        return got

    monkeypatch.setattr(_DeadlineStream, "_receive_into", counted)
    with serving(lambda n: pieces) as server, make_client("direct") as http:
        assert b"".join(get_body(http, server.url)) == body
    assert 1 <= len(calls) <= 3 and sum(calls) <= len(body)
