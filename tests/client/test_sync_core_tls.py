"""The sync driver over the core's TLS (``_sync_core_tls``), against TLS servers on loopback:
the client really runs on it, refusals read as OpenSSL's do, and its waits keep their timeouts,
the attempt's deadline and a close from another thread. (The transport behaviours both TLS
paths share are in ``test_sync_transport`` and ``test_sync_tls_reuse``, run on each.)"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native._core_tls import CoreTlsContext, SessionInfo
from nomyo_native._http_body import LIMITS
from nomyo_native._retry import tls_verification_failure
from nomyo_native._sync_core_tls import _RECEIVE_SIZE, WRITE_SLICE, CoreTlsStream
from nomyo_native._sync_deadline import READ_AHEAD
from nomyo_native._sync_driver import DeadlineExceeded, SyncDriver, _DeadlineTransport

from .tls_certs import Authority, ca_as_its_own_server, server_context

DAY = datetime.timedelta(days=1)
# Far above how long the awaited event takes, far below the timeouts in play: a test waiting
# this long has found a hang.
PATIENCE = 20.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

Handler = Callable[[socket.socket, ssl.SSLContext], None]


@dataclass
class Server:
    """A TLS listener on loopback running ``handler(raw socket, server context)`` per
    connection in a thread."""

    context: ssl.SSLContext
    handler: Handler
    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.listener.getsockname()[1]}"

    def start(self) -> Server:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
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


def read_head(conn: ssl.SSLSocket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(65536)
        if not data:
            break
        head += data
    return head


def answer_ok(raw: socket.socket, context: ssl.SSLContext) -> None:
    """Answers every request on the connection with OK."""
    with context.wrap_socket(raw, server_side=True) as conn:
        while b"\r\n\r\n" in read_head(conn):
            conn.sendall(OK)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "ca")


@pytest.fixture
def serve(tmp_path: Path, authority: Authority) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(
        handler: Handler = answer_ok,
        *,
        maximum: ssl.TLSVersion | None = None,
        alpn: bool = False,
        **issue: Any,
    ) -> Server:
        cert, key = authority.issue(tmp_path / f"leaf{len(servers)}", **issue)
        context = server_context(cert, key, maximum)
        if alpn:
            context.set_alpn_protocols(["http/1.1"])
        server = Server(context, handler).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def core_client(ca: Path, timeout: float | httpx2.Timeout = 10) -> httpx2.Client:
    transport = _DeadlineTransport(CoreTlsContext.from_locations(str(ca), None), LIMITS)
    return httpx2.Client(transport=transport, timeout=timeout)


# ---- it is the core's TLS ------------------------------------------------------------------------


@pytest.fixture
def core_streams(monkeypatch: pytest.MonkeyPatch) -> list[CoreTlsStream]:
    """Every CoreTlsStream connected during the test."""
    streams: list[CoreTlsStream] = []
    connect = CoreTlsStream.connect.__func__  # type: ignore[attr-defined]

    def recording(cls: type[CoreTlsStream], *args: Any) -> CoreTlsStream:
        stream = connect(cls, *args)
        streams.append(stream)
        return stream

    monkeypatch.setattr(CoreTlsStream, "connect", classmethod(recording))
    return streams


def test_the_sync_client_runs_on_the_cores_tls(secure_endpoint, core_streams):
    context = CoreTlsContext.from_locations(str(secure_endpoint.ca_path), None)
    with nomyo.SyncSecureChatCompletion(
        base_url=secure_endpoint.base_url, verify=context, key_size=2048, max_retries=0
    ) as chat:
        for turn in ("one", "two"):
            completion = chat.create(model="m", messages=[{"role": "user", "content": turn}])
            assert turn in completion["choices"][0]["message"]["content"]
    assert len(core_streams) == 1, "the key fetch and both requests went over one connection"
    info = core_streams[0].get_extra_info("ssl_object")
    assert isinstance(info, SessionInfo)
    assert info.version() == "TLSv1.3"
    assert info.server_hostname == "127.0.0.1"


def test_the_session_reads_as_an_ssl_object(serve, authority, core_streams):
    server = serve(alpn=True)
    with core_client(authority.path) as http:
        assert http.get(server.url).content == b"hello"
    info = core_streams[0].get_extra_info("ssl_object")
    assert info.selected_alpn_protocol() == "http/1.1"
    assert info.cipher() == ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)
    assert info.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(_leaf_pem(server))
    assert info.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
    assert info.getpeercert()["subjectAltName"] == (("IP Address", "127.0.0.1"),)


def _leaf_pem(server: Server) -> str:
    with contextlib.closing(socket.create_connection(server.listener.getsockname())) as raw:
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        with unverified.wrap_socket(raw) as conn:
            der = conn.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


def test_a_tls_1_2_only_server_is_served(serve, authority, core_streams):
    server = serve(maximum=ssl.TLSVersion.TLSv1_2)
    with core_client(authority.path) as http:
        assert http.get(server.url).content == b"hello"
    info = core_streams[0].get_extra_info("ssl_object")
    assert info.version() == "TLSv1.2"
    assert info.cipher() == ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2", 256)


# ---- refusals --------------------------------------------------------------------------------


def stranger(tmp_path: Path) -> Path:
    """A CA that issued nothing the servers present (another name: one of the same name is
    taken for the issuer, and its signature fails)."""
    return Authority.create(tmp_path / "stranger", "Stranger CA").path


def in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` among ``exc``'s causes and contexts (httpcore2's pool re-raises a
    connection's error ``from None``: what it wraps is its context)."""
    current: BaseException | None = exc
    while current is not None and not isinstance(current, kind):
        current = current.__cause__ or current.__context__
    return current


