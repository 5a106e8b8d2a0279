"""The sync driver's transport over TLS: reads gather what has already arrived.

A TLS socket returns at most one 16 KiB record per read; the driver's stream gathers the
records already received (up to ``READ_AHEAD``) into one read, past the 64 KiB httpcore2 asks
for, and h11 takes it whole. Checked against a real TLS listener on loopback, over one
kept-alive connection, with the installed httpcore2 and h11, on both TLS paths: OpenSSL's
``SSLSocket`` (a plain ``SSLContext``) and the core's (a ``CoreTlsContext``).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpcore2
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nomyo_native import _sync_driver
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._http_body import LIMITS
from nomyo_native._sync_core_tls import CoreTlsStream
from nomyo_native._sync_driver import READ_AHEAD
from nomyo_native._sync_stream import DeadlineStream

BODY = bytes(range(256)) * 4096 * 4  # 4 MiB


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        # An end-entity certificate trusted as itself: rustls (the core's TLS) refuses a CA
        # certificate as a server's own, which OpenSSL accepts.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# Each test runs on both TLS paths of the sync driver.
TLS_PATHS = ["openssl", "core"]


def trusting(cert_path: Path, tls: str) -> ssl.SSLContext:
    """A client context trusting ``cert_path``: OpenSSL's, or the one selecting the core's."""
    if tls == "core":
        return CoreTlsContext.from_locations(str(cert_path), None)
    return ssl.create_default_context(cafile=str(cert_path))


@pytest.fixture(params=TLS_PATHS)
def tls(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Of each answer's body, what the server has handed to the kernel before it says so (``piled``):
# more than the 64 KiB httpcore2 asks for in a read, and within loopback's socket buffers.
PILED = 96 * 1024


def _serve(
    listener: socket.socket, context: ssl.SSLContext, requests: int, piled: threading.Semaphore
) -> None:
    """Accepts one connection only; answers ``requests`` GETs on it with BODY each, releasing
    ``piled`` once the head and the first :data:`PILED` bytes of the body are sent."""
    raw, _ = listener.accept()
    with context.wrap_socket(raw, server_side=True) as conn:
        for _ in range(requests):
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY[:PILED]
            )
            piled.release()
            conn.sendall(BODY[PILED:])


@pytest.fixture
def tls_listener(
    tmp_path: Path, tls: str
) -> Iterator[tuple[str, ssl.SSLContext, threading.Semaphore]]:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    piled = threading.Semaphore(0)
    thread = threading.Thread(target=_serve, args=(listener, server_context, 2, piled), daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        yield (url, trusting(cert_path, tls), piled)
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_read_gathers_records_past_what_httpcore2_asks_and_the_body_arrives_intact(
    tls_listener: tuple[str, ssl.SSLContext, threading.Semaphore],
    tls: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, client_context, piled = tls_listener
    sizes: list[tuple[int, int]] = []
    stream_class = CoreTlsStream if tls == "core" else DeadlineStream
    read = stream_class.read

    def measured(
        self: httpcore2.NetworkStream, max_bytes: int, timeout: float | None = None
    ) -> bytes:
        data = read(self, max_bytes, timeout)  # type: ignore[arg-type]
        sizes.append((max_bytes, len(data)))
        return data

    monkeypatch.setattr(stream_class, "read", measured)
    transport = _sync_driver._DeadlineTransport(client_context, LIMITS)
    with httpx2.Client(transport=transport, timeout=30) as http:
        # Twice over the one connection the listener accepts: the first read-ahead left the
        # connection at the end of its answer, reusable.
        for _ in range(2):
            with http.stream("GET", url) as response:
                # Let the body pile up in the socket: more than one read asks for is sent
                # (not a fixed sleep: a loaded machine may not have run the server by then).
                assert piled.acquire(timeout=30)
                time.sleep(0.05)
                received = b"".join(response.iter_raw())
            assert received == BODY
    asked = max(max_bytes for max_bytes, _ in sizes)
    largest = max(size for _, size in sizes)
    # httpcore2 asks for less than a read hands over, and h11 took it.
    assert asked < largest <= READ_AHEAD


# ---- what follows a complete answer on the connection ---------------------------------------

# A TLS application-data record header announcing 16 KiB, then three bytes of it: a record
# that never completes.
UNFINISHED_RECORD = b"\x17\x03\x03\x40\x00abc"
# A complete record of 32 bytes that no key produced: decrypting it fails.
FORGED_RECORD = b"\x17\x03\x03\x00\x20" + b"j" * 32


def _answer_then(listener: socket.socket, context: ssl.SSLContext, raw: bytes) -> None:
    """Answers one GET with b"hello", writes ``raw`` past TLS, and holds the connection open
    until the client closes it."""
    accepted, _ = listener.accept()
    with context.wrap_socket(accepted, server_side=True) as conn:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        os.write(conn.fileno(), raw)
        conn.settimeout(30)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass


@pytest.fixture
def answering_then(
    tmp_path: Path, tls: str
) -> Iterator[Callable[[bytes], tuple[str, ssl.SSLContext]]]:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def start(raw: bytes) -> tuple[str, ssl.SSLContext]:
        thread = threading.Thread(
            target=_answer_then, args=(listener, server_context, raw), daemon=True
        )
        thread.start()
        threads.append(thread)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        return url, trusting(cert_path, tls)

    try:
        yield start
    finally:
        listener.close()
        for thread in threads:
            thread.join(timeout=10)


def test_an_answer_followed_by_an_unfinished_record_is_returned_not_timed_out(
    answering_then: Callable[[bytes], tuple[str, ssl.SSLContext]],
) -> None:
    """Gathering takes only what has arrived: a record still on its way (here one that never
    completes) is left for a next read, which a complete answer never makes."""
    url, client_context = answering_then(UNFINISHED_RECORD)
    transport = _sync_driver._DeadlineTransport(client_context, LIMITS)
    with httpx2.Client(transport=transport, timeout=3) as http:
        response = http.get(url)
        assert response.content == b"hello"


def test_an_answer_followed_by_a_forged_record_is_returned_and_the_failure_kept_for_later(
    answering_then: Callable[[bytes], tuple[str, ssl.SSLContext]],
) -> None:
    """The answer's records were authentic: what breaks after them fails the next read of the
    connection, and the pool sees the connection as unusable, instead of losing the answer."""
    url, client_context = answering_then(FORGED_RECORD)
    transport = _sync_driver._DeadlineTransport(client_context, LIMITS)
    with httpx2.Client(transport=transport, timeout=3) as http:
        with http.stream("GET", url) as response:
            assert response.read() == b"hello"
            stream = response.extensions["network_stream"]
            assert stream.get_extra_info("is_readable") is True
            with pytest.raises(httpcore2.ReadError, match="BAD_RECORD_MAC"):
                stream.read(65536)


def _answer_half_and_close(listener: socket.socket, context: ssl.SSLContext, notify: bool) -> None:
    """Declares 1 MiB, sends half, closes: with close_notify, or a bare FIN."""
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
def test_a_tls_body_cut_short_is_a_protocol_error_however_the_gather_meets_the_end(
    tmp_path: Path, notify: bool, tls: str
) -> None:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(
        target=_answer_half_and_close, args=(listener, server_context, notify), daemon=True
    )
    server.start()
    transport = _sync_driver._DeadlineTransport(trusting(cert_path, tls), LIMITS)
    try:
        with httpx2.Client(transport=transport, timeout=30) as http:
            with pytest.raises(httpx2.RemoteProtocolError, match="received 524288 bytes"):
                http.get(f"https://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        listener.close()
        server.join(timeout=10)


def _body_then_forged_record(listener: socket.socket, context: ssl.SSLContext) -> None:
    """Answers one GET with a body larger than a read gathers, its last record and a forged
    one in one send (memory BIOs: the test decides which TLS bytes go out together); holds the
    connection open until the client closes it."""
    raw, _ = listener.accept()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)

    def pump(step: Callable[[], object]) -> object:
        while True:
            try:
                return step()
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))

    with raw:
        pump(tls.do_handshake)
        request = b""
        while b"\r\n\r\n" not in request:
            request += pump(lambda: tls.read(65536))  # type: ignore[operator]
        tls.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY_PAST_GATHER))
        tls.write(BODY_PAST_GATHER[:-10])
        raw.sendall(outgoing.read())
        tls.write(BODY_PAST_GATHER[-10:])
        raw.sendall(outgoing.read() + FORGED_RECORD)
        raw.settimeout(30)
        with contextlib.suppress(OSError):
            while raw.recv(65536):
                pass


# Larger than a read gathers with the head: its end is received straight into its buffer.
BODY_PAST_GATHER = bytes(range(256)) * (3 * READ_AHEAD // 256)


def test_a_body_ending_just_before_a_forged_record_is_whole_and_the_failure_kept(
    tmp_path: Path, tls: str
) -> None:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(
        target=_body_then_forged_record, args=(listener, server_context), daemon=True
    )
    server.start()
    transport = _sync_driver._DeadlineTransport(trusting(cert_path, tls), LIMITS)
    try:
        with httpx2.Client(transport=transport, timeout=10) as http:
            url = f"https://127.0.0.1:{listener.getsockname()[1]}"
            with http.stream("GET", url) as response:
                assert response.read() == BODY_PAST_GATHER
                stream = response.extensions["network_stream"]
            assert transport.pool.connections == [], "a connection with bytes past its answer"
            if tls == "core":  # the failure met past the body is kept, not lost
                with pytest.raises(httpcore2.ReadError, match="BAD_RECORD_MAC"):
                    stream.read(65536)
    finally:
        listener.close()
        server.join(timeout=10)
