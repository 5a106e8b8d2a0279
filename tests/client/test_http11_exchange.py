"""The async driver's own HTTP/1.1 layer (``_async_http11`` over ``_http11``), against raw
loopback servers sending crafted responses.

Each exchange is checked on both of its read paths: the direct one (heads parsed in the
connection's receive buffer, a ``Content-Length`` body received straight into its own buffer)
and the one through ``read()`` that any other network stream gets. Keep-alive reuse is counted
at the server (its accepted connections), both when it must happen and when it must not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest

from nomyo_native import _asyncio_connection, _asyncio_tls_backend
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._async_http11 import HTTP11Connection, _ReadingSource
from nomyo_native._asyncio_connection import BODY_ROOM, RECEIVE_BUFFER_SIZE, BufferedConnection
from nomyo_native._asyncio_tls_backend import (
    AsyncioNetworkBackend,
    AsyncioNetworkStream,
    AsyncioTLSTransport,
)
from nomyo_native._body_buffers import POOLED_MIN_BYTES, BodyBuffer
from nomyo_native._http11 import MAX_HEAD_BYTES

from .test_async_failed_exchange_close import HANG_GUARD, _answer_then_hang
from .test_asyncio_tls_backend import server_tls

LIMITS = httpx2.Limits(max_connections=10, max_keepalive_connections=5)
Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


class ReadingStream(AsyncioNetworkStream):
    """A stream whose ``read`` is its own: the HTTP/1.1 layer must read through it."""

    reads = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        ReadingStream.reads += 1
        return await super().read(max_bytes, timeout)


class ReadingBackend(AsyncioNetworkBackend):
    async def connect_tcp(self, *args: Any, **kwargs: Any) -> AsyncioNetworkStream:
        plain = await super().connect_tcp(*args, **kwargs)
        return ReadingStream(plain._transport, plain._connection)


def make_transport(path: str) -> AsyncioTLSTransport:
    transport = AsyncioTLSTransport(None, LIMITS)
    if path == "read":
        transport._pool._network_backend = ReadingBackend()
    return transport


@pytest.fixture(params=["direct", "read"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Server:
    url: str
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: int = 0


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length) if length else b""


@asynccontextmanager
async def serving(replies: Callable[[int], Reply | bytes]) -> AsyncIterator[Server]:
    """A server answering its n-th request (over all connections) with ``replies(n)``: bytes
    written at once, or a coroutine writing them its own way."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        server.accepted += 1
        try:
            while True:
                try:
                    server.requests.append(await read_request(reader))
                except asyncio.IncompleteReadError:
                    server.closed_by_client += 1
                    return
                reply = replies(served)
                served += 1
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server = Server(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    try:
        yield server
    finally:
        listener.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(listener.wait_closed(), 2)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def get_body(http: httpx2.AsyncClient, url: str) -> tuple[list[bytes], int]:
    async with http.stream("POST", url, content=b"ping") as response:
        return [chunk async for chunk in response.aiter_raw()], response.status_code


# ---- keep-alive: reused when clean ----------------------------------------------------------


async def test_a_content_length_body_arrives_as_one_buffer_and_the_connection_is_reused(
    path: str,
) -> None:
    bodies = [b"first", b"x" * 300_000, b"third"]
    async with serving(lambda n: ok(bodies[n])) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            for body in bodies:
                chunks, status = await get_body(http, server.url)
                assert status == 200 and b"".join(chunks) == body
                if path == "direct":
                    # The buffer it was received into (a large one's: a view of the kept one).
                    [chunk] = chunks
                    if len(body) > POOLED_MIN_BYTES:
                        assert type(chunk) is memoryview and type(chunk.obj) is BodyBuffer
                    else:
                        assert type(chunk) is bytearray
    assert server.accepted == 1
    assert server.requests == [b"ping"] * 3


async def test_a_body_in_one_byte_pieces_arrives_whole_and_the_connection_is_reused(
    path: str,
) -> None:
    body = bytes(range(256)) * 8

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for i, byte in enumerate(ok(body)):
            writer.write(bytes([byte]))
            await writer.drain()
            if i % 64 == 0:
                await asyncio.sleep(0.001)  # separate reads on the client's side

    replies: list[Reply | bytes] = [trickle, ok(b"after")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            chunks, _ = await get_body(http, server.url)
            assert b"".join(chunks) == body
            chunks, _ = await get_body(http, server.url)
            assert b"".join(chunks) == b"after"
    assert server.accepted == 1


async def test_interim_responses_are_skipped_and_duplicate_equal_lengths_are_one(
    path: str,
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    replies = [interim + ok(b"hello", b"Content-Length: 5\r\n"), ok(b"again")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            assert b"".join((await get_body(http, server.url))[0]) == b"hello"
            assert b"".join((await get_body(http, server.url))[0]) == b"again"
    assert server.accepted == 1


async def test_a_chunked_body_goes_through_h11_and_the_connection_is_reused(path: str) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    replies = [chunked, ok(b"next")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            assert b"".join((await get_body(http, server.url))[0]) == b"helloabc"
            assert b"".join((await get_body(http, server.url))[0]) == b"next"
    assert server.accepted == 1


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified"])
async def test_a_bodyless_status_reads_nothing_and_keeps_the_connection(
    path: str, status_line: bytes
) -> None:
    # The declared length is ignored for 204 and 304 (RFC 9112 section 6.3).
    replies = [status_line + b"\r\nContent-Length: 10\r\n\r\n", ok(b"next")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            chunks, status = await get_body(http, server.url)
            assert chunks == [] and status in (204, 304)
            assert b"".join((await get_body(http, server.url))[0]) == b"next"
    assert server.accepted == 1


# ---- keep-alive: not reused when anything is unclear -------------------------------------------

NOT_REUSABLE = {
    "connection close": ok(b"body", b"Connection: close\r\n"),
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nbody",
    "bytes after the body": ok(b"body") + b"HTTP/1.1 200 OK\r\n",
    "chunked with a length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nbody\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_REUSABLE))
async def test_an_unclear_exchange_closes_the_connection(path: str, case: str) -> None:
    replies = [NOT_REUSABLE[case], ok(b"fresh")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            assert b"".join((await get_body(http, server.url))[0]) == b"body"
            assert b"".join((await get_body(http, server.url))[0]) == b"fresh"
    assert server.accepted == 2


async def test_a_body_running_to_the_end_of_stream_is_read_whole_and_not_reused(
    path: str,
) -> None:
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"this")
        await writer.drain()
        writer.close()

    replies: list[Reply | bytes] = [until_close, ok(b"fresh")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            assert b"".join((await get_body(http, server.url))[0]) == b"all of this"
            assert b"".join((await get_body(http, server.url))[0]) == b"fresh"
    assert server.accepted == 2


async def test_a_body_cut_short_is_a_protocol_error_and_the_connection_is_closed(
    path: str,
) -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
        await writer.drain()
        writer.close()

    async with serving(lambda n: cut) as server:
        transport = make_transport(path)
        async with httpx2.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx2.RemoteProtocolError, match="received 10 bytes"):
                await get_body(http, server.url)
            assert transport._pool.connections == []


async def test_a_request_cancelled_mid_body_closes_its_connection(path: str) -> None:
    started = asyncio.Event()

    async def stall(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf")
        await writer.drain()
        started.set()
        await asyncio.sleep(30)

    replies: list[Reply | bytes] = [stall, ok(b"fresh")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            task = asyncio.ensure_future(get_body(http, server.url))
            await asyncio.wait_for(started.wait(), 5)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert b"".join((await get_body(http, server.url))[0]) == b"fresh"
    assert server.accepted == 2


# ---- framing refused ----------------------------------------------------------------------------

REFUSED = {
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nbody",
    "conflicting list": b"HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\nbody",
    "non-digit length": b"HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\nbody",
    "hex length": b"HTTP/1.1 200 OK\r\nContent-Length: 0x4\r\n\r\nbody",
    "unknown coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nbody",
    "folded header": b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 4\r\n\r\nbody",
    "bad header name": b"HTTP/1.1 200 OK\r\nX A: one\r\nContent-Length: 4\r\n\r\nbody",
    "bad status line": b"HTTP/1.1 2000 OK\r\nContent-Length: 4\r\n\r\nbody",
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "leading space": b" HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody",
    "head too large": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * MAX_HEAD_BYTES + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_malformed_framing_is_a_protocol_error_and_closes_the_connection(
    path: str, case: str
) -> None:
    async with serving(lambda n: REFUSED[case]) as server:
        transport = make_transport(path)
        async with httpx2.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx2.RemoteProtocolError):
                await get_body(http, server.url)
            assert transport._pool.connections == []


async def test_a_head_still_arriving_past_the_bound_is_refused_without_waiting(
    path: str,
) -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while True:  # header lines, never the empty one
            writer.write(b"X-Pad: " + b"p" * 1000 + b"\r\n")
            await writer.drain()

    async with serving(lambda n: endless) as server:
        async with httpx2.AsyncClient(transport=make_transport(path), timeout=5) as http:
            with pytest.raises(httpx2.RemoteProtocolError):
                await get_body(http, server.url)


async def test_a_server_closing_before_answering_is_a_protocol_error(path: str) -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(lambda n: hang_up) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
                await get_body(http, server.url)


async def test_a_request_header_with_a_line_break_is_refused_before_anything_is_sent(
    path: str,
) -> None:
    async with serving(lambda n: ok(b"never")) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            with pytest.raises(httpx2.LocalProtocolError):
                await http.post(server.url, headers={"X-Id": "a\r\nInjected: yes"}, content=b"x")
            await asyncio.sleep(0.05)
    assert server.requests == []


async def test_large_and_small_request_bodies_arrive_whole(path: str) -> None:
    big = bytes(range(256)) * 12_000  # 3 MB: many write slices
    async with serving(lambda n: ok(b"%d" % len(big if n == 0 else b"ab"))) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            assert (await http.post(server.url, content=big)).content == b"%d" % len(big)
            assert (await http.post(server.url, content=b"ab")).content == b"2"
    assert server.requests == [big, b"ab"]
    assert server.accepted == 1


async def test_the_read_path_is_taken_for_a_stream_with_its_own_read() -> None:
    ReadingStream.reads = 0
    async with serving(lambda n: ok(b"x" * 100_000)) as server:
        async with httpx2.AsyncClient(transport=make_transport("read")) as http:
            assert len(b"".join((await get_body(http, server.url))[0])) == 100_000
    assert ReadingStream.reads >= 1


# ---- through the driver -------------------------------------------------------------------------


async def test_the_driver_hands_on_a_large_body_as_received_and_a_small_one_as_bytes() -> None:
    large = bytes(range(256)) * 1000
    async with serving(lambda n: ok(large if n == 0 else b"small")) as server:
        driver = AsyncDriver(timeout=5, ssl_context=None, auth=None, transport=None, sleep=None)
        try:
            first = await driver.send("POST", server.url, {}, b"a", 1 << 20, 10)
            second = await driver.send("POST", server.url, {}, b"b", 1 << 20, 10)
        finally:
            await driver.aclose()
    assert type(first.body) is memoryview and type(first.body.obj) is BodyBuffer
    assert first.body == large
    assert type(second.body) is bytes and second.body == b"small"
    assert server.accepted == 1


# ---- the body's own buffer ----------------------------------------------------------------------


async def test_a_body_buffer_is_never_offered_past_the_body_and_grows_with_what_arrived(
    free_list: object,
) -> None:
    connection = BufferedConnection()
    view = connection.get_buffer(-1)
    view[:8] = b"HEADbody"
    connection.buffer_updated(8)
    connection.consume(4)
    length = 10 * RECEIVE_BUFFER_SIZE
    connection.begin_body(length)
    assert connection.body_received == 4
    received = 4
    while received < length:
        view = connection.get_buffer(-1)
        assert 0 < len(view) <= length - received
        # Never more than twice what arrived, plus room for one read.
        assert len(connection._body or b"") <= max(2 * received, received + BODY_ROOM)
        step = min(len(view), 100_000)
        view[:step] = b"z" * step
        del view
        connection.buffer_updated(step)
        received += step
    body = connection.end_body()
    assert len(body) == length and body[:4] == b"body" and body[4:] == b"z" * (length - 4)
    # Past the body, what arrives lands in the connection's own buffer again.
    view = connection.get_buffer(-1)
    assert len(view) == RECEIVE_BUFFER_SIZE
    view[:5] = b"extra"
    del view
    connection.buffer_updated(5)
    assert connection.take() == b"extra"


def _arrive(connection: BufferedConnection, data: bytes) -> None:
    view = connection.get_buffer(-1)
    view[: len(data)] = data
    del view
    connection.buffer_updated(len(data))


async def test_a_body_s_reader_is_woken_once_when_it_is_all_in_not_per_chunk() -> None:
    connection = BufferedConnection()
    connection.begin_body(5 * 1000)
    waiting = asyncio.ensure_future(connection.wait_body(None))
    for _ in range(4):
        _arrive(connection, b"p" * 1000)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not waiting.done()
    _arrive(connection, b"p" * 1000)
    await waiting
    assert bytes(connection.end_body()) == b"p" * 5000


async def test_a_body_wait_ends_at_the_end_of_stream() -> None:
    connection = BufferedConnection()
    connection.begin_body(5000)
    waiting = asyncio.ensure_future(connection.wait_body(None))
    _arrive(connection, b"p" * 1000)
    connection.eof_received()
    await waiting
    assert connection.body_received == 1000 and connection.eof


async def test_a_body_wait_times_out_only_after_timeout_seconds_with_nothing_new() -> None:
    connection = BufferedConnection()
    connection.begin_body(5000)
    loop = asyncio.get_running_loop()
    reader = loop.create_future()
    # Bytes came 10 s ago: the timer is set again for the rest, the wait goes on. Due 30 s
    # after those bytes (20 s from now, not 30): bounds that hold however slow the machine is.
    arrived = connection._body_arrived = loop.time() - 10.0
    connection._body_idle(reader, 30.0)
    assert not reader.done()
    timer = connection._read_timer
    assert timer is not None and arrived + 30.0 <= timer.when() <= loop.time() + 20.0
    timer.cancel()
    # Nothing for the whole timeout: the wait ends in a timeout.
    connection._body_arrived = loop.time() - 31.0
    connection._body_idle(reader, 30.0)
    assert reader.done() and reader.result() is False
    with pytest.raises(_asyncio_connection.ReadTimedOut):
        await connection.wait_body(0.05)


async def test_one_read_timer_serves_every_wait_and_each_wait_keeps_its_own_timeout() -> None:
    connection = BufferedConnection()
    waiting = asyncio.ensure_future(connection.wait_readable(30.0))
    await asyncio.sleep(0)
    timer = connection._read_timer
    assert timer is not None
    _arrive(connection, b"a")
    await waiting
    connection.take()
    # The next wait with the same timeout keeps the timer (due before the wait would end); when
    # it fires early it is set again for the rest, and the wait goes on.
    waiting = asyncio.ensure_future(connection.wait_readable(30.0))
    await asyncio.sleep(0)
    assert connection._read_timer is timer and not timer.cancelled()
    timer.cancel()
    connection._on_read_timer()
    again = connection._read_timer
    assert again is not None and again is not timer and again.when() > timer.when()
    assert not waiting.done()
    _arrive(connection, b"b")
    await waiting
    connection.take()
    # A shorter timeout than the kept timer's is not stretched to it.
    with pytest.raises(_asyncio_connection.ReadTimedOut):
        await asyncio.wait_for(connection.wait_readable(0.05), HANG_GUARD)
    # A timer left from an earlier wait never ends a wait that has no timeout.
    connection._read_timer = asyncio.get_running_loop().call_later(0, connection._on_read_timer)
    waiting = asyncio.ensure_future(connection.wait_readable(None))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    _arrive(connection, b"c")
    await waiting
    # The end of the connection cancels the timer (it holds the connection).
    connection._read_timer = kept = asyncio.get_running_loop().call_later(30.0, lambda: None)
    connection.connection_lost(None)
    assert kept.cancelled() and connection._read_timer is None


async def test_a_body_shorter_than_what_is_pending_leaves_the_rest_pending() -> None:
    connection = BufferedConnection()
    view = connection.get_buffer(-1)
    view[:9] = b"bodyAFTER"
    del view
    connection.buffer_updated(9)
    connection.begin_body(4)
    assert connection.body_received == 4
    assert connection.end_body() == b"body"
    assert connection.take() == b"AFTER"


async def test_the_receive_buffer_size_is_read_at_each_connection(
    monkeypatch: Any, free_list: object
) -> None:
    # The SSL read high-water mark follows the buffer (see use_tls); the body room is its own.
    monkeypatch.setattr(_asyncio_connection, "RECEIVE_BUFFER_SIZE", 64 * 1024)
    monkeypatch.setattr(_asyncio_connection, "BODY_ROOM", 32 * 1024)
    connection = BufferedConnection()
    assert len(connection.get_buffer(-1)) == 64 * 1024
    connection.begin_body(10 * 1024 * 1024)
    assert len(connection.get_buffer(-1)) == 32 * 1024


async def test_bytes_arriving_on_an_idle_connection_keep_it_from_being_used(path: str) -> None:
    async def then_junk(writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"body"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforgd")  # nobody asked
        await writer.drain()

    replies: list[Reply | bytes] = [then_junk, ok(b"fresh")]
    async with serving(lambda n: replies[n]) as server:
        async with httpx2.AsyncClient(transport=make_transport(path)) as http:
            assert b"".join((await get_body(http, server.url))[0]) == b"body"
            await asyncio.sleep(0.2)
            assert b"".join((await get_body(http, server.url))[0]) == b"fresh"
    assert server.accepted == 2


def test_a_new_connection_reports_itself_connecting() -> None:
    connection = HTTP11Connection(
        httpcore2.Origin(b"http", b"127.0.0.1", 1),
        ssl_context=None,
        keepalive_expiry=None,
        network_backend=AsyncioNetworkBackend(),
    )
    assert not connection.is_available() and not connection.is_connected()
    assert not connection.is_closed() and not connection.has_expired()
    assert connection.info() == "CONNECTING"


async def test_debug_logs_show_the_steps_on_httpcore2s_loggers_without_header_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(lambda n: ok(b"body", b"X-Server-Secret: srv-canary\r\n")) as server:
        async with httpx2.AsyncClient(transport=make_transport("direct")) as http:
            headers = {"Authorization": "Bearer sk-canary"}
            assert (await http.post(server.url, headers=headers, content=b"x")).content == b"body"
    steps = [r.getMessage().split()[0] for r in caplog.records if r.name.startswith("httpcore2")]
    for step in ("connect_tcp.started", "send_request_headers.started", "response_closed.complete"):
        assert step in steps
    assert "receive_response_headers.complete" in steps
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "sk-canary" not in text and "srv-canary" not in text


class _ReadingFlag:
    """Just enough of a transport to record reading being paused and resumed."""

    reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: nothing to pace


async def test_a_parsed_head_is_dropped_without_moving_the_rest_until_room_runs_out() -> None:
    connection = BufferedConnection()
    transport = _ReadingFlag()
    connection.connection_made(transport)  # type: ignore[arg-type]
    full = RECEIVE_BUFFER_SIZE - 1000  # past the point where reading pauses
    view = connection.get_buffer(-1)
    view[:full] = bytes(range(256)) * (full // 256) + b"t" * (full % 256)
    del view
    connection.buffer_updated(full)
    assert not transport.reading
    expected = bytes(connection.pending()[full - 500 :])
    connection.consume(full - 500)  # a head; 500 bytes of what follows stay pending
    # The rest moved to the front only because room had run out; reading goes on.
    assert transport.reading
    assert bytes(connection.pending()) == expected
    assert len(connection.get_buffer(-1)) == RECEIVE_BUFFER_SIZE - 500


def test_the_read_path_hands_out_its_buffer_without_copying_and_consumes_under_a_view() -> None:
    # A copy per read would make a head trickling in a byte per read quadratic to parse.
    source = _ReadingSource(AsyncioNetworkStream.__new__(AsyncioNetworkStream))
    source._buffer += b"HEAD|body"
    view = source.pending()
    assert view.obj is source._buffer
    source.consume(5)  # the view is still alive: consumed by copying instead of resizing
    assert bytes(view) == b"HEAD|body" and bytes(source.pending()) == b"body"


async def test_bytes_after_the_body_drop_the_connection_without_waiting_for_the_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that sends bytes past the body and then answers nothing, not even
    close_notify: the answer is read whole and the connection dropped at once."""
    monkeypatch.setattr(_asyncio_tls_backend, "_CLOSE_TIMEOUT", 3600.0)
    server_context, client_context = server_tls(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sent = ok(b"body") + b"HTTP/1.1 200 OK\r\n"  # junk: nobody asked for a second answer
    thread = threading.Thread(
        target=_answer_then_hang, args=(listener, server_context, sent, stop), daemon=True
    )
    thread.start()
    try:
        transport = AsyncioTLSTransport(client_context, LIMITS)
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            url = f"https://127.0.0.1:{listener.getsockname()[1]}"
            response = await asyncio.wait_for(http.get(url), HANG_GUARD)
            assert response.content == b"body"
            assert transport._pool.connections == []
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
