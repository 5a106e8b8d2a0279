"""Reads paced by the socket's receive low-water mark while a body of known length is owed
(``_rcvlowat``), on both drivers: the async one over plain TCP and over the core's TLS, the sync
one over the core's TLS.

The kernel's side first (the mark hides bytes under it, the end of stream and a reset do not),
then against a loopback server that sends exactly the bytes it means, when it means: bodies cut
at the edges of records, of the head and of the mark still complete at once; the end of stream
and a reset mid-body still fail at once; a stalled body still times out after its read timeout,
measured from the last bytes that came, also when they came under the mark; a slow body that
keeps coming never times out; and the mark is back at 1 once the body is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest

from nomyo_native import _rcvlowat
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._http_body import LIMITS
from nomyo_native._rcvlowat import MAX_MARK, LowWaterMark
from nomyo_native._sync_core_tls import CoreTlsStream
from nomyo_native._sync_driver import _DeadlineTransport

from .tls_certs import Authority, server_context

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_RCVLOWAT") or sys.platform == "win32",
    reason="no receive low-water mark here: nothing is paced",
)

LINUX = sys.platform.startswith("linux")
BODY = bytes(range(251)) * (3 * 1024 * 1024 // 251)  # three marks' worth and some
# Far above how long the awaited event takes: a test waiting this long has found a hang.
PATIENCE = 20.0


def lowat(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


@contextlib.contextmanager
def connected_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


def readable(sock: socket.socket, wait: float = 0.0) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def settle(sock: socket.socket, nbytes: int) -> None:
    """Until ``nbytes`` are queued on ``sock`` (loopback delivers at once, but not atomically)."""
    queued = sock.recv(nbytes + 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    ends = time.monotonic() + PATIENCE
    while len(queued) < nbytes and time.monotonic() < ends:
        time.sleep(0.001)
        queued = sock.recv(nbytes + 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    assert len(queued) == nbytes


# ---- the kernel's side, and LowWaterMark ------------------------------------------------------


def test_the_mark_hides_fewer_bytes_but_not_the_end_of_stream() -> None:
    with connected_pair() as (client, server):
        mark = LowWaterMark.of(client)
        assert mark is not None
        mark.set(100_000)
        assert lowat(client) == 100_000 == mark.value
        server.sendall(b"x" * 99_999)
        settle(client, 99_999)
        assert not readable(client, 0.05)
        server.sendall(b"x")
        assert readable(client, PATIENCE)
        client.recv(100_000)
        server.sendall(b"y" * 10)
        settle(client, 10)
        assert not readable(client, 0.05)
        server.shutdown(socket.SHUT_WR)  # the FIN wakes the reader whatever the mark
        assert readable(client, PATIENCE)


def test_a_reset_wakes_the_reader_whatever_the_mark() -> None:
    with connected_pair() as (client, server):
        mark = LowWaterMark.of(client)
        assert mark is not None
        mark.set(100_000)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        assert readable(client, PATIENCE)
        with pytest.raises(ConnectionResetError):
            client.recv(10)


def test_the_mark_is_capped_and_set_back_and_set_only_when_it_changes() -> None:
    with connected_pair() as (client, _server):
        mark = LowWaterMark.of(client)
        assert mark is not None
        mark.set(10 * MAX_MARK)
        assert lowat(client) == MAX_MARK == mark.value
        mark.set(-5)
        assert lowat(client) == 1 == mark.value
        mark.set(70_000)
        mark.reset()
        assert lowat(client) == 1 == mark.value


def test_where_the_kernel_does_not_grow_the_buffer_the_mark_is_half_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_rcvlowat, "_GROWS_BUFFER", False)
    with connected_pair() as (client, _server):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        receive_buffer = client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        mark = LowWaterMark.of(client)
        assert mark is not None
        mark.set(MAX_MARK)
        assert lowat(client) == receive_buffer // 2 == mark.value
        mark.set(1000)
        assert lowat(client) == 1000


def test_only_a_tcp_socket_has_a_mark(tmp_path: Path) -> None:
    assert LowWaterMark.of(None) is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert LowWaterMark.of(udp) is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert LowWaterMark.of(unix) is None
    with socket.socket() as tcp:
        assert LowWaterMark.of(tcp) is not None


class RefusingSocket:
    """A TCP socket's stand-in whose setsockopt fails after ``accepts`` calls."""

    type = socket.SOCK_STREAM
    family = socket.AF_INET

    def __init__(self, accepts: int) -> None:
        self.accepts = accepts
        self.calls = 0

    def fileno(self) -> int:
        return -1

    def setsockopt(self, *args: Any) -> None:
        self.calls += 1
        if self.calls > self.accepts:
            raise OSError(92, "Protocol not available")

    def getsockopt(self, *args: Any) -> Any:
        raise OSError(92, "Protocol not available")


