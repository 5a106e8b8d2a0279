"""The client's default transport: httpcore2's pool over asyncio's own TCP and TLS transports.

Checked against the real endpoint over HTTPS (verification, keep-alive reuse, 1 MiB each way)
and against raw loopback servers for what a network does wrong (refused, stalled, closed idle
connections), each ending in the httpx2 exception the client already maps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import certifi
import httpcore2
import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native import _asyncio_connection
from nomyo_native._asyncio_connection import RECEIVE_BUFFER_SIZE, BufferedConnection
from nomyo_native._asyncio_tls_backend import (
    AsyncioNetworkBackend,
    AsyncioNetworkStream,
    AsyncioTLSTransport,
)
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native.server.tls import make_self_signed

LIMITS = httpx2.Limits(max_connections=10, max_keepalive_connections=5)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def trusting(ca_path: Any, tls: str = "openssl") -> ssl.SSLContext:
    """A context trusting ``ca_path``: the interpreter's OpenSSL runs the connection, or the
    core's TLS for a CoreTlsContext (``_asyncio_core_tls``)."""
    if tls == "core":
        return CoreTlsContext.from_locations(str(ca_path), None)
    return ssl.create_default_context(cafile=str(ca_path))


@pytest.fixture(params=["openssl", "core"])
def tls(request: pytest.FixtureRequest) -> str:
    """Which TLS the transport tests below run over."""
    return str(request.param)


@asynccontextmanager
async def loopback_server(handler: Handler) -> AsyncIterator[str]:
    """Serves each connection with ``handler``; at the end a handler still waiting (a silent
    peer) is cancelled and its connection aborted: from Python 3.12 on, ``wait_closed`` waits
    for every connection, which would otherwise wait out the handler's sleep."""
    handlers: set[asyncio.Task[Any]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for task in handlers:
            task.cancel()
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length) if length else b""


def ok(body: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# ---- through the client, against the endpoint ------------------------------------------------


async def test_the_client_uses_it_by_default_and_reuses_the_connection(secure_endpoint):
    chat = nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url, ca_bundle=secure_endpoint.ca_path, key_size=2048
    )
    async with chat:
        first = await chat.create("m", [{"role": "user", "content": "first"}])
        second = await chat.create("m", [{"role": "user", "content": "second"}])
        http = chat.client._state().http
        assert isinstance(http._transport, AsyncioTLSTransport)
        response = await http.get(f"{secure_endpoint.base_url}/pki/public_key")
        # Key fetch, both requests and this GET went over one kept-alive connection.
        assert len(http._transport._pool.connections) == 1
    assert "first" in first["choices"][0]["message"]["content"]
    assert "second" in second["choices"][0]["message"]["content"]
    stream = response.extensions["network_stream"]
    assert isinstance(stream, AsyncioNetworkStream)
    assert stream.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")


async def test_a_mebibyte_each_way_arrives_intact(secure_endpoint):
    prompt = "".join(chr(0x61 + i % 26) for i in range(1024 * 1024))
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url, ca_bundle=secure_endpoint.ca_path, key_size=2048
    ) as chat:
        reply = await chat.create("m", [{"role": "user", "content": prompt}])
    assert prompt in reply["choices"][0]["message"]["content"]


async def test_an_untrusted_certificate_is_a_connection_error(secure_endpoint):
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url, ca_bundle=certifi.where(), max_retries=0
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await chat.create("m", [{"role": "user", "content": "hi"}])


async def test_a_wrong_host_name_is_a_connection_error(secure_endpoint, tls):
    # The certificate names 127.0.0.1 and localhost only.
    async with httpx2.AsyncClient(
        transport=AsyncioTLSTransport(trusting(secure_endpoint.ca_path, tls), LIMITS)
    ) as http:
        url = secure_endpoint.base_url.replace("127.0.0.1", "127.0.0.2")
        with pytest.raises(httpx2.ConnectError):
            await http.get(f"{url}/pki/public_key")


# ---- what a network does wrong -----------------------------------------------------------------


async def test_refused_connection_is_a_connect_error():
    async with loopback_server(lambda r, w: asyncio.sleep(0)) as url:
        pass  # closed again: nothing listens on the port now
    async with httpx2.AsyncClient(transport=AsyncioTLSTransport(None, LIMITS)) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(url)


