"""The sync driver's kept-alive TLS connection and what follows an answer in its last record.

A ``Content-Length`` body is received with ``recv_into`` into a buffer that ends where the body
does; a TLS record carrying the body's last bytes and more leaves that more decrypted inside
OpenSSL, where neither the connection's buffer nor the kernel's socket shows it. Checked against
a real TLS listener on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from nomyo_native import _sync_driver
from nomyo_native._http_body import LIMITS
from nomyo_native._sync_driver import READ_AHEAD

from .test_sync_transport import _certificate, tls, trusting

__all__ = ["tls"]  # the fixture: every test here runs on both TLS paths

# Larger than a read gathers with the head: its end comes through recv_into.
BODY = bytes(range(256)) * (3 * READ_AHEAD // 256)
FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"


def _serve(listener: socket.socket, context: ssl.SSLContext, accepted: list[int]) -> None:
    """Answers every request on every connection: the first with BODY, its last ten bytes
    sent in one TLS record together with FORGED (a second answer nobody asked for); any later
    request with b"fresh"."""
    answered = 0
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        accepted.append(1)
        with context.wrap_socket(raw, server_side=True) as conn:
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                if b"\r\n\r\n" not in head:
                    break
                if answered == 0:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
                    conn.sendall(BODY[:-10])
                    conn.sendall(BODY[-10:] + FORGED)  # one record
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
                answered += 1


@pytest.fixture
def server(tmp_path: Path, tls: str) -> Iterator[tuple[str, ssl.SSLContext, list[int]]]:
    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    thread = threading.Thread(target=_serve, args=(listener, server_context, accepted), daemon=True)
    thread.start()
    try:
        yield (
            f"https://127.0.0.1:{listener.getsockname()[1]}",
            trusting(cert_path, tls),
            accepted,
        )
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
        listener.close()
        thread.join(timeout=10)


def test_bytes_decrypted_past_a_body_keep_the_connection_from_being_reused(
    server: tuple[str, ssl.SSLContext, list[int]],
) -> None:
    url, client_context, accepted = server
    transport = _sync_driver._DeadlineTransport(client_context, LIMITS)
    with httpx2.Client(transport=transport, timeout=10) as http:
        assert http.get(url).content == BODY
        # Not the forged answer left in the first connection: a fresh connection's answer.
        assert http.get(url).content == b"fresh"
    assert len(accepted) == 2
