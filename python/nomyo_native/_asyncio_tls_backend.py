"""An httpcore2 network backend whose TCP and TLS run in asyncio's own transports, and the
httpx2 transport that pools connections over it (the client's default).

httpx2's default async transport does TLS in anyio's memory-BIO stream: each TLS record (at most
16 KiB) is decrypted by a separate ``SSLObject.read`` and climbs a dozen Python frames (timeout
scope, exception map, h11 event) on its way up. asyncio's SSL protocol drains every record
already received in one loop, decrypting straight into the connection's receive buffer
(``_asyncio_connection``), and a read hands over all of it at once.

A :class:`~nomyo_native._core_tls.CoreTlsContext` puts the TLS in the core instead (rustls,
``_asyncio_core_tls``), behind the same transport interface; any other context keeps asyncio's.

Same pool (httpcore2's), same verification (the caller's ``SSLContext``), same httpx2
exceptions; the pool's HTTP/1.1 connections are ours (``_async_http11``), which receive a
``Content-Length`` body straight into a buffer of its own through :meth:`receive_body`. It needs
``loop.start_tls``, which every Python the package supports (3.11+) has.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar, cast

import httpcore2
import httpx2

from nomyo_native._async_pool import HTTP11ConnectionPool
from nomyo_native._asyncio_connection import BufferedConnection, ReadTimedOut
from nomyo_native._asyncio_core_tls import start_core_tls
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._resolver import numeric_hosts, resolve_async

__all__ = [
    "AsyncioNetworkBackend",
    "AsyncioNetworkStream",
    "AsyncioTLSTransport",
]

T = TypeVar("T")

# A body goes to the TLS transport this much at a time, each slice drained before the next:
# handed over whole, a megabyte envelope is encrypted at once into OpenSSL's outgoing memory BIO
# (grown by realloc, each step copied and wiped), read out as one more bytes copy and, past
# what the socket takes, copied again into the transport's buffer: four copies alive per
# request, about 100 MiB of peak RSS under 25 concurrent requests of up to 4 MB.
_WRITE_SLICE = 256 * 1024
_CLOSE_TIMEOUT = 1.0

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


async def _bounded(
    awaitable: Awaitable[T], timeout: float | None, on_timeout: type[Exception]
) -> T:
    if timeout is None:
        return await awaitable
    try:
        async with asyncio.timeout(timeout):  # type: ignore[attr-defined,unused-ignore]
            return await awaitable
    except TimeoutError:
        raise on_timeout(f"timed out after {timeout} s") from None


async def _open_tcp(
    host: str, port: int, local_addr: tuple[str, int] | None
) -> tuple[asyncio.Transport, BufferedConnection]:
    """``loop.create_connection`` to the first of ``host``'s addresses that takes one, as it
    tries them, with the name looked up by ``_resolver`` (``loop.getaddrinfo`` asks in the
    loop's default executor, where a lookup the deadline cancelled stays stuck, and
    ``asyncio.run`` waits for it at shutdown)."""
    loop = asyncio.get_running_loop()
    first_failure: OSError | None = None
    for address in numeric_hosts(await resolve_async(host, port)):
        try:
            return await loop.create_connection(
                BufferedConnection, address, port, local_addr=local_addr
            )
        except OSError as exc:
            first_failure = first_failure or exc
    assert first_failure is not None  # getaddrinfo answers at least one address or fails
    raise first_failure


class AsyncioNetworkStream(httpcore2.AsyncNetworkStream):
    """One connection: an asyncio transport (TLS after start_tls) and its
    :class:`BufferedConnection` protocol."""

    def __init__(self, transport: asyncio.Transport, connection: BufferedConnection) -> None:
        self._transport = transport
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Everything received so far, up to the connection's receive buffer (256 KiB), even
        past ``max_bytes``: httpcore2 hands each read whole to h11, which takes any size (the
        transport tests pin this against the installed versions). b"" at end of stream."""
        connection = self._connection
        try:
            if not connection.has_data:
                await connection.wait_readable(timeout)
            return connection.take()
        except ReadTimedOut as exc:
            raise httpcore2.ReadTimeout(str(exc)) from None
        except OSError as exc:  # includes ssl.SSLError and ConnectionResetError
            raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc

    # ---- direct access for the HTTP/1.1 layer (nomyo_native._async_http11) ----------------------

    def receiver(self) -> AsyncioNetworkStream | None:
        """This stream, for the HTTP/1.1 layer to parse heads in the receive buffer and receive
        bodies into their own buffers, bypassing :meth:`read`; None for a subclass whose
        ``read`` does something else (a wrapper or an observer expects to see every byte)."""
        return self if type(self).read is AsyncioNetworkStream.read else None

    def pending(self) -> memoryview:
        """What has arrived and not been consumed (valid until the next wait)."""
        return self._connection.pending()

    def consume(self, nbytes: int) -> None:
        self._connection.consume(nbytes)

    @property
    def clean(self) -> bool:
        """Nothing unread, no end of stream, no failure: fit for another request."""
        connection = self._connection
        return not (connection.has_data or connection.eof or connection.error is not None)

    async def fill(self, timeout: float | None) -> bool:
        """Waits until more than what is pending has arrived (True) or the stream ends
        (False): a ReadError if it failed, a ReadTimeout after ``timeout``."""
        connection = self._connection
        before = connection.pending().nbytes
        while connection.pending().nbytes == before:
            if connection.error is not None:
                raise _read_error(connection.error)
            if connection.eof:
                return False
            await self._wait(timeout, before)
        return True

    async def receive_body(self, length: int, timeout: float | None) -> bytearray | memoryview:
        """The next ``length`` bytes of the stream in one buffer of their own, received into
        directly (a large body: a view of a buffer the library keeps, see ``_body_buffers``): a
        RemoteProtocolError if the stream ends before, a ReadError if it fails, a ReadTimeout
        after ``timeout`` with nothing new."""
        connection = self._connection
        connection.begin_body(length)
        try:
            while connection.body_received < length:
                if connection.error is not None:
                    raise _read_error(connection.error)
                if connection.eof:
                    raise httpcore2.RemoteProtocolError(
                        "peer closed connection without sending complete message body: "
                        f"received {connection.body_received} bytes, expected {length}"
                    )
                try:
                    await connection.wait_body(timeout)
                except ReadTimedOut as exc:
                    raise httpcore2.ReadTimeout(str(exc)) from None
        finally:
            body = connection.end_body()
        return body

    async def _wait(self, timeout: float | None, beyond: int = 0) -> None:
        try:
            await self._connection.wait_readable(timeout, beyond)
        except ReadTimedOut as exc:
            raise httpcore2.ReadTimeout(str(exc)) from None

    # ---- httpcore2.AsyncNetworkStream ----------------------------------------------------------

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        ends = None if timeout is None else asyncio.get_running_loop().time() + timeout
        connection = self._connection
        view = memoryview(buffer)
        try:
            for start in range(0, len(view), _WRITE_SLICE):
                self._transport.write(view[start : start + _WRITE_SLICE])
                if connection.must_wait_to_write:
                    await connection.wait_writable(ends)
        except TimeoutError:
            raise httpcore2.WriteTimeout(f"timed out after {timeout} s") from None
        except OSError as exc:
            raise httpcore2.WriteError(str(exc) or type(exc).__name__) from exc

    def abort(self) -> None:
        """Drops the connection at once, for an exchange that failed, was cancelled or was left
        unread: there is nothing to close gracefully, and a peer that stopped answering never
        answers close_notify (:meth:`aclose` would wait its whole bound for it)."""
        self._transport.abort()

    async def aclose(self) -> None:
        self._transport.close()
        try:
            # Bounded: a peer that never answers close_notify must not stall client.close().
            await asyncio.wait_for(self._connection.wait_closed(), _CLOSE_TIMEOUT)
        except (OSError, TimeoutError):
            # Closing is best effort: the peer may be gone or never answer close_notify.
            self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncioNetworkStream:
        loop = asyncio.get_running_loop()
        if self._connection.has_data:
            # Sent in the clear (by anyone on the path): it would otherwise be read first, as
            # if it had come over TLS. From here on what arrives goes to TLS.
            self._transport.abort()
            raise httpcore2.ConnectError("the server sent data before the TLS handshake")
        self._connection.begin_tls()
        handshake: Awaitable[asyncio.Transport | None]
        if isinstance(ssl_context, CoreTlsContext):
            handshake = start_core_tls(
                self._transport, self._connection, ssl_context, server_hostname
            )
        else:
            handshake = loop.start_tls(
                self._transport, self._connection, ssl_context, server_hostname=server_hostname
            )
        try:
            tls = await _bounded(handshake, timeout, httpcore2.ConnectTimeout)
        except OSError as exc:  # certificate verification failures are ssl.SSLError
            self._transport.abort()
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:  # timeout or cancellation: never leave the socket behind
            self._transport.abort()
            raise
        if tls is None:  # only for a transport already closing
            self._transport.abort()
            raise httpcore2.ConnectError("the connection closed during the TLS handshake")
        self._connection.use_tls(tls)
        self._transport = tls
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            return self._is_readable()
        return None

    def _is_readable(self) -> bool:
        """For an idle keep-alive connection: has the server closed it or sent anything?"""
        connection = self._connection
        if connection.eof or connection.error is not None or connection.has_data:
            return True
        if self._transport.is_closing():
            return True
        sock = self._transport.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return True
        return _socket_readable(sock.fileno())