async def test_stalled_tls_handshake_is_a_connect_timeout(secure_endpoint, tls):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # reads no ClientHello, answers nothing

    async with loopback_server(silent) as url:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(trusting(secure_endpoint.ca_path, tls), LIMITS),
            timeout=httpx2.Timeout(5.0, connect=0.3),
        ) as http:
            with pytest.raises(httpx2.ConnectTimeout):
                await http.get(url.replace("http://", "https://"))


async def test_stalled_response_is_a_read_timeout():
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with loopback_server(stall) as url:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(None, LIMITS), timeout=httpx2.Timeout(5.0, read=0.3)
        ) as http:
            with pytest.raises(httpx2.ReadTimeout):
                await http.get(url)


async def test_body_cut_short_is_a_protocol_error():
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with loopback_server(cut) as url:
        async with httpx2.AsyncClient(transport=AsyncioTLSTransport(None, LIMITS)) as http:
            with pytest.raises(httpx2.RemoteProtocolError):
                await http.get(url)


async def test_idle_connection_closed_by_the_server_is_not_reused():
    served: list[int] = []

    async def once_per_connection(reader: asyncio.StreamReader, writer: Any) -> None:
        body = await read_request(reader)
        served.append(len(body))
        writer.write(ok(b"done"))  # keep-alive announced, then closed anyway
        await writer.drain()
        writer.close()

    async with loopback_server(once_per_connection) as url:
        async with httpx2.AsyncClient(transport=AsyncioTLSTransport(None, LIMITS)) as http:
            for i in range(3):
                response = await http.post(url, content=b"x" * (i + 1))
                assert response.content == b"done"
                await asyncio.sleep(0.2)  # let the close arrive before the next request
    assert served == [1, 2, 3]


async def test_keep_alive_connection_serves_many_requests():
    connections: list[int] = []

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(ok(body[::-1]))
            await writer.drain()

    async with loopback_server(keep_alive) as url:
        async with httpx2.AsyncClient(transport=AsyncioTLSTransport(None, LIMITS)) as http:
            for i in range(5):
                response = await http.post(url, content=f"request {i}".encode())
                assert response.content == f"request {i}".encode()[::-1]
    assert len(connections) == 1


# ---- large bodies ----------------------------------------------------------------------------


class RecordingTransport(asyncio.Transport):
    """A transport stand-in whose buffer is full after every write: records each write and
    each resume of writing, which it grants on the next loop iteration."""

    def __init__(self, connection: BufferedConnection) -> None:
        super().__init__()
        self.connection = connection
        self.events: list[tuple[str, int]] = []
        self.received = bytearray()

    def is_closing(self) -> bool:
        return False

    def write(self, data: Any) -> None:
        assert not self.connection._writing_paused, "written to while paused"
        self.events.append(("write", len(data)))
        self.received += data
        self.connection.pause_writing()
        asyncio.get_running_loop().call_soon(self.resume)

    def resume(self) -> None:
        self.events.append(("drained", 0))
        self.connection.resume_writing()


async def test_a_large_body_goes_out_in_drained_slices():
    connection = BufferedConnection()
    transport = RecordingTransport(connection)
    stream = AsyncioNetworkStream(transport, connection)
    body = bytes(range(256)) * (5 * 1024 + 3)  # 1.3 MB, not a multiple of the slice
    await stream.write(body, timeout=30)
    assert bytes(transport.received) == body
    writes = [size for kind, size in transport.events if kind == "write"]
    assert len(writes) > 1 and max(writes) <= 256 * 1024
    # Every slice is drained before the next one is handed to the TLS transport.
    assert transport.events == [
        event for size in writes for event in (("write", size), ("drained", 0))
    ]


async def open_stream(url: str) -> AsyncioNetworkStream:
    port = int(url.rsplit(":", 1)[1])
    return await AsyncioNetworkBackend().connect_tcp("127.0.0.1", port, timeout=5)


async def test_a_peer_that_stops_reading_is_a_write_timeout():
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with loopback_server(never_reads) as url:
        stream = await open_stream(url)
        try:
            with pytest.raises(httpcore2.WriteTimeout):
                await stream.write(b"x" * (16 * 1024 * 1024), timeout=0.5)
        finally:
            stream._transport.abort()


# ---- reading into the connection's buffer ------------------------------------------------------


