"""The endpoint's listening side: the socket bound before anything else (so a busy port fails
at once), the server TLS context, and uvicorn serving that socket with a TLS handshake
deadline and the guarded HTTP protocol."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from nomyo_native.server.app import create_app
from nomyo_native.server.backends import Backend
from nomyo_native.server.limits import ConnectionLimits
from nomyo_native.server.protocol import guarded_protocol

if TYPE_CHECKING:
    from nomyo_native.server.resources import EndpointResources


class PortUnavailableError(OSError):
    """The endpoint's address cannot be bound (in use, or a privileged port)."""


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP; without it Nagle holds the response body behind the headers for a delayed ACK
    # (~40 ms on every keep-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
        # Windows: SO_REUSEADDR there would let us share a port another server listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # A deep backlog: hundreds of clients may connect at once.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailableError(
                exc.errno,
                f"port {port} on {shown} is already in use (another endpoint?): choose another "
                "with --port, or --port 0 to let the system pick a free one",
            ) from None
        if exc.errno == errno.EACCES:
            raise PortUnavailableError(
                exc.errno,
                f"no permission to bind port {port} on {shown} (ports below 1024 need "
                "privileges): use a port above 1023, or --port 0 for a free one",
            ) from None
        raise
    sock.set_inheritable(True)
    return sock


def load_ssl_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+, no client certificates) for this certificate and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def _server_ssl_context(resources: EndpointResources) -> ssl.SSLContext | None:
    if resources.ssl_context is not None:
        return resources.ssl_context
    if resources.ssl_certfile is None or resources.ssl_keyfile is None:
        return None  # plain HTTP
    return load_ssl_context(resources.ssl_certfile, resources.ssl_keyfile)


class _BoundedServer(uvicorn.Server):
    """uvicorn's server with our TLS context and a TLS handshake deadline (uvicorn leaves
    asyncio's 60 s). Only the path this module uses is replaced: serving sockets we bound.
    """

    def __init__(
        self, config: uvicorn.Config, limits: ConnectionLimits, resources: EndpointResources
    ) -> None:
        super().__init__(config)
        self.limits = limits
        self.resources = resources

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            raise RuntimeError("the endpoint serves sockets it bound itself")
        await self.lifespan.startup()
        config = self.config
        loop = asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        context = _server_ssl_context(self.resources)
        handshake = self.limits.tls_handshake_timeout if context is not None else None
        self.servers = [
            await loop.create_server(
                create_protocol,
                sock=sock,
                ssl=context,
                backlog=config.backlog,
                ssl_handshake_timeout=handshake,
            )
            for sock in sockets
        ]
        self.started = True


def uvicorn_server(resources: EndpointResources) -> uvicorn.Server:
    limits = resources.state.limits
    config = uvicorn.Config(
        create_app(resources.state),
        http=guarded_protocol(limits),
        log_config=None,  # leave the host application's logging alone
        access_log=False,  # our handler logs one line per request, without secrets
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return _BoundedServer(config, limits, resources)


async def serve_socket(server: uvicorn.Server, sock: socket.socket, backend: Backend) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        await backend.aclose()
