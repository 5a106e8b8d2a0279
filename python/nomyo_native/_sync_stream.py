"""The sync driver's network streams: httpcore2's sync backend with every name lookup
(``_resolver``), connect, TLS handshake, write and read bound by the attempt's deadline
(``_sync_deadline``), reads that gather what a TLS socket has already received, and a TLS
upgrade that runs the core's TLS (``_sync_core_tls``) when the client's context is a
``CoreTlsContext``, OpenSSL's otherwise.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore2

from nomyo_native._core_tls import CoreTlsContext
from nomyo_native._resolver import numeric_hosts, resolve
from nomyo_native._sync_core_tls import CoreTlsStream
from nomyo_native._sync_deadline import READ_AHEAD
from nomyo_native._sync_deadline import bounded as _bounded

__all__ = ["DeadlineBackend", "DeadlineStream"]

# What a non-blocking read of a TLS socket raises (httpcore2 maps it to ReadError) when no
# whole record has arrived: not a failure of the connection.
_NOTHING_WHOLE_YET = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


class DeadlineStream(httpcore2.NetworkStream):
    """A sync network stream whose every operation ends by the attempt's deadline."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner
        # A failure met while gathering, after data that is handed over first: the next read
        # raises it (and the pool, asking is_readable, sees the connection as unusable).
        self._failure: httpcore2.ReadError | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """What has arrived, up to :data:`READ_AHEAD` bytes even past ``max_bytes`` (httpcore2
        hands each read whole to h11, which takes any size): one blocking read, then on a TLS
        socket the records already received, without waiting. A TLS socket returns at most one
        16 KiB record per read, and each read climbs h11, httpcore2 and httpx2 on its own: a
        1.4 MB envelope took ~90 such trips."""
        if self._failure is not None:
            raise self._failure
        first = self._inner.read(READ_AHEAD, _bounded(timeout, httpcore2.ReadTimeout))
        sock = self._inner.get_extra_info("socket")
        if not first or len(first) >= READ_AHEAD or not isinstance(sock, ssl.SSLSocket):
            return first  # a plain socket's read already returns all that has arrived
        return self._gather(first)

    def _gather(self, first: bytes) -> bytes:
        """``first`` and the records already received. Never waits (each further read has a
        timeout of 0: the socket does not block): a record still on its way may belong to
        nothing h11 needs (the answer can be complete), so it is left for a next read, which
        then waits with its timeout and the attempt's deadline."""
        pieces = [first]
        size = len(first)
        while size < READ_AHEAD:
            try:
                piece = self._inner.read(READ_AHEAD - size, 0.0)
            except httpcore2.ReadError as exc:
                if not isinstance(exc.__cause__, _NOTHING_WHOLE_YET):
                    self._failure = exc
                break
            if not piece:
                break  # the end of the stream: the next read returns b"" again
            pieces.append(piece)
            size += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def receiver(self) -> Callable[[memoryview, float | None], int] | None:
        """For the HTTP/1.1 layer (``_sync_http11``): a receive straight into a body's buffer,
        bypassing :meth:`read`; None for a subclass whose ``read`` does something else."""
        if type(self).read is not DeadlineStream.read:
            return None
        return self._receive_into

    def _receive_into(self, view: memoryview, timeout: float | None) -> int:
        """Receives into ``view`` until it is full or the stream ends: the bytes received, 0 at
        the end of stream. On a TLS socket OpenSSL decrypts into it one record (16 KiB) per
        call, and a megabyte body took ~90 trips through the HTTP layer, one per record. Each
        wait is bound by ``timeout`` and what the attempt has left of its deadline."""
        if self._failure is not None:
            raise self._failure
        sock = self._inner.get_extra_info("socket")
        received, size = 0, len(view)
        try:
            while received < size:
                sock.settimeout(_bounded(timeout, httpcore2.ReadTimeout))
                got = sock.recv_into(view[received:] if received else view)
                if not got:
                    break
                received += got
            return received
        except TimeoutError as exc:  # socket.timeout
            raise httpcore2.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        # Shut the socket down before closing it: a thread blocked reading it (its request in
        # flight while another thread closes the client) wakes now with a closed connection,
        # as on the async driver, instead of at its timeout with a descriptor gone under it.
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        if isinstance(ssl_context, CoreTlsContext):
            # The core's stream keeps the deadline on each of its own waits.
            sock = self._inner.get_extra_info("socket")
            return CoreTlsStream.connect(sock, ssl_context, server_hostname, timeout)
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._failure is not None:
                return True
            # Bytes past an answer that came in its last TLS record (a body received with
            # recv_into takes only up to its end) wait decrypted in OpenSSL, unseen by the
            # kernel's socket: read as the next request's answer if the connection were reused.
            sock = self._inner.get_extra_info("socket")
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return True
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore2.NetworkBackend):
    """httpcore2's sync backend, with connects and streams bound by the attempt's deadline."""

    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        """A connection to the first of ``host``'s addresses that takes one (as
        ``socket.create_connection`` tries them), its name looked up by ``_resolver``: the
        lookup and each connect within ``timeout`` and what the attempt has left."""
        try:
            infos = resolve(host, port, _bounded(timeout, httpcore2.ConnectTimeout))
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(str(exc)) from exc
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        first_failure: httpcore2.ConnectError | httpcore2.ConnectTimeout | None = None
        for address in numeric_hosts(infos):
            bounded = _bounded(timeout, httpcore2.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(
                    address, port, bounded, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                first_failure = first_failure or exc
                continue
            return DeadlineStream(stream)
        assert first_failure is not None  # getaddrinfo answers at least one address or fails
        raise first_failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