async def test_a_read_hands_over_more_than_httpcore2_asks_and_the_body_arrives_intact():
    """httpcore2 asks for READ_NUM_BYTES (64 KiB) per read and feeds each read whole to h11;
    ours returns up to the receive buffer. Fails if either stops taking a larger read."""
    body = bytes(range(256)) * 4096 * 4  # 4 MiB
    sizes: list[int] = []

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(body))
        await writer.drain()

    class Measured(AsyncioNetworkStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            data = await super().read(max_bytes, timeout)
            sizes.append(len(data) - max_bytes)
            return data

    class MeasuringBackend(AsyncioNetworkBackend):
        async def connect_tcp(self, *args: Any, **kwargs: Any) -> AsyncioNetworkStream:
            plain = await super().connect_tcp(*args, **kwargs)
            return Measured(plain._transport, plain._connection)

    transport = AsyncioTLSTransport(None, LIMITS)
    transport._pool._network_backend = MeasuringBackend()
    async with loopback_server(big) as url:
        async with httpx2.AsyncClient(transport=transport) as http:
            async with http.stream("GET", url) as response:
                await asyncio.sleep(0.3)  # let the body pile up in the socket
                received = b"".join([chunk async for chunk in response.aiter_raw()])
    assert received == body
    assert max(sizes) > 0, "no read returned more than httpcore2 asked for"


async def test_the_receive_buffer_stays_bounded_while_nobody_reads():
    body = b"y" * (8 * 1024 * 1024)

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()
        writer.close()

    async with loopback_server(flood) as url:
        stream = await open_stream(url)
        connection = stream._connection
        await asyncio.sleep(0.5)  # the peer sends as fast as the client lets it
        assert len(connection._buffer) == RECEIVE_BUFFER_SIZE
        assert connection._reading_paused
        received = bytearray()
        while chunk := await stream.read(65536, timeout=5):
            assert len(chunk) <= RECEIVE_BUFFER_SIZE
            received += chunk
        await stream.aclose()
    assert len(connection._buffer) == RECEIVE_BUFFER_SIZE
    assert received == body


async def test_a_connection_lost_in_error_wakes_a_waiting_read_as_a_read_error():
    connection = BufferedConnection()
    stream = AsyncioNetworkStream(RecordingTransport(connection), connection)
    reading = asyncio.ensure_future(stream.read(65536, timeout=30))
    await asyncio.sleep(0)
    assert not reading.done()
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(httpcore2.ReadError, match="reset by peer"):
        await reading


async def test_a_read_waiting_past_its_timeout_is_a_read_timeout_then_reads_what_came():
    connection = BufferedConnection()
    stream = AsyncioNetworkStream(RecordingTransport(connection), connection)
    with pytest.raises(httpcore2.ReadTimeout, match=r"timed out after 0\.05 s"):
        await stream.read(65536, timeout=0.05)
    connection.get_buffer(-1)[:4] = b"late"
    connection.buffer_updated(4)  # a wake-up after the timeout reaches no waiter
    assert await stream.read(65536, timeout=0.05) == b"late"


async def test_the_end_of_stream_after_data_reads_as_the_data_then_empty():
    connection = BufferedConnection()
    stream = AsyncioNetworkStream(RecordingTransport(connection), connection)
    buffer = connection.get_buffer(-1)
    buffer[:5] = b"hello"
    connection.buffer_updated(5)
    connection.eof_received()
    assert await stream.read(65536) == b"hello"
    assert await stream.read(65536) == b""


# ---- the TLS handshake -------------------------------------------------------------------------


def server_tls(tmp_path: Path, tls: str = "openssl") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh loopback certificate, and a client context trusting it."""
    files = make_self_signed(tmp_path / "tls")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.cert_path, files.key_path)
    return server, trusting(files.ca_path, tls)


async def test_bytes_received_before_the_tls_handshake_are_refused(
    tmp_path: Path, tls: str
) -> None:
    """Whatever arrives in the clear before the handshake (an attacker on the path can send it)
    must never be read as the server's answer over TLS."""
    server_context, client_context = server_tls(tmp_path, tls)

    async def injects(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"forged"))  # in the clear, before any TLS
        with contextlib.suppress(OSError):  # the client aborts: no handshake
            await writer.start_tls(server_context)
            writer.write(ok(b"genuine"))
            await writer.drain()
            await reader.read()

    async with loopback_server(injects) as url:
        stream = await open_stream(url)
        for _ in range(500):  # until the forged bytes are in (a yield between connect and TLS)
            if stream._connection.has_data:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(httpcore2.ConnectError, match="before the TLS handshake"):
            await stream.start_tls(client_context, "127.0.0.1", timeout=5)
        assert stream._transport.is_closing()