def refusal(url: str, context: ssl.SSLContext) -> ssl.SSLCertVerificationError:
    transport = _DeadlineTransport(context, LIMITS)
    with httpx2.Client(transport=transport, timeout=10) as http:
        with pytest.raises(httpx2.ConnectError) as failed:
            http.get(url)
    found = tls_verification_failure(failed.value)
    assert found is not None, repr(failed.value)
    return found


REFUSED = {
    "an unknown issuer": ({}, 20, "unable to get local issuer certificate"),
    "another host": (
        {"hosts": ("other.test",)},
        64,
        "IP address mismatch, certificate is not valid for '127.0.0.1'.",
    ),
    "an expired certificate": (
        {"valid_from": -2 * DAY, "valid_until": -DAY},
        10,
        "certificate has expired",
    ),
    "a certificate not valid yet": (
        {"valid_from": DAY, "valid_until": 2 * DAY},
        9,
        "certificate is not yet valid",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refusal_reads_as_openssls(case, serve, authority, tmp_path):
    issue, code, message = REFUSED[case]
    server = serve(**issue)
    trusted = authority.path if case != "an unknown issuer" else stranger(tmp_path)
    core = refusal(server.url, CoreTlsContext.from_locations(str(trusted), None))
    openssl = refusal(server.url, ssl.create_default_context(cafile=str(trusted)))
    assert (core.verify_code, core.verify_message) == (code, message)
    assert (openssl.verify_code, openssl.verify_message) == (code, message)
    assert str(core).startswith(
        f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} ("
    )


@pytest.mark.parametrize("case", ["CaUsedAsEndEntity", "NotValidForName"])
def test_what_rustls_refuses_and_openssl_accepts_is_named(case, tmp_path):
    """The README's list: a CA certificate as the server's own, a host named only in the
    subject's CN. A caller's own context (OpenSSL) still talks to either."""
    if case == "CaUsedAsEndEntity":
        cert, key = ca_as_its_own_server(tmp_path)
        trusted = cert
    else:
        authority = Authority.create(tmp_path / "ca")
        # A DNS name: OpenSSL checks the CN of names, not of IP addresses.
        cert, key = authority.issue(tmp_path / "leaf", ("localhost",), with_san=False)
        trusted = authority.path
    server = Server(server_context(cert, key), answer_ok).start()
    url = (
        server.url if case == "CaUsedAsEndEntity" else server.url.replace("127.0.0.1", "localhost")
    )
    try:
        core = refusal(url, CoreTlsContext.from_locations(str(trusted), None))
        assert case in str(core)
        own = ssl.create_default_context(cafile=str(trusted))
        with httpx2.Client(transport=_DeadlineTransport(own, LIMITS), timeout=10) as http:
            assert http.get(url).content == b"hello"
    finally:
        server.stop()


def test_a_tls_1_2_server_with_only_cbc_suites_is_refused_as_openssl_words_it(serve, authority):
    """The README's first case: rustls has no CBC suite; OpenSSL (a caller's own context)
    still talks to such a server."""
    server = serve(maximum=ssl.TLSVersion.TLSv1_2)
    server.context.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    with core_client(authority.path) as http, pytest.raises(httpx2.ConnectError) as failed:
        http.get(server.url)
    error = in_chain(failed.value, ssl.SSLError)
    assert error is not None
    assert str(error).startswith("[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake")
    own = ssl.create_default_context(cafile=str(authority.path))
    with httpx2.Client(transport=_DeadlineTransport(own, LIMITS), timeout=10) as http:
        assert http.get(server.url).content == b"hello"


def test_the_client_says_how_to_trust_a_refused_ca_and_does_not_retry(serve, tmp_path):
    server = serve()
    waits: list[float] = []
    with nomyo.SyncSecureChatCompletion(
        base_url=server.url,
        verify=CoreTlsContext.from_locations(str(stranger(tmp_path)), None),
        key_size=2048,
        max_retries=3,
        sleep=waits.append,
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError) as failed:
            chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
    message = str(failed.value)
    assert "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate" in message
    assert "ca_bundle=" in message
    assert waits == [], "a certificate failure is not retried"


def test_a_server_hanging_up_in_the_handshake_is_a_connect_error(serve, authority):
    server = serve(lambda raw, _context: raw.recv(65536))
    with core_client(authority.path) as http, pytest.raises(httpx2.ConnectError) as failed:
        http.get(server.url)
    assert isinstance(in_chain(failed.value, httpcore2.ConnectError), httpcore2.ConnectError)
    assert in_chain(failed.value, ssl.SSLEOFError) is not None


def test_a_plain_http_server_is_a_connect_error_naming_it(serve, authority):
    def plain(raw: socket.socket, _context: ssl.SSLContext) -> None:
        raw.recv(65536)
        raw.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    server = serve(plain)
    with core_client(authority.path) as http, pytest.raises(httpx2.ConnectError) as failed:
        http.get(server.url)
    assert tls_verification_failure(failed.value) is None
    error = in_chain(failed.value, ssl.SSLError)
    assert error is not None
    assert str(error).startswith("[SSL: WRONG_VERSION_NUMBER] wrong version number (")


# ---- waits: timeouts, the attempt's deadline, a close from another thread --------------------


def test_a_stalled_handshake_is_a_connect_timeout(serve, authority):
    stop = threading.Event()
    server = serve(lambda raw, _context: stop.wait(PATIENCE))
    try:
        short_connect = httpx2.Timeout(10, connect=0.3)
        with (
            core_client(authority.path, short_connect) as http,
            pytest.raises(httpx2.ConnectTimeout),
        ):
            http.get(server.url)
    finally:
        stop.set()


def stall_after_request(stop: threading.Event) -> Handler:
    def handler(raw: socket.socket, context: ssl.SSLContext) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            read_head(conn)
            stop.wait(PATIENCE)

    return handler


def test_a_stalled_answer_is_a_read_timeout(serve, authority):
    stop = threading.Event()
    server = serve(stall_after_request(stop))
    try:
        short_read = httpx2.Timeout(10, read=0.3)  # the handshake may take its time on a busy box
        with core_client(authority.path, short_read) as http, pytest.raises(httpx2.ReadTimeout):
            http.get(server.url)
    finally:
        stop.set()


def half_a_record_after_the_head(stop: threading.Event) -> Handler:
    """Answers with a head declaring 64 KiB, then half of the body's first TLS record: the
    client has a record it cannot decrypt yet, and waits for the rest."""

    def handler(raw: socket.socket, context: ssl.SSLContext) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)

        def pump(step: Callable[[], Any]) -> Any:
            while True:
                try:
                    return step()
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    incoming.write(raw.recv(65536))

        pump(tls.do_handshake)
        request = b""
        while b"\r\n\r\n" not in request:
            request += pump(lambda: tls.read(65536))
        tls.write(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n")
        raw.sendall(outgoing.read())
        tls.write(b"x" * 16000)
        record = outgoing.read()
        raw.sendall(record[: len(record) // 2])
        stop.wait(PATIENCE)

    return handler


def test_the_attempt_deadline_ends_a_wait_for_the_rest_of_a_record(serve, authority):
    stop = threading.Event()
    server = serve(half_a_record_after_the_head(stop))
    driver = SyncDriver(
        timeout=60,
        ssl_context=CoreTlsContext.from_locations(str(authority.path), None),
        auth=None,
        transport=None,
        sleep=None,
    )
    try:
        with pytest.raises(DeadlineExceeded):
            driver.send("GET", server.url, {}, None, 1 << 20, deadline=0.5)
    finally:
        stop.set()
        driver.close()


def test_closing_the_client_from_another_thread_wakes_a_blocked_read(serve, authority):
    stop = threading.Event()
    server = serve(stall_after_request(stop))
    http = core_client(authority.path, timeout=300)
    outcome: list[BaseException | None] = []
    reading = threading.Event()

    def request() -> None:
        try:
            http.get(server.url)
            outcome.append(None)
        except BaseException as exc:  # the outcome is what is checked
            outcome.append(exc)

    def blocked_read(stream: CoreTlsStream, *args: Any) -> bytes:
        reading.set()
        return read(stream, *args)

    read = CoreTlsStream.read
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(CoreTlsStream, "read", blocked_read)
            worker = threading.Thread(target=request, daemon=True)
            worker.start()
            assert reading.wait(PATIENCE)
            http.close()
            worker.join(PATIENCE)
        assert not worker.is_alive(), "the read outlived the client's close"
        assert isinstance(outcome[0], httpx2.TransportError), repr(outcome[0])
    finally:
        stop.set()


# ---- writes ----------------------------------------------------------------------------------


def test_a_large_body_is_encrypted_and_sent_slice_by_slice(serve, authority, monkeypatch):
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB
    received: list[bytes] = []

    def take_body(raw: socket.socket, context: ssl.SSLContext) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            data = read_head(conn)
            rest = data.partition(b"\r\n\r\n")[2]
            while len(rest) < len(body):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                rest += chunk
            received.append(rest)
            conn.sendall(OK)

    sent: list[int] = []
    send_waiting = CoreTlsStream._send_waiting

    def measured(stream: CoreTlsStream, *args: Any) -> None:
        sent.append(stream._session.tls_pending)
        send_waiting(stream, *args)

    monkeypatch.setattr(CoreTlsStream, "_send_waiting", measured)
    server = serve(take_body)
    with core_client(authority.path) as http:
        assert http.post(server.url, content=body).content == b"hello"
    assert received == [body]
    assert len(sent) >= len(body) // WRITE_SLICE
    # A slice and its records' framing (22 bytes a 16 KiB record), never the whole body.
    assert max(sent) <= WRITE_SLICE + WRITE_SLICE // 512


def test_a_large_answer_is_decrypted_into_its_buffer_as_the_socket_is_read(
    serve, authority, monkeypatch
):
    """Not staged in the session and moved by a second call: all but what the head's reads
    took is decrypted by ``receive_into`` into the body. Those are the read that brought the
    head and the reads that gather READ_AHEAD of plaintext after it for the HTTP layer, the last
    of which may go a socket read past it: on a loaded machine the body is already there when
    the head is read, and each of those reads takes it."""
    body = bytes(range(251)) * 5600  # 1.4 MB

    def answer_big(raw: socket.socket, context: ssl.SSLContext) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            read_head(conn)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
            # The head first and the body a moment later: how much of a body sent with its head
            # arrives in the head's reads is the scheduler's choice, not the client's.
            conn.sendall(head)
            time.sleep(0.2)
            conn.sendall(body)

    written: list[int] = []
    receive_tls = CoreTlsStream._receive_tls

    def watched(stream: CoreTlsStream, *args: Any) -> bool:
        into = stream._into
        stream._written_into = 0
        try:
            return receive_tls(stream, *args)
        finally:
            if into is not None:
                written.append(stream._written_into)

    monkeypatch.setattr(CoreTlsStream, "_receive_tls", watched)
    server = serve(answer_big)
    with core_client(authority.path) as http:
        assert http.post(server.url, content=b"q").content == body
    assert sum(written) >= len(body) - (_RECEIVE_SIZE + READ_AHEAD + _RECEIVE_SIZE)