def test_a_socket_that_refuses_the_mark_is_left_alone() -> None:
    sock = RefusingSocket(accepts=0)
    mark = LowWaterMark.of(sock)
    assert mark is not None
    mark.set(50_000)  # refused: not available here, nothing to undo
    assert mark.value == 1 and not mark.available
    mark.set(60_000)
    mark.reset()
    assert sock.calls == 1
    assert mark.idle_since_arrival() is None


def test_a_mark_that_cannot_be_set_back_is_an_error() -> None:
    mark = LowWaterMark.of(RefusingSocket(accepts=1))
    assert mark is not None
    mark.set(50_000)
    with pytest.raises(OSError):
        mark.reset()


def test_bytes_under_the_mark_say_how_long_ago_they_came() -> None:
    with connected_pair() as (client, server):
        mark = LowWaterMark.of(client)
        assert mark is not None
        assert mark.idle_since_arrival() is None  # nothing queued
        mark.set(100_000)
        server.sendall(b"z" * 1000)
        settle(client, 1000)
        time.sleep(0.3)
        idle = mark.drop()
        assert lowat(client) == 1
        assert idle is not None
        if LINUX:
            assert 0.25 <= idle <= 0.3 + PATIENCE / 4
        else:
            assert idle == 0.0  # the kernel does not say: they count as just arrived
        client.recv(1000)
        assert mark.idle_since_arrival() is None


# ---- a loopback server that sends what it is told, when it is told ----------------------------


Plan = Callable[["Wire"], None]


@dataclass
class Wire:
    """One connection's answer as it goes on the wire (TLS records, or plain), and its socket."""

    sock: socket.socket
    data: bytes
    sent_at: list[float] = field(default_factory=list)

    def send(self, start: int, end: int | None = None) -> None:
        self.sock.sendall(self.data[start:end])
        self.sent_at.append(time.monotonic())

    def hold(self) -> None:
        """Sends nothing more until the client has gone."""
        self.sock.settimeout(PATIENCE)
        with contextlib.suppress(OSError):
            while self.sock.recv(65536):
                pass


@dataclass
class Server:
    tls: ssl.SSLContext | None
    plan: Plan
    answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    wires: list[Wire] = field(default_factory=list)
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        port = self.listener.getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/"

    def start(self) -> Server:
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            raw, _ = self.listener.accept()
            with raw:
                wire = Wire(raw, self._answer(raw))
                self.wires.append(wire)
                self.plan(wire)

    def _answer(self, raw: socket.socket) -> bytes:
        answer = self.answer
        if self.tls is None:
            _read_head(raw.recv)
            return answer
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        session = self.tls.wrap_bio(incoming, outgoing, server_side=True)

        def receive(size: int) -> bytes:
            while True:
                try:
                    return session.read(size)
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    data = raw.recv(65536)
                    if not data:
                        raise ConnectionError("the client left") from None
                    incoming.write(data)

        while True:
            try:
                session.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        raw.sendall(outgoing.read())
        _read_head(receive)
        raw.sendall(outgoing.read())  # TLS 1.3's tickets
        session.write(answer)
        return outgoing.read()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        if self.thread is not None:
            self.thread.join(PATIENCE)


def _read_head(receive: Callable[[int], bytes]) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        data = receive(65536)
        if not data:
            raise ConnectionError("the client left before its request")
        head += data


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("lowat") / "ca")


@pytest.fixture(scope="module")
def tls_server_context(
    authority: Authority, tmp_path_factory: pytest.TempPathFactory
) -> ssl.SSLContext:
    cert, key = authority.issue(tmp_path_factory.mktemp("lowat-leaf"))
    return server_context(cert, key, None)


@dataclass
class Marks:
    """Every mark the client set: (the socket, the value asked for)."""

    set: list[tuple[Any, int]] = field(default_factory=list)

    @property
    def raised(self) -> list[int]:
        return [value for _, value in self.set if value > 1]


@pytest.fixture
def marks(monkeypatch: pytest.MonkeyPatch) -> Marks:
    seen = Marks()
    original = LowWaterMark.set

    def recording(self: LowWaterMark, nbytes: int) -> None:
        original(self, nbytes)
        seen.set.append((self._sock, self.value))

    monkeypatch.setattr(_rcvlowat.LowWaterMark, "set", recording)
    return seen


CLIENTS = ["async-plain", "async-tls", "sync-tls"]


@dataclass
class Fetched:
    body: bytes | None
    error: BaseException | None
    ended: float
    client_lowat: int | None  # the mark on the client's socket once the answer is in