def _answer_and_close(listener: socket.socket, context: ssl.SSLContext, body: bytes) -> None:
    """Answers one GET with ``body`` and ``Connection: close``, sends close_notify and closes
    the socket at once, without waiting for the client's (as many servers do)."""
    accepted, _ = listener.accept()
    conn = context.wrap_socket(accepted, server_side=True)
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    conn.sendall(body)
    conn.setblocking(False)
    with contextlib.suppress(ssl.SSLError):
        conn.unwrap()  # sends close_notify; the client's is not waited for
    conn.close()


@pytest.mark.parametrize("buffer_size", [RECEIVE_BUFFER_SIZE, 64 * 1024])
async def test_an_answer_the_server_closes_after_reaches_a_slow_reader_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buffer_size: int, tls: str
) -> None:
    """At the peer's end of stream asyncio's SSL protocol decrypts what it still holds into one
    get_buffer() and drops the rest: it must never hold more than the connection's emptied
    receive buffer takes, whatever that buffer's size."""
    monkeypatch.setattr(_asyncio_connection, "RECEIVE_BUFFER_SIZE", buffer_size)
    server_context, client_context = server_tls(tmp_path, tls)
    body = bytes(range(256)) * 4096 * 4  # 4 MiB
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(
        target=_answer_and_close, args=(listener, server_context, body), daemon=True
    )
    server.start()
    try:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(client_context, LIMITS), timeout=30
        ) as http:
            url = f"https://127.0.0.1:{listener.getsockname()[1]}"
            async with http.stream("GET", url) as response:
                await asyncio.sleep(0.3)  # the body and the end of stream pile up
                received = bytearray()
                async for chunk in response.aiter_raw():
                    received += chunk
                    await asyncio.sleep(0.002)  # a reader slower than the loopback
        assert len(received) == len(body)
        assert received == body
    finally:
        listener.close()
        server.join(timeout=10)


# ---- one read and one write at a time ----------------------------------------------------------


class StuckTransport(RecordingTransport):
    """Its buffer is full after every write, until ``resume`` is called by the test."""

    def write(self, data: Any) -> None:
        self.received += data
        self.connection.pause_writing()


async def test_a_second_read_while_one_waits_is_refused_and_the_first_still_served() -> None:
    connection = BufferedConnection()
    stream = AsyncioNetworkStream(RecordingTransport(connection), connection)
    first = asyncio.ensure_future(stream.read(65536))  # no timeout: only data ends it
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await stream.read(65536, timeout=0.05)
    connection.get_buffer(-1)[:2] = b"hi"
    connection.buffer_updated(2)
    assert await asyncio.wait_for(first, 5) == b"hi"


async def test_a_second_write_while_one_waits_is_refused_and_the_first_still_completes() -> None:
    connection = BufferedConnection()
    transport = StuckTransport(connection)
    stream = AsyncioNetworkStream(transport, connection)
    first = asyncio.ensure_future(stream.write(b"first"))  # no timeout: only a resume ends it
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await stream.write(b"second", timeout=0.05)
    transport.resume()
    await asyncio.wait_for(first, 5)
    assert transport.received.startswith(b"first")


async def test_a_write_timed_out_before_waiting_leaves_the_next_write_free() -> None:
    connection = BufferedConnection()
    transport = StuckTransport(connection)
    stream = AsyncioNetworkStream(transport, connection)
    with pytest.raises(httpcore2.WriteTimeout):
        await stream.write(b"x", timeout=0)  # its time is up before it can wait
    transport.resume()
    second = asyncio.ensure_future(stream.write(b"y"))  # waits again, as the only writer
    await asyncio.sleep(0)
    transport.resume()
    await asyncio.wait_for(second, 5)
    assert transport.received == b"xy"


