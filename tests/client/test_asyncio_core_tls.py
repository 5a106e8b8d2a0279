"""The async driver's connections over the core's TLS (``_asyncio_core_tls``): a
``CoreTlsContext`` takes them there, any other context keeps asyncio's own TLS.

Checked end to end (the client and the openai adapter against the local endpoint), for what
the transport promises (bodies of every size decrypted straight into their own buffer, a reader
that pauses losing and reordering nothing, close_notify on close) and against a TLS peer whose
records are made by hand (``tls_peer``) for what a network or a server does wrong: each ends in
the httpx2 exception the client already maps, and no socket is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import weakref
from collections.abc import Iterator
from typing import Any

import certifi
import httpcore2
import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native import _asyncio_core_tls, _asyncio_tls_backend
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._asyncio_connection import RECEIVE_BUFFER_SIZE
from nomyo_native._asyncio_core_tls import CoreTlsTransport
from nomyo_native._asyncio_tls_backend import (
    AsyncioNetworkBackend,
    AsyncioNetworkStream,
    AsyncioTLSTransport,
)
from nomyo_native._core_tls import CoreTlsContext, SessionInfo
from nomyo_native.server.tls import TlsFiles, make_self_signed

from .tls_peer import TlsPeer, tls_peer

LIMITS = httpx2.Limits(max_connections=10, max_keepalive_connections=5)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed(tmp_path_factory.mktemp("core-tls") / "tls")


def server_context(files: TlsFiles, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_path, files.key_path)
    if maximum is not None:
        context.maximum_version = maximum
    return context


def core_context(ca_path: Any) -> CoreTlsContext:
    return CoreTlsContext.from_locations(str(ca_path), None)


@pytest.fixture
def core_connections(monkeypatch: pytest.MonkeyPatch) -> list[CoreTlsTransport]:
    """Every connection the backend puts on the core's TLS, as it is made."""
    made: list[CoreTlsTransport] = []
    start = _asyncio_tls_backend.start_core_tls

    async def recording(*args: Any) -> CoreTlsTransport:
        tls = await start(*args)
        made.append(tls)
        return tls

    monkeypatch.setattr(_asyncio_tls_backend, "start_core_tls", recording)
    return made


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def causes(exc: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = exc
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


def client_sockets(port: int) -> list[socket.socket]:
    """The open sockets of this process connected to ``port`` (the client's ends)."""
    found = []
    for thing in gc.get_objects():
        if (
            isinstance(thing, socket.socket)
            and thing.family == socket.AF_INET
            and thing.fileno() >= 0
        ):
            try:
                if thing.getpeername()[1] == port:
                    found.append(thing)
            except OSError:
                continue
    return found


async def serve_forever(peer: TlsPeer, body: bytes) -> None:
    while True:
        await peer.read_request()
        await peer.send(ok(body))


# ---- the client and the openai adapter ---------------------------------------------------------


async def test_the_client_runs_over_the_core_s_tls_and_reuses_its_connection(
    secure_endpoint: Any, core_connections: list[CoreTlsTransport]
) -> None:
    chat = nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url,
        verify=core_context(secure_endpoint.ca_path),
        key_size=2048,
    )
    async with chat:
        first = await chat.create("m", [{"role": "user", "content": "first"}])
        second = await chat.create("m", [{"role": "user", "content": "second"}])
    assert "first" in first["choices"][0]["message"]["content"]
    assert "second" in second["choices"][0]["message"]["content"]
    [connection] = core_connections  # key fetch and both requests on one connection
    info = connection.get_extra_info("ssl_object")
    assert isinstance(info, SessionInfo)
    assert info.version() == "TLSv1.3"


async def test_a_mebibyte_each_way_over_the_core_s_tls(
    secure_endpoint: Any, core_connections: list[CoreTlsTransport]
) -> None:
    prompt = "".join(chr(0x61 + i % 26) for i in range(1024 * 1024))
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url,
        verify=core_context(secure_endpoint.ca_path),
        key_size=2048,
    ) as chat:
        reply = await chat.create("m", [{"role": "user", "content": prompt}])
    assert prompt in reply["choices"][0]["message"]["content"]
    assert len(core_connections) == 1


