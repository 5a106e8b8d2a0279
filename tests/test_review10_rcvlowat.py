"""Review 10: a connection whose body was left half-read while its receive low-water mark was
raised (``_rcvlowat``) must not serve the next request with the mark still up. The next answer's
head is a few dozen bytes: on a socket still waiting for a megabyte it would wake the reader only
at the read timeout. The body is left by a read timeout (both drivers) and by a cancelled request
(async); the next request on the same client must be answered at once, and every socket the
client keeps must have its mark back at 1. (A declared-length body is handed on whole, so a
caller cannot stop reading it half-way.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from tests.client.tls_certs import Authority, server_context

from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._http_body import LIMITS
from nomyo_native._sync_driver import _DeadlineTransport

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_RCVLOWAT") or sys.platform == "win32",
    reason="no receive low-water mark here: nothing is paced",
)

BODY = bytes(range(251)) * (3 * 1024 * 1024 // 251)
# One batch (a mark's worth: 1 MiB) and most of a second one.
HALF = 2 * 1024 * 1024 - 4096
# The read timeout: far above how long an answer takes here; a request that takes this long
# waited under a mark left raised.
READ_TIMEOUT = 8.0
PROMPT = 3.0


class KeepAliveServer:
    """Answers every request on every connection with ``BODY``; the first request of the whole
    server gets a batch of it and then, short of the next batch, nothing (the client leaves it
    half-read, its reader waiting under the mark for the rest)."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.connections = 0
        self.half_sent = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        port = self.listener.getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self.stopping.is_set():
                raw, _ = self.listener.accept()
                self.connections += 1
                threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), raw:
            sock = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
            sock.settimeout(30)
            pending = b""
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in pending:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pending += data
                pending = pending.split(b"\r\n\r\n", 1)[1]
                self.requests += 1
                head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)
                if self.requests == 1:
                    sock.sendall(head + BODY[:HALF])
                    self.half_sent.set()
                    self.stopping.wait(30)
                    return
                sock.sendall(head + BODY)

    def __enter__(self) -> KeepAliveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("review10-lowat") / "ca")


@pytest.fixture(scope="module")
def tls(authority: Authority, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = authority.issue(tmp_path_factory.mktemp("review10-lowat-leaf"))
    return server_context(cert, key, None)


def _timeout() -> httpx2.Timeout:
    return httpx2.Timeout(30.0, read=READ_TIMEOUT)


def _context(ca: Path) -> CoreTlsContext:
    return CoreTlsContext.from_locations(str(ca), None)


def _marks_of_kept_connections(transport: object) -> list[int]:
    """The receive low-water mark of every socket the transport's pool keeps open."""
    pool = transport._pool  # type: ignore[attr-defined]
    marks = []
    for connection in pool.connections:
        stream = connection.network_stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None and sock.fileno() >= 0:
            marks.append(int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)))
    return marks


@pytest.fixture(params=["plain", "tls"])
def server(request: pytest.FixtureRequest, tls: ssl.SSLContext) -> Iterator[KeepAliveServer]:
    with KeepAliveServer(tls if request.param == "tls" else None) as running:
        yield running


# The first request's read timeout: it gives up on the half-sent body.
GIVE_UP = 0.5


@pytest.mark.parametrize("leave", ["timed out", "cancelled"])
def test_async_a_body_left_half_read_does_not_hold_the_next_request(
    server: KeepAliveServer, authority: Authority, leave: str
) -> None:
    async def run() -> tuple[float, bytes, list[int]]:
        transport = AsyncioTLSTransport(_context(authority.path), LIMITS)
        async with httpx2.AsyncClient(transport=transport, timeout=_timeout()) as http:
            if leave == "timed out":
                with pytest.raises(httpx2.ReadTimeout):
                    await http.get(server.url, timeout=httpx2.Timeout(30.0, read=GIVE_UP))
            else:
                task = asyncio.ensure_future(http.get(server.url))
                while not server.half_sent.is_set():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # the reader is waiting under its mark by now
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            started = time.monotonic()
            response = await http.get(server.url)
            took = time.monotonic() - started
            return took, response.content, _marks_of_kept_connections(transport)

    took, body, marks = asyncio.run(run())
    assert body == BODY
    assert took < PROMPT, f"the next request took {took:.1f} s"
    assert marks and set(marks) == {1}, marks


def test_sync_a_body_left_half_read_does_not_hold_the_next_request(
    server: KeepAliveServer, authority: Authority
) -> None:
    if server.tls is None:
        pytest.skip("the sync driver paces the core's TLS only")
    transport = _DeadlineTransport(_context(authority.path), LIMITS)
    with httpx2.Client(transport=transport, timeout=_timeout()) as http:
        with pytest.raises(httpx2.ReadTimeout):
            http.get(server.url, timeout=httpx2.Timeout(30.0, read=GIVE_UP))
        started = time.monotonic()
        response = http.get(server.url)
        took = time.monotonic() - started
        marks = _marks_of_kept_connections(transport)
    assert response.content == BODY
    assert took < PROMPT, f"the next request took {took:.1f} s"
    assert marks and set(marks) == {1}, marks