def fetch(client: str, url: str, ca: Path, read_timeout: float) -> Fetched:
    """One GET with ``client``: the body, or the exception, when it ended, and the client
    socket's mark right after (while the connection is still in the pool)."""
    timeout = httpx2.Timeout(PATIENCE, read=read_timeout)
    context = CoreTlsContext.from_locations(str(ca), None)
    if client.startswith("sync"):
        with httpx2.Client(transport=_DeadlineTransport(context, LIMITS), timeout=timeout) as http:
            return _outcome(lambda: http.get(url))

    async def run() -> Fetched:
        transport = AsyncioTLSTransport(context, LIMITS)
        async with httpx2.AsyncClient(transport=transport, timeout=timeout) as http:
            try:
                response = await http.get(url)
            except httpx2.HTTPError as exc:
                return Fetched(None, exc, time.monotonic(), None)
            return Fetched(response.content, None, time.monotonic(), _stream_lowat(response))

    return asyncio.run(run())


def _outcome(get: Callable[[], httpx2.Response]) -> Fetched:
    try:
        response = get()
    except httpx2.HTTPError as exc:
        return Fetched(None, exc, time.monotonic(), None)
    return Fetched(response.content, None, time.monotonic(), _stream_lowat(response))


def _stream_lowat(response: httpx2.Response) -> int:
    sock = response.extensions["network_stream"].get_extra_info("socket")
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))


@pytest.fixture
def run(
    authority: Authority, tls_server_context: ssl.SSLContext
) -> Iterator[Callable[[str, Plan, float], tuple[Fetched, Wire]]]:
    servers: list[Server] = []

    def go(client: str, plan: Plan, read_timeout: float = PATIENCE) -> tuple[Fetched, Wire]:
        tls = None if client.endswith("plain") else tls_server_context
        server = Server(tls, plan).start()
        servers.append(server)
        fetched = fetch(client, server.url, authority.path, read_timeout)
        server.stop()
        [wire] = server.wires
        return fetched, wire

    yield go
    for server in servers:
        server.stop()


def record_ends(data: bytes) -> list[int]:
    """Where each TLS record of ``data`` ends."""
    ends, at = [], 0
    while at + 5 <= len(data):
        at += 5 + int.from_bytes(data[at + 3 : at + 5], "big")
        ends.append(at)
    return ends


# ---- bodies cut anywhere still complete at once -----------------------------------------------