async def test_the_openai_adapter_runs_over_the_core_s_tls(
    secure_endpoint: Any, core_connections: list[CoreTlsTransport]
) -> None:
    from nomyo_native import openai as nomyo_openai

    client = nomyo_openai.AsyncOpenAI(
        base_url=secure_endpoint.base_url,
        api_key="k",
        verify=core_context(secure_endpoint.ca_path),
        key_size=2048,
    )
    async with client:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "over rustls"}]
        )
    assert "over rustls" in (completion.choices[0].message.content or "")
    assert len(core_connections) == 1


async def test_an_untrusted_certificate_says_how_to_fix_it(secure_endpoint: Any) -> None:
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url, verify=core_context(certifi.where()), max_retries=0
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            await chat.create("m", [{"role": "user", "content": "hi"}])
    assert "ca_bundle" in str(caught.value)


# ---- bodies, straight into their own buffer ----------------------------------------------------


class WatchedSession:
    """A session whose ``read_into`` and ``receive_into`` calls are recorded: the buffer each
    view belongs to and how many bytes went into it."""

    def __init__(self, session: Any, targets: list[tuple[Any, int]]) -> None:
        self._session = session
        self._targets = targets

    def read_into(self, buffer: memoryview) -> int:
        moved = int(self._session.read_into(buffer))
        self._targets.append((buffer.obj, moved))
        return moved

    def receive_into(self, data: memoryview, buffer: memoryview) -> int:
        moved = int(self._session.receive_into(data, buffer))
        self._targets.append((buffer.obj, moved))
        return moved

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.mark.parametrize(
    "size", [0, 1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 1_400_000, 4_000_000]
)
async def test_a_body_of_any_size_arrives_whole_and_a_large_one_straight_into_its_buffer(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    targets: list[tuple[Any, int]] = []
    start = _asyncio_core_tls.start_session
    monkeypatch.setattr(
        _asyncio_core_tls, "start_session", lambda *a: WatchedSession(start(*a), targets)
    )
    body = bytes(range(251)) * (size // 251) + bytes(range(size % 251))
    async with tls_peer(server_context(tls_files), lambda p: serve_forever(p, body)) as server:
        driver = AsyncDriver(
            timeout=10,
            ssl_context=core_context(tls_files.ca_path),
            auth=None,
            transport=None,
            sleep=None,
        )
        try:
            answer = await driver.send("POST", server.url, {}, b"a", 1 << 23, 10)
        finally:
            await driver.aclose()
    assert answer.status == 200
    assert len(answer.body) == size and bytes(answer.body) == body
    if size > 2 * RECEIVE_BUFFER_SIZE:
        own = answer.body.obj if isinstance(answer.body, memoryview) else answer.body
        into_own = sum(moved for target, moved in targets if target is own)
        # All but what came with the head was decrypted into the body's buffer itself.
        assert into_own >= size - RECEIVE_BUFFER_SIZE


class ReceiveIntoWatched(WatchedSession):
    """Records only what ``receive_into`` decrypted straight into a buffer."""

    def read_into(self, buffer: memoryview) -> int:
        return int(self._session.read_into(buffer))


async def test_a_large_body_is_decrypted_into_its_buffer_as_the_socket_is_read(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not staged in the session first and moved by a second call: all but what came with the
    head (and at most one socket read past it) is decrypted by ``receive_into`` into the body."""
    targets: list[tuple[Any, int]] = []
    start = _asyncio_core_tls.start_session
    monkeypatch.setattr(
        _asyncio_core_tls, "start_session", lambda *a: ReceiveIntoWatched(start(*a), targets)
    )
    size = 1_400_000
    body = bytes(range(251)) * (size // 251) + bytes(range(size % 251))
    async with tls_peer(server_context(tls_files), lambda p: serve_forever(p, body)) as server:
        driver = AsyncDriver(
            timeout=10,
            ssl_context=core_context(tls_files.ca_path),
            auth=None,
            transport=None,
            sleep=None,
        )
        try:
            answer = await driver.send("POST", server.url, {}, b"a", 1 << 23, 10)
        finally:
            await driver.aclose()
    assert bytes(answer.body) == body
    own = answer.body.obj if isinstance(answer.body, memoryview) else answer.body
    into_own = sum(moved for target, moved in targets if target is own)
    assert into_own >= size - 2 * RECEIVE_BUFFER_SIZE


# ---- flow control ------------------------------------------------------------------------------


async def open_core_stream(port: int, context: ssl.SSLContext) -> AsyncioNetworkStream:
    stream = await AsyncioNetworkBackend().connect_tcp("127.0.0.1", port, timeout=5)
    return await stream.start_tls(context, "127.0.0.1", timeout=5)


async def test_a_paused_reader_loses_nothing_and_the_session_holds_one_socket_read(
    tls_files: TlsFiles,
) -> None:
    body = bytes(range(251)) * (8 * 1024 * 1024 // 251)  # a prime period: shifts show

    async def flood(peer: TlsPeer) -> None:
        await peer.send(body)
        await peer.close_notify()
        await peer.how_closed()

    async with tls_peer(server_context(tls_files), flood) as server:
        stream = await open_core_stream(server.port, core_context(tls_files.ca_path))
        transport = stream._transport
        assert isinstance(transport, CoreTlsTransport)
        for _ in range(500):  # until the connection's buffer is full and reading pauses
            if stream._connection._reading_paused:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the peer keeps sending meanwhile
        assert not transport.is_reading()
        assert transport.get_read_buffer_size() <= RECEIVE_BUFFER_SIZE + 16 * 1024
        received = bytearray()
        while chunk := await stream.read(65536, timeout=5):
            received += chunk
            if len(received) % 5 == 0:
                await asyncio.sleep(0.001)  # now and then slower than the loopback
        await stream.aclose()
    assert len(received) == len(body)
    assert received == body


async def test_aclose_sends_close_notify_even_to_a_peer_that_never_answers_it(
    tls_files: TlsFiles,
) -> None:
    async def watch(peer: TlsPeer) -> None:
        server.outcomes.append(await peer.how_closed())  # reads, never answers

    async with tls_peer(server_context(tls_files), watch) as server:
        stream = await open_core_stream(server.port, core_context(tls_files.ca_path))
        await asyncio.wait_for(stream.aclose(), 10)  # a hang guard, not a timing
        assert stream._transport.is_closing()
        for _ in range(500):
            if server.outcomes:
                break
            await asyncio.sleep(0.01)
    assert server.outcomes[0] == "close_notify"


async def test_a_peer_that_stops_reading_is_a_write_timeout(tls_files: TlsFiles) -> None:
    """The TCP transport's pause_writing reaches the connection: a write waits, and times out,
    instead of piling the ciphertext up in memory."""

    async def never_reads(peer: TlsPeer) -> None:
        await peer.stall()

    async with tls_peer(server_context(tls_files), never_reads) as server:
        stream = await open_core_stream(server.port, core_context(tls_files.ca_path))
        try:
            with pytest.raises(httpcore2.WriteTimeout):
                await stream.write(b"x" * (16 * 1024 * 1024), timeout=0.5)
            assert stream._transport.get_write_buffer_size() < 16 * 1024 * 1024
        finally:
            stream.abort()


async def test_a_closed_connection_is_freed_by_its_last_reference_not_by_the_collector(
    tls_files: TlsFiles,
) -> None:
    """The session (its traffic keys in the core's locked heap) and both 256 KiB buffers go
    when the stream is dropped, not at some later cyclic collection."""
    async with tls_peer(server_context(tls_files), lambda p: serve_forever(p, b"x")) as server:
        stream = await open_core_stream(server.port, core_context(tls_files.ca_path))
        gone = weakref.ref(stream._connection), weakref.ref(stream._transport)
        gc.collect()
        gc.disable()
        try:
            await stream.aclose()
            await asyncio.sleep(0.05)  # the TCP transport's connection_lost, called soon
            del stream
            assert [ref() for ref in gone] == [None, None]
        finally:
            gc.enable()


async def test_a_kept_alive_connection_serves_many_requests(
    tls_files: TlsFiles, core_connections: list[CoreTlsTransport]
) -> None:
    async def echo(peer: TlsPeer) -> None:
        while True:
            request = await peer.read_request()
            await peer.send(ok(request.rsplit(b"\r\n\r\n", 1)[1][::-1]))

    async with tls_peer(server_context(tls_files), echo) as server:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(core_context(tls_files.ca_path), LIMITS)
        ) as http:
            for i in range(5):
                response = await http.post(server.url, content=f"request {i}".encode())
                assert response.content == f"request {i}".encode()[::-1]
    assert server.accepted == 1
    assert len(core_connections) == 1


async def test_a_tls_1_2_only_server_is_served(tls_files: TlsFiles) -> None:
    context = server_context(tls_files, maximum=ssl.TLSVersion.TLSv1_2)
    async with tls_peer(context, lambda p: serve_forever(p, b"twelve")) as server:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(core_context(tls_files.ca_path), LIMITS)
        ) as http:
            response = await http.get(server.url)
            stream = response.extensions["network_stream"]
            assert stream.get_extra_info("ssl_object").version() == "TLSv1.2"
    assert response.content == b"twelve"


# ---- what a server or a network does wrong -----------------------------------------------------


async def fetch(server_url: str, ca_path: Any, **timeouts: float) -> httpx2.Response:
    timeout = httpx2.Timeout(10.0, **timeouts)
    async with httpx2.AsyncClient(
        transport=AsyncioTLSTransport(core_context(ca_path), LIMITS), timeout=timeout
    ) as http:
        return await http.get(server_url)


async def test_a_server_that_stops_mid_record_is_a_read_timeout(tls_files: TlsFiles) -> None:
    async def half_a_record(peer: TlsPeer) -> None:
        await peer.read_request()
        records = peer.records(ok(b"q" * 4000))
        await peer.send_raw(records[: len(records) // 2])
        await peer.stall()

    async with tls_peer(server_context(tls_files), half_a_record) as server:
        with pytest.raises(httpx2.ReadTimeout):
            await fetch(server.url, tls_files.ca_path, read=0.3)


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ("close_notify", httpx2.RemoteProtocolError),
        ("fin", httpx2.RemoteProtocolError),
        ("reset", httpx2.ReadError),
    ],
)
async def test_a_body_cut_short_never_passes_for_a_whole_one(
    tls_files: TlsFiles, end: str, expected: type[Exception]
) -> None:
    async def cut(peer: TlsPeer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"a" * 524288)
        if end == "close_notify":
            await peer.close_notify()
            peer.fin()
        elif end == "fin":
            peer.fin()
        else:
            await asyncio.sleep(0.2)  # the client reads what came, then the reset
            peer.reset()

    async with tls_peer(server_context(tls_files), cut) as server:
        with pytest.raises(expected):
            await fetch(server.url, tls_files.ca_path)


@pytest.mark.parametrize("kind", ["garbage", "tampered record"])
async def test_bytes_that_are_no_record_of_the_session_are_a_read_error_from_ssl(
    tls_files: TlsFiles, kind: str
) -> None:
    async def corrupt(peer: TlsPeer) -> None:
        await peer.read_request()
        if kind == "garbage":
            await peer.send_raw(b"this is not TLS at all\r\n" * 10)
        else:
            record = bytearray(peer.records(ok(b"t" * 100)))
            record[len(record) // 2] ^= 0x01  # one ciphertext bit
            await peer.send_raw(bytes(record))
        await peer.stall()

    async with tls_peer(server_context(tls_files), corrupt) as server:
        with pytest.raises(httpx2.ReadError) as caught:
            await fetch(server.url, tls_files.ca_path)
    assert any(isinstance(cause, ssl.SSLError) for cause in causes(caught.value))


async def test_a_forged_record_inside_a_large_body_is_a_read_error_from_ssl(
    tls_files: TlsFiles,
) -> None:
    """Authentic body records, then a forged one in the same segment (one receive_into writes
    the good ones into the body, then fails): a ReadError from ssl, never a body."""

    async def forge_mid_body(peer: TlsPeer) -> None:
        await peer.read_request()
        good = peer.records(b"HTTP/1.1 200 OK\r\nContent-Length: 600000\r\n\r\n")
        good += peer.records(b"g" * 300_000)
        forged = bytearray(peer.records(b"f" * 300_000))
        forged[len(forged) // 2] ^= 0x01
        await peer.send_raw(good)
        await asyncio.sleep(0.05)  # the head first: the body's own buffer is then the target
        await peer.send_raw(bytes(forged))
        await peer.stall()

    async with tls_peer(server_context(tls_files), forge_mid_body) as server:
        with pytest.raises(httpx2.ReadError) as caught:
            await fetch(server.url, tls_files.ca_path)
    assert any(isinstance(cause, ssl.SSLError) for cause in causes(caught.value))


async def test_an_answer_before_a_forged_record_is_returned_and_the_failure_kept_for_later(
    tls_files: TlsFiles,
) -> None:
    """The answer's records were authentic: what breaks after them fails the next read of the
    connection (which the pool then sees as unusable), and the answer is not lost."""

    async def answer_then_forge(peer: TlsPeer) -> None:
        await peer.read_request()
        answer = peer.records(ok(b"hello"))
        forged = bytearray(peer.records(b"more"))
        forged[-1] ^= 0x01  # the tag
        await peer.send_raw(answer + bytes(forged))  # in one segment: one receive
        await peer.stall()

    async with tls_peer(server_context(tls_files), answer_then_forge) as server:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(core_context(tls_files.ca_path), LIMITS), timeout=10
        ) as http:
            async with http.stream("GET", server.url) as response:
                assert await response.aread() == b"hello"
                stream = response.extensions["network_stream"]
                assert stream.get_extra_info("is_readable") is True
                with pytest.raises(httpcore2.ReadError, match="BAD_RECORD_MAC") as caught:
                    await stream.read(65536)
    assert isinstance(caught.value.__cause__, ssl.SSLError)


async def test_a_handshake_that_never_finishes_is_a_connect_timeout(tls_files: TlsFiles) -> None:
    async def half_a_flight(peer: TlsPeer) -> None:
        hello = await peer.reader.read(65536)
        assert hello[:1] == b"\x16"  # a handshake record: the ClientHello
        await peer.send_raw(b"\x16\x03\x03\x00\x40" + b"\x02" * 20)  # a ServerHello cut short
        await peer.stall()

    async with tls_peer(server_context(tls_files), half_a_flight, handshake=False) as server:
        with pytest.raises(httpx2.ConnectTimeout):
            await fetch(server.url, tls_files.ca_path, connect=0.3)


async def test_a_handshake_without_a_timeout_is_still_bounded(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As loop.start_tls's own bound (60 s, here shortened): a ConnectError, the socket gone."""
    monkeypatch.setattr(_asyncio_core_tls, "_HANDSHAKE_TIMEOUT", 0.2)

    async def silent(peer: TlsPeer) -> None:
        await peer.stall()

    async with tls_peer(server_context(tls_files), silent, handshake=False) as server:
        stream = await AsyncioNetworkBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
        with pytest.raises(httpcore2.ConnectError, match="handshake is taking longer") as caught:
            await stream.start_tls(core_context(tls_files.ca_path), "127.0.0.1", timeout=None)
        assert stream._transport.is_closing()
    assert isinstance(caught.value.__cause__, ConnectionAbortedError)


async def test_a_server_speaking_no_tls_is_a_connect_error_from_ssl(tls_files: TlsFiles) -> None:
    async def plain_http(peer: TlsPeer) -> None:
        await peer.reader.read(65536)
        await peer.send_raw(ok(b"not over tls"))
        await peer.stall()

    async with tls_peer(server_context(tls_files), plain_http, handshake=False) as server:
        with pytest.raises(httpx2.ConnectError) as caught:
            await fetch(server.url, tls_files.ca_path)
    assert any(isinstance(cause, ssl.SSLError) for cause in causes(caught.value))


@pytest.mark.parametrize("when", ["handshake", "body"])
async def test_a_cancelled_request_leaves_no_socket_behind(tls_files: TlsFiles, when: str) -> None:
    reached = asyncio.Event()

    async def stall(peer: TlsPeer) -> None:
        if when == "handshake":
            await peer.reader.read(65536)
        else:
            await peer.handshake()
            await peer.read_request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"b" * 300000)
        reached.set()
        await peer.stall()

    async with tls_peer(server_context(tls_files), stall, handshake=False) as server:
        async with httpx2.AsyncClient(
            transport=AsyncioTLSTransport(core_context(tls_files.ca_path), LIMITS), timeout=30
        ) as http:
            request = asyncio.ensure_future(http.get(server.url))
            await asyncio.wait_for(reached.wait(), 10)
            await asyncio.sleep(0.1)  # the client is waiting on the peer
            assert len(client_sockets(server.port)) == 1
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            for _ in range(100):  # an aborted transport closes its socket on the next turns
                if not client_sockets(server.port):
                    break
                await asyncio.sleep(0.01)
            assert client_sockets(server.port) == []


# ---- verification ------------------------------------------------------------------------------


async def refusal(tls_files: TlsFiles, context: ssl.SSLContext, host: str) -> Any:
    """The ssl error a handshake with ``context`` to ``host`` fails in (a ConnectError's
    cause), the TCP transport aborted."""
    async with tls_peer(server_context(tls_files), lambda p: serve_forever(p, b"x")) as server:
        stream = await AsyncioNetworkBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
        with pytest.raises(httpcore2.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            await stream.start_tls(context, host, timeout=5)
        assert stream._transport.is_closing()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    return caught.value.__cause__


@pytest.mark.parametrize(
    ("trusted", "host"),
    [("certifi", "127.0.0.1"), ("own CA", "elsewhere.example"), ("own CA", "127.0.0.2")],
    ids=["untrusted CA", "another name", "another address"],
)
async def test_a_refused_certificate_reads_as_openssl_s_refusal(
    tls_files: TlsFiles, trusted: str, host: str
) -> None:
    """The same verify_message and code as the interpreter's OpenSSL gives for the same
    certificate: what the client's messages and retry rule read."""
    ca_path = certifi.where() if trusted == "certifi" else str(tls_files.ca_path)
    core = await refusal(tls_files, core_context(ca_path), host)
    openssl = await refusal(tls_files, ssl.create_default_context(cafile=ca_path), host)
    assert core.verify_message == openssl.verify_message
    assert core.verify_code == openssl.verify_code


async def test_no_host_name_is_refused_before_anything_is_sent(tls_files: TlsFiles) -> None:
    async with tls_peer(server_context(tls_files), lambda p: serve_forever(p, b"x")) as server:
        stream = await AsyncioNetworkBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
        with pytest.raises(ValueError):
            await stream.start_tls(core_context(tls_files.ca_path), None, timeout=5)
        assert stream._transport.is_closing()


async def test_a_context_of_the_interpreter_s_own_keeps_asyncio_s_tls(
    tls_files: TlsFiles, core_connections: list[CoreTlsTransport]
) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca_path))
    async with tls_peer(server_context(tls_files), lambda p: serve_forever(p, b"x")) as server:
        stream = await AsyncioNetworkBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
        stream = await stream.start_tls(context, "127.0.0.1", timeout=5)
        assert not isinstance(stream._transport, CoreTlsTransport)
        assert isinstance(stream.get_extra_info("ssl_object"), ssl.SSLObject)
        await stream.aclose()
    assert core_connections == []
