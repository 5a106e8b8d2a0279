"""Review: the sync and async clients over the core's TLS against hostile or unlucky servers on
loopback: a fork child never touches its parent's TLS sessions, many connections leave no
socket behind, and a server that misbehaves in or after the handshake ends in httpx2's typed
errors (an ``ssl`` error in the chain where TLS failed), within the timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from client.tls_certs import Authority, server_context
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._http_body import LIMITS
from nomyo_native._sync_driver import _DeadlineTransport

TESTS = Path(__file__).parent
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
PATIENCE = 20.0

Handler = Callable[[socket.socket, ssl.SSLContext], None]


def _sockets_to(port: int) -> int:
    """This process's open sockets whose peer is loopback ``port`` (the clients' ends: the
    server threads' ends have it as their local port)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[9] in inodes:
                count += 1
    return count


class _Server:
    """A loopback TCP listener running ``handler(raw socket, server context)`` per connection
    in a thread."""

    def __init__(self, context: ssl.SSLContext, handler: Handler) -> None:
        self.context, self.handler = context, handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.listener.getsockname()[1]}/"

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._run, args=(raw,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), raw:
            self.handler(raw, self.context)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=PATIENCE)


def _answer_ok(raw: socket.socket, context: ssl.SSLContext) -> None:
    with context.wrap_socket(raw, server_side=True) as conn:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            conn.sendall(OK)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "ca")