def _socket_readable(fd: int) -> bool:
    """Whether ``fd`` has something to read, without reading. poll() where there is one:
    select() refuses a descriptor numbered past FD_SETSIZE (1024), which a process holding
    many files or sockets hands out."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll(), no such limit
    return bool(readable)


def _read_error(exc: BaseException) -> httpcore2.ReadError:
    error = httpcore2.ReadError(str(exc) or type(exc).__name__)
    # Both: httpcore2's pool re-raises a connection's error "from None", which keeps only the
    # context (the ssl error behind a TLS failure stays on the chain the client inspects).
    error.__cause__ = error.__context__ = exc
    return error


class AsyncioNetworkBackend(httpcore2.AsyncNetworkBackend):
    """Opens :class:`AsyncioNetworkStream` connections (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncioNetworkStream:
        local_addr = (local_address, 0) if local_address else None
        try:
            transport, connection = await _bounded(
                _open_tcp(host, port, local_addr), timeout, httpcore2.ConnectTimeout
            )
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioNetworkStream(transport, connection)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncioNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await _bounded(
                loop.create_unix_connection(BufferedConnection, path),
                timeout,
                httpcore2.ConnectTimeout,
            )
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioNetworkStream(transport, connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTLSTransport(httpx2.AsyncHTTPTransport):
    """httpx2's HTTP transport with its connection pool on :class:`AsyncioNetworkBackend`.

    ``AsyncHTTPTransport`` keeps all its state in ``_pool`` (request and response mapping,
    exception mapping and closing all go through it), so this builds the same pool as
    ``AsyncHTTPTransport(verify=ssl_context, limits=limits)`` would, with another backend and
    our HTTP/1.1 connections (``_async_pool.HTTP11ConnectionPool``).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None, limits: httpx2.Limits) -> None:
        # super().__init__ is not called on purpose: it would build a pool only to drop it.
        self._pool = HTTP11ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=AsyncioNetworkBackend(),
        )

    @property
    def pool(self) -> HTTP11ConnectionPool:
        """The connection pool every request of this transport goes to."""
        return cast(HTTP11ConnectionPool, self._pool)