async def test_a_peer_flooding_over_tls_fills_no_more_than_two_buffers_while_nobody_reads(
    tmp_path: Path, tls: str
) -> None:
    """What a peer sends past the receive buffer stays in the kernel: asyncio's SSL protocol
    stops reading the socket at its high-water mark (the buffer's size) plus one socket read;
    the core's TLS holds one socket read while the connection pauses."""
    server_context, client_context = server_tls(tmp_path, tls)
    body = b"z" * (8 * 1024 * 1024)

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        with contextlib.suppress(OSError):
            await writer.drain()
            await reader.read()

    server = await asyncio.start_server(flood, "127.0.0.1", 0, ssl=server_context)
    try:
        port = server.sockets[0].getsockname()[1]
        stream = await AsyncioNetworkBackend().connect_tcp("127.0.0.1", port, timeout=5)
        stream = await stream.start_tls(client_context, "127.0.0.1", timeout=5)
        connection = stream._connection
        for _ in range(500):  # until the client stops taking more
            if connection._reading_paused:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the peer keeps sending meanwhile
        assert connection._reading_paused
        held = stream._transport.get_read_buffer_size()  # ciphertext asyncio holds
        assert held <= RECEIVE_BUFFER_SIZE + 256 * 1024
        received = 0
        while received < len(body):
            received += len(await stream.read(65536, timeout=5))
        assert received == len(body)
        await stream.aclose()
    finally:
        server.close()


# ---- ends that must not pass for a complete answer ---------------------------------------------


def _answer_half_and_close(listener: socket.socket, context: ssl.SSLContext, notify: bool) -> None:
    """Declares 1 MiB, sends half of it, and closes: with close_notify, or with a bare FIN (an
    attacker on the path can send the latter)."""
    accepted, _ = listener.accept()
    conn = context.wrap_socket(accepted, server_side=True)
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"a" * 524288)
    if notify:
        conn.setblocking(False)
        with contextlib.suppress(ssl.SSLError):
            conn.unwrap()
    conn.close()


@pytest.mark.parametrize("notify", [True, False], ids=["close_notify", "bare FIN"])
async def test_a_tls_body_cut_short_is_a_protocol_error(
    tmp_path: Path, notify: bool, tls: str
) -> None:
    server_context, client_context = server_tls(tmp_path, tls)
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(
        target=_answer_half_and_close, args=(listener, server_context, notify), daemon=True
    )
    server.start()
    try:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(client_context, LIMITS), timeout=30
        ) as http:
            with pytest.raises(httpx2.RemoteProtocolError, match="received 524288 bytes"):
                await http.get(f"https://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        listener.close()
        server.join(timeout=10)


async def test_a_connection_lost_while_a_write_waits_is_a_write_error() -> None:
    connection = BufferedConnection()
    stream = AsyncioNetworkStream(StuckTransport(connection), connection)
    writing = asyncio.ensure_future(stream.write(b"x", timeout=30))
    await asyncio.sleep(0)
    assert not writing.done()
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(httpcore2.WriteError, match="reset by peer"):
        await writing


async def test_a_cancelled_read_leaves_the_connection_to_the_next_read() -> None:
    connection = BufferedConnection()
    stream = AsyncioNetworkStream(RecordingTransport(connection), connection)
    reading = asyncio.ensure_future(stream.read(65536, timeout=30))
    await asyncio.sleep(0)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    connection.get_buffer(-1)[:4] = b"next"
    connection.buffer_updated(4)
    assert await stream.read(65536, timeout=5) == b"next"


class PausableTransport(RecordingTransport):
    """Records its reading being paused and resumed."""

    def __init__(self, connection: BufferedConnection) -> None:
        super().__init__(connection)
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def test_a_buffer_filled_during_the_handshake_pauses_the_tls_transport() -> None:
    """asyncio's SSL protocol delivers data that came with the end of the handshake before
    start_tls returns, while the connection still knows only the TCP transport. If that fills
    the buffer, the pause belongs to the TLS transport: the TCP one (the SSL protocol's to
    drive) must read on, and emptying the buffer must resume the TLS one."""
    connection = BufferedConnection()
    tcp = PausableTransport(connection)
    connection.connection_made(tcp)
    connection.begin_tls()
    early = RECEIVE_BUFFER_SIZE - 1024  # past the point where reading pauses
    connection.get_buffer(-1)[:early] = b"e" * early
    connection.buffer_updated(early)
    tls = PausableTransport(connection)
    connection.use_tls(tls)
    assert tcp.reading and not tls.reading
    assert connection.take() == b"e" * early
    assert tcp.reading and tls.reading