@pytest.fixture
def serve(tmp_path: Path, authority: Authority) -> Iterator[Callable[[Handler], _Server]]:
    servers: list[_Server] = []
    cert, key = authority.issue(tmp_path / "leaf")

    def start(handler: Handler) -> _Server:
        server = _Server(server_context(cert, key), handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _sync_client(ca: Path, timeout: float = 2.0) -> httpx2.Client:
    transport = _DeadlineTransport(CoreTlsContext.from_locations(str(ca), None), LIMITS)
    return httpx2.Client(transport=transport, timeout=timeout)


def _async_client(ca: Path, timeout: float = 2.0) -> httpx2.AsyncClient:
    transport = AsyncioTLSTransport(CoreTlsContext.from_locations(str(ca), None), LIMITS)
    return httpx2.AsyncClient(transport=transport, timeout=timeout)


def _ssl_error_in(exc: BaseException) -> ssl.SSLError | None:
    current: BaseException | None = exc
    while current is not None and not isinstance(current, ssl.SSLError):
        current = current.__cause__ or current.__context__
    return current


def _no_panic_in(exc: BaseException) -> None:
    current: BaseException | None = exc
    while current is not None:
        assert "PanicException" not in type(current).__name__, repr(current)
        current = current.__cause__ or current.__context__


# ---- misbehaving servers, both drivers -----------------------------------------------------------


def _handshake_then(answer: bytes, *, then_close: bool = True) -> Handler:
    """A server that completes the handshake, reads the request head and answers ``answer``
    (raw bytes, written on the TCP socket under the TLS layer's feet)."""

    def handler(raw: socket.socket, context: ssl.SSLContext) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                data = raw.recv(65536)
                if not data:
                    return
                incoming.write(data)
        raw.sendall(outgoing.read())
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                head += tls.read(65536)
            except ssl.SSLWantReadError:
                data = raw.recv(65536)
                if not data:
                    return
                incoming.write(data)
        tls.write(OK[:20])
        raw.sendall(outgoing.read() + answer)
        if not then_close:
            raw.recv(1)  # until the client goes
        else:
            raw.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                raw.recv(1)

    return handler


def _before_hello(data: bytes, *, then_close: bool) -> Handler:
    def handler(raw: socket.socket, context: ssl.SSLContext) -> None:
        del context
        raw.recv(65536)  # the ClientHello
        raw.sendall(data)
        if then_close:
            raw.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            raw.recv(1)

    return handler


def _record(content_type: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content_type, 0x0303, len(body)) + body


# name -> (handler, what the client gets: "connect" or "read" failure)
HOSTILE: dict[str, tuple[Handler, str]] = {
    "a fatal alert instead of ServerHello": (
        _before_hello(_record(21, b"\x02\x28"), then_close=False),
        "connect",
    ),
    "close_notify instead of ServerHello, the socket left open": (
        _before_hello(_record(21, b"\x01\x00"), then_close=False),
        "connect",
    ),
    "an over-long record header instead of ServerHello": (
        _before_hello(struct.pack("!BHH", 22, 0x0303, 0xFFFF), then_close=False),
        "connect",
    ),
    "half a record then EOF instead of ServerHello": (
        _before_hello(struct.pack("!BHH", 22, 0x0303, 100) + b"\0" * 10, then_close=True),
        "connect",
    ),
    "a cleartext HTTP answer after the handshake": (
        _handshake_then(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        "read",
    ),
    "EOF in the middle of a record of the answer": (
        _handshake_then(struct.pack("!BHH", 23, 0x0303, 200) + b"\0" * 50),
        "read",
    ),
    "an over-long record header in the answer, the socket left open": (
        _handshake_then(struct.pack("!BHH", 23, 0x0303, 0xFFFF), then_close=False),
        "read",
    ),
    "a cleartext alert in the answer, the socket left open": (
        _handshake_then(_record(21, b"\x02\x28"), then_close=False),
        "read",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_sync_client_fails_typed(case: str, serve, authority) -> None:
    handler, phase = HOSTILE[case]
    server = serve(handler)
    with _sync_client(authority.path) as http, pytest.raises(httpx2.TransportError) as failed:
        http.get(server.url).read()
    _check_failure(failed.value, phase)


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_the_async_client_fails_typed(case: str, serve, authority) -> None:
    handler, phase = HOSTILE[case]
    server = serve(handler)
    async with _async_client(authority.path) as http:
        with pytest.raises(httpx2.TransportError) as failed:
            async with asyncio.timeout(PATIENCE):
                await (await http.get(server.url)).aread()
    _check_failure(failed.value, phase)


def _check_failure(exc: httpx2.TransportError, phase: str) -> None:
    _no_panic_in(exc)
    if phase == "connect":
        # A failed TLS handshake: ConnectError (with the ssl error) or, for a peer that says
        # nothing usable and keeps the socket open, the connect timeout.
        assert isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout), repr(exc)
        if isinstance(exc, httpx2.ConnectError):
            assert _ssl_error_in(exc) is not None or "closed" in str(exc).lower(), repr(exc)
    else:
        # A record that fails is a ReadError from ssl; a stream cut short (a FIN, even in the
        # middle of a record: a ragged EOF, as OpenSSL's path suppresses it) is HTTP's to judge.
        assert isinstance(
            exc, httpx2.ReadError | httpx2.ReadTimeout | httpx2.RemoteProtocolError
        ), repr(exc)
        if isinstance(exc, httpx2.ReadError):
            assert _ssl_error_in(exc) is not None, repr(exc)


# ---- no socket left behind -----------------------------------------------------------------------


def test_many_sync_connections_good_and_refused_leave_no_socket(serve, authority, tmp_path) -> None:
    server = serve(_answer_ok)
    stranger = Authority.create(tmp_path / "stranger", "Stranger CA")
    port = server.listener.getsockname()[1]
    for _ in range(3):
        with _sync_client(authority.path) as http:
            for _ in range(10):
                assert http.get(server.url).content == b"hello"
        with _sync_client(stranger.path) as http:
            for _ in range(10):
                with pytest.raises(httpx2.ConnectError):
                    http.get(server.url)
    assert _sockets_to(port) == 0


async def test_many_async_connections_at_once_leave_no_socket(serve, authority, tmp_path) -> None:
    server = serve(_answer_ok)
    stranger = Authority.create(tmp_path / "stranger", "Stranger CA")
    port = server.listener.getsockname()[1]
    limits = httpx2.Limits(max_connections=40, max_keepalive_connections=40)
    good = httpx2.AsyncClient(
        transport=AsyncioTLSTransport(
            CoreTlsContext.from_locations(str(authority.path), None), limits
        ),
        timeout=PATIENCE,
    )
    async with good, _async_client(stranger.path, PATIENCE) as bad:
        answers = await asyncio.gather(*(good.get(server.url) for _ in range(40)))
        assert {a.content for a in answers} == {b"hello"}
        refused = await asyncio.gather(
            *(bad.get(server.url) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, httpx2.ConnectError) for r in refused), refused
        assert _sockets_to(port) <= 40  # the pool's kept-alive connections, at most
    for _ in range(100):  # an aborted transport closes its socket on the loop's next turns
        if not _sockets_to(port):
            break
        await asyncio.sleep(0.01)
    assert _sockets_to(port) == 0


# ---- fork ----------------------------------------------------------------------------------------

FORK_SCRIPT = textwrap.dedent(
    """
    import contextlib, os, socket, ssl, sys, tempfile, threading
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from client.tls_certs import Authority, server_context
    from nomyo_native._core_tls import CoreTlsContext
    from nomyo_native._sync_core_tls import CoreTlsStream
    from nomyo_native._sync_driver import SyncDriver

    directory = Path(tempfile.mkdtemp())
    authority = Authority.create(directory / "ca")
    context = server_context(*authority.issue(directory / "leaf"))
    listener = socket.create_server(("127.0.0.1", 0))
    OK = b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhello"

    def answer(raw):
        with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as conn:
            while True:
                head = b""
                while b"\\r\\n\\r\\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                conn.sendall(OK)

    def accept():
        while True:
            raw, _ = listener.accept()
            threading.Thread(target=answer, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/"
    connects = []
    original = CoreTlsStream.connect.__func__

    def counting(cls, *args):
        connects.append(os.getpid())
        return original(cls, *args)

    CoreTlsStream.connect = classmethod(counting)
    driver = SyncDriver(
        timeout=10, ssl_context=CoreTlsContext.from_locations(str(authority.path), None),
        auth=None, transport=None, sleep=None,
    )
    assert driver.send("GET", url, {}, None, 1 << 20, 10).body == b"hello"
    pid = os.fork()
    if pid == 0:
        ok = driver.send("GET", url, {}, None, 1 << 20, 10).body == b"hello"
        mine = connects.count(os.getpid())
        driver.close()
        os._exit(0 if ok and mine == 1 else 3)
    _, status = os.waitpid(pid, 0)
    # The parent's pooled connection still works: the child never wrote to its session.
    assert driver.send("GET", url, {}, None, 1 << 20, 10).body == b"hello"
    print(os.waitstatus_to_exitcode(status), connects.count(os.getpid()))
    """
)


def test_a_fork_child_never_uses_the_parents_tls_session() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The child connected once of its own; the parent still on its first connection.
    assert done.stdout.split() == ["0", "1"]


# ---- secrets ---------------------------------------------------------------------------------


def test_sslkeylogfile_gets_no_key_of_a_core_connection(
    serve, authority, tmp_path, monkeypatch
) -> None:
    """The OpenSSL side of a CoreTlsContext honours SSLKEYLOGFILE (as create_default_context
    does); the core's sessions, which carry the traffic, log nothing there."""
    server = serve(_answer_ok)  # its context made first: it would log the same keys
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    with _sync_client(authority.path) as http:
        assert http.get(server.url).content == b"hello"
    # At most the header OpenSSL writes when the file is opened: no secret of any kind.
    logged = keylog.read_bytes() if keylog.exists() else b""
    assert [line for line in logged.splitlines() if not line.startswith(b"#")] == []
    # The same file does receive keys from an OpenSSL connection: the variable was honoured.
    transport = _DeadlineTransport(ssl.create_default_context(cafile=str(authority.path)), LIMITS)
    with httpx2.Client(transport=transport, timeout=2.0) as http:
        assert http.get(server.url).content == b"hello"
    assert b"CLIENT_TRAFFIC_SECRET" in keylog.read_bytes()
