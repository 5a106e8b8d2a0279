"""Review: a host name the core's TLS cannot verify a certificate against (``127.1``, which
getaddrinfo resolves; a scoped IPv6 address) fails as OpenSSL fails it, a refused certificate
(httpx2.ConnectError caused by ssl.SSLCertVerificationError), on both drivers, not with a bare
ValueError from the session."""

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

from client.tls_certs import Authority, server_context
from nomyo_native import _core
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._core_tls import CoreTlsContext, start_session
from nomyo_native._http_body import LIMITS
from nomyo_native._retry import tls_verification_failure
from nomyo_native._sync_driver import _DeadlineTransport

# Names rustls takes for neither a DNS name nor an IP address, which OpenSSL checks as DNS names.
UNVERIFIABLE = ["127.1", "2130706433", "fe80::1%lo", "a-.example"]


@pytest.fixture(scope="module")
def ca_and_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    directory = tmp_path_factory.mktemp("review8-names")
    authority = Authority.create(directory / "ca")
    context = server_context(*authority.issue(directory / "leaf"))
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(raw: socket.socket) -> None:
        with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as conn:
            conn.recv(100)

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield authority.path, listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("name", UNVERIFIABLE)
def test_start_session_refuses_the_name_as_a_certificate_mismatch(
    ca_and_port: tuple[Path, int], name: str
) -> None:
    context = CoreTlsContext.from_locations(str(ca_and_port[0]), None)
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        start_session(context, name)
    assert caught.value.verify_code == 62
    assert (
        caught.value.verify_message == f"Hostname mismatch, certificate is not valid for '{name}'."
    )
    assert isinstance(caught.value.__cause__, ValueError)


def test_the_core_still_takes_what_it_can_verify(ca_and_port: tuple[Path, int]) -> None:
    context = CoreTlsContext.from_locations(str(ca_and_port[0]), None)
    for name in ("localhost", "127.0.0.1", "::1", "_srv.example"):
        assert isinstance(start_session(context, name), _core.TlsSession)


def _contexts(ca: Path) -> dict[str, ssl.SSLContext]:
    return {
        "core": CoreTlsContext.from_locations(str(ca), None),
        "openssl": ssl.create_default_context(cafile=str(ca)),
    }


@pytest.mark.parametrize("tls", ["core", "openssl"])
def test_the_sync_client_refuses_127_1_as_openssl_does(
    ca_and_port: tuple[Path, int], tls: str
) -> None:
    ca, port = ca_and_port
    transport = _DeadlineTransport(_contexts(ca)[tls], LIMITS)
    with httpx2.Client(transport=transport, timeout=5) as http:
        with pytest.raises(httpx2.ConnectError) as caught:
            http.get(f"https://127.1:{port}/")
    refusal = tls_verification_failure(caught.value)
    assert refusal is not None, repr(caught.value)
    assert refusal.verify_code == 62


@pytest.mark.parametrize("tls", ["core", "openssl"])
async def test_the_async_client_refuses_127_1_as_openssl_does(
    ca_and_port: tuple[Path, int], tls: str
) -> None:
    ca, port = ca_and_port
    transport = AsyncioTLSTransport(_contexts(ca)[tls], LIMITS)
    async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
        with pytest.raises(httpx2.ConnectError) as caught:
            async with asyncio.timeout(20):
                await http.get(f"https://127.1:{port}/")
    refusal = tls_verification_failure(caught.value)
    assert refusal is not None, repr(caught.value)
    assert refusal.verify_code == 62