def cut_points(data: bytes, tls: bool) -> list[int]:
    """The edges where a wrongly high mark would hold a body: around the last records, the
    head, one read and one mark from the end, and inside a record's header and tag."""
    size = len(data)
    points = {1, 100, size // 2, size - MAX_MARK, size - MAX_MARK - 1, size - 1, size - 5}
    if tls:
        ends = record_ends(data)
        for end in [*ends[:2], *ends[-4:-1]]:
            points.update({end - 1, end, end + 1, end + 3})
        points.add(ends[-2] + 22)  # the last record: its header, and a few bytes of it
    else:
        points.update({size - 16 * 1024, size - 64 * 1024 - 1})
    return sorted(p for p in points if 0 < p < size)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_body_cut_anywhere_completes_at_once_and_the_mark_is_1_after(
    client: str, run: Any, marks: Marks
) -> None:
    whole, wire = run(client, send_all, PATIENCE)
    assert whole.body == BODY and whole.client_lowat == 1
    plans_run = 0
    for point in cut_points(wire.data, not client.endswith("plain")):

        def plan(wire: Wire, point: int = point) -> None:
            wire.send(0, point)
            time.sleep(0.05)
            wire.send(point)
            wire.hold()

        fetched, wire = run(client, plan, PATIENCE)
        plans_run += 1
        assert fetched.error is None, (point, fetched.error)
        assert fetched.body == BODY, point
        # Done within moments of the last bytes: no wait for bytes that never come.
        assert fetched.ended - wire.sent_at[-1] < 2.0, point
        assert fetched.client_lowat == 1, point
    assert plans_run >= 8
    assert marks.raised, "the body's reads were paced"


def send_all(wire: Wire) -> None:
    wire.send(0)
    wire.hold()


# ---- the end of stream, a reset, a stall, a slow body -----------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("end", ["fin", "reset"])
def test_the_end_mid_body_fails_at_once(client: str, end: str, run: Any, marks: Marks) -> None:
    def plan(wire: Wire) -> None:
        wire.send(0, len(wire.data) // 2)
        time.sleep(0.1)  # the client waits under its mark by now
        if end == "reset":
            wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            wire.sock.shutdown(socket.SHUT_WR)
        wire.sent_at.append(time.monotonic())
        wire.sock.close()

    fetched, wire = run(client, plan, PATIENCE)
    expected = httpx2.RemoteProtocolError if end == "fin" else httpx2.ReadError
    if client.endswith("tls") and end == "fin":
        expected = (httpx2.RemoteProtocolError, httpx2.ReadError)  # cut mid-record
    assert isinstance(fetched.error, expected), repr(fetched.error)
    assert fetched.ended - wire.sent_at[-1] < 2.0
    assert marks.raised


READ_TIMEOUT = 0.6


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stalled_body_times_out_after_its_read_timeout(
    client: str, run: Any, marks: Marks
) -> None:
    def plan(wire: Wire) -> None:
        wire.send(0, len(wire.data) // 2)
        wire.hold()

    fetched, wire = run(client, plan, READ_TIMEOUT)
    assert isinstance(fetched.error, httpx2.ReadTimeout), repr(fetched.error)
    waited = fetched.ended - wire.sent_at[0]
    assert READ_TIMEOUT - 0.05 <= waited <= READ_TIMEOUT + 0.5
    assert marks.raised


def half_then_a_few_bytes(wire: Wire) -> None:
    half = len(wire.data) // 2
    wire.send(0, half)
    time.sleep(READ_TIMEOUT / 2)
    wire.send(half, half + 10)  # under the mark: the client is not woken for them
    wire.hold()


def check_counted_from_when_they_came(
    error: BaseException | None, ended: float, wire: Wire
) -> None:
    assert isinstance(error, (httpx2.ReadTimeout, httpcore2.ReadTimeout)), repr(error)
    after_last = ended - wire.sent_at[1]
    if LINUX:  # the kernel says when they came: a whole timeout after them, as unpaced
        assert READ_TIMEOUT - 0.05 <= after_last <= READ_TIMEOUT + 0.3
    else:  # they count as having come when the timer found them
        assert READ_TIMEOUT - 0.05 <= after_last <= 2 * READ_TIMEOUT + 0.3


@pytest.mark.parametrize("client", ["async-plain", "async-tls"])
def test_bytes_that_came_under_the_mark_count_from_when_they_came(
    client: str, run: Any, marks: Marks
) -> None:
    fetched, wire = run(client, half_then_a_few_bytes, READ_TIMEOUT)
    check_counted_from_when_they_came(fetched.error, fetched.ended, wire)
    assert marks.raised


def test_the_sync_stream_counts_bytes_under_the_mark_from_when_they_came(
    authority: Authority, tls_server_context: ssl.SSLContext, marks: Marks
) -> None:
    """The stream itself, receiving the whole body into one view (through the client, a view
    ends where the body buffer's room does, and the mark falls to 1 near its end)."""
    server = Server(tls_server_context, half_then_a_few_bytes, answer=BODY).start()
    context = CoreTlsContext.from_locations(str(authority.path), None)
    try:
        sock = socket.create_connection(server.listener.getsockname())
        stream = CoreTlsStream.connect(sock, context, "127.0.0.1", PATIENCE)
        try:
            stream.write(b"GET / HTTP/1.1\r\n\r\n", PATIENCE)
            with pytest.raises(httpcore2.ReadTimeout) as caught:
                stream.receiver()(memoryview(bytearray(len(BODY))), READ_TIMEOUT)
            ended = time.monotonic()
            assert lowat(sock) == 1
        finally:
            stream.close()
    finally:
        server.stop()
    [wire] = server.wires
    check_counted_from_when_they_came(caught.value, ended, wire)
    assert marks.raised


@pytest.mark.parametrize("client", CLIENTS)
def test_a_slow_body_that_keeps_coming_never_times_out(client: str, run: Any, marks: Marks) -> None:
    def plan(wire: Wire) -> None:
        at = len(wire.data) // 2
        wire.send(0, at)
        for _ in range(6):  # 1.5 timeouts of bytes each under the mark
            time.sleep(READ_TIMEOUT / 4)
            wire.send(at, at + 500)
            at += 500
        wire.send(at)
        wire.hold()

    fetched, wire = run(client, plan, READ_TIMEOUT)
    assert fetched.error is None, repr(fetched.error)
    assert fetched.body == BODY
    assert fetched.ended - wire.sent_at[-1] < 2.0
    assert fetched.client_lowat == 1
    assert marks.raised


def test_asyncio_s_own_tls_is_not_paced(
    authority: Authority, tls_server_context: ssl.SSLContext, marks: Marks
) -> None:
    """asyncio's SSL protocol holds an unknown amount of ciphertext: no mark is ever set."""
    server = Server(tls_server_context, send_all).start()
    try:

        async def get() -> bytes:
            context = ssl.create_default_context(cafile=str(authority.path))
            async with httpx2.AsyncClient(transport=AsyncioTLSTransport(context, LIMITS)) as http:
                return (await http.get(server.url)).content

        assert asyncio.run(get()) == BODY
    finally:
        server.stop()
    assert not marks.raised
