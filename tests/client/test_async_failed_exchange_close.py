"""A failed, cancelled or unread exchange on the async driver's connections is dropped at once.

A graceful close of a TLS connection sends close_notify and waits (at most
``_asyncio_tls_backend._CLOSE_TIMEOUT``) for the peer's; a peer that stopped answering never
sends it, so every timeout or deadline against it came that much late, once per attempt. The
bound is raised to an hour here: an exchange whose failure waited for it would never end
(``HANG_GUARD`` ends the test instead). Against a real TLS listener on loopback that reads the
request and then answers nothing, not even close_notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from nomyo_native import _asyncio_tls_backend
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport

from .test_asyncio_tls_backend import server_tls

LIMITS = httpx2.Limits(max_connections=10, max_keepalive_connections=5)
# Far above any wait below, and below asyncio's own bound on a TLS shutdown (30 s): only reached
# if a failed exchange waits for the peer's close_notify.
HANG_GUARD = 15.0
# What the server sends before it stops answering, by case.
SENT_BEFORE_SILENCE = {
    "no head": b"",
    "part of a body": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000,
}


def _answer_then_hang(
    listener: socket.socket, context: ssl.SSLContext, sent: bytes, stop: threading.Event
) -> None:
    """Reads a request on each connection, sends ``sent``, then neither reads nor answers."""
    held: list[ssl.SSLSocket] = []
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            raw, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        conn = context.wrap_socket(raw, server_side=True)
        conn.recv(65536)
        if sent:
            conn.sendall(sent)
        held.append(conn)
    for conn in held:
        conn.close()


@pytest.fixture(params=sorted(SENT_BEFORE_SILENCE))
def silent_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, ssl.SSLContext]]:
    monkeypatch.setattr(_asyncio_tls_backend, "_CLOSE_TIMEOUT", 3600.0)
    server_context, client_context = server_tls(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sent = SENT_BEFORE_SILENCE[request.param]
    thread = threading.Thread(
        target=_answer_then_hang, args=(listener, server_context, sent, stop), daemon=True
    )
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", client_context
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


async def test_a_read_timeout_drops_the_connection_without_waiting_for_the_peer(
    silent_server: tuple[str, ssl.SSLContext],
) -> None:
    url, client_context = silent_server
    transport = AsyncioTLSTransport(client_context, LIMITS)
    async with httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5, read=0.2)) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await asyncio.wait_for(http.get(url), HANG_GUARD)
        assert transport._pool.connections == []


async def test_a_deadline_drops_the_connection_without_waiting_for_the_peer(
    silent_server: tuple[str, ssl.SSLContext],
) -> None:
    url, client_context = silent_server
    transport = AsyncioTLSTransport(client_context, LIMITS)
    async with httpx2.AsyncClient(transport=transport, timeout=30) as http:

        async def within_deadline() -> None:
            async with asyncio.timeout(0.3):
                await http.get(url)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(within_deadline(), HANG_GUARD)
        assert transport._pool.connections == []


async def test_a_response_closed_unread_drops_the_connection_without_waiting_for_the_peer(
    silent_server: tuple[str, ssl.SSLContext],
) -> None:
    url, client_context = silent_server
    transport = AsyncioTLSTransport(client_context, LIMITS)
    async with httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5, read=0.2)) as http:

        async def head_only() -> None:
            async with http.stream("GET", url):
                pass  # the caller drops the answer unread

        try:
            await asyncio.wait_for(head_only(), HANG_GUARD)
        except httpx2.ReadTimeout:
            pass  # the server sent no head at all
        assert transport._pool.connections == []


def _answer_then_junk_when_idle(
    listener: socket.socket, context: ssl.SSLContext, idle: threading.Event, stop: threading.Event
) -> None:
    """Answers each connection's request; on the first, once ``idle`` is set (the client has
    the connection back in its pool), sends bytes nobody asked for and then nothing, not even
    close_notify."""
    held: list[ssl.SSLSocket] = []
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            raw, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        conn = context.wrap_socket(raw, server_side=True)
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + (b"fresh" if held else b"first")
        )
        if not held:
            idle.wait(HANG_GUARD)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            held.append(conn)
        else:
            threading.Thread(target=_close_when_asked, args=(conn,), daemon=True).start()
    for conn in held:
        conn.close()


def _close_when_asked(conn: ssl.SSLSocket) -> None:
    """A well-behaved peer: answers the client's close_notify with its own."""
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass
        conn.unwrap()
    conn.close()


async def test_an_idle_connection_holding_unasked_bytes_is_dropped_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpcore2's pool closes an idle connection it finds readable (has_expired) before the
    next request goes out: for one holding bytes nobody asked for, that close must not wait
    for a close_notify the peer never sends, or the next request waits with it."""
    monkeypatch.setattr(_asyncio_tls_backend, "_CLOSE_TIMEOUT", 3600.0)
    server_context, client_context = server_tls(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    idle, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=_answer_then_junk_when_idle,
        args=(listener, server_context, idle, stop),
        daemon=True,
    )
    thread.start()
    try:
        transport = AsyncioTLSTransport(client_context, LIMITS)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            assert (await http.get(url)).content == b"first"
            (connection,) = transport._pool.connections
            idle.set()
            async with asyncio.timeout(HANG_GUARD):
                while connection.source.clean:  # until the unasked bytes have arrived
                    await asyncio.sleep(0.01)
            response = await asyncio.wait_for(http.get(url), HANG_GUARD)
            assert response.content == b"fresh"
            assert connection.is_closed()
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
