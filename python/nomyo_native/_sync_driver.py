"""The sync driver: send one attempt, read its body raw and capped within a deadline, sleep.

Like the async driver it decides nothing. It runs on an ``httpx2.Client``'s pool over httpcore2's
own sync network backend with the client's ``SSLContext`` (``_asyncio_tls_backend`` is asyncio-only;
blocking sockets with the same verification are what a script wants), with HTTP/1.1 connections
of our own (``_sync_http11``: a ``Content-Length`` body is received straight into its own
buffer). The whole-attempt
deadline is kept by :class:`DeadlineBackend`: every connect, TLS handshake, write and read of
an attempt gets at most the time the attempt has left, so a peer trickling a byte at a time
cannot hold a request past its deadline (asyncio's ``wait_for`` plays this part in the async
driver).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpcore2
import httpx2

from nomyo_native import _sync_direct
from nomyo_native._http_body import LIMITS, Answer, answer_head, iter_raw_capped
from nomyo_native._http_request import RequestBuilder
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES
from nomyo_native._sync_direct import SyncDirectExchange
from nomyo_native._sync_http11 import HTTP11ConnectionPool
from nomyo_native.errors import ClientClosedError, ResponseFormatError

__all__ = ["READ_AHEAD", "DeadlineBackend", "DeadlineExceeded", "SyncDriver"]

# The most one read of a connection returns: what a TLS socket has already received is
# gathered up to this much per trip through the HTTP layers.
READ_AHEAD = 128 * 1024

# What a non-blocking read of a TLS socket raises (httpcore2 maps it to ReadError) when no
# whole record has arrived: not a failure of the connection.
_NOTHING_WHOLE_YET = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)

# When the running attempt must end (time.monotonic()), or None: no deadline.
_ATTEMPT_ENDS: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "nomyo_native_attempt_ends", default=None
)


class DeadlineExceeded(TimeoutError):
    """The attempt used up its deadline (the builtin TimeoutError, as in the async driver)."""


def _bounded(timeout: float | None, on_timeout: type[Exception]) -> float | None:
    """``timeout`` cut to what the running attempt has left; raises ``on_timeout`` if none."""
    ends = _ATTEMPT_ENDS.get()
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise on_timeout("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


def _check_deadline() -> None:
    """Between two chunks of a body: a caller's transport has no socket for the deadline to
    bound (``httpx2.MockTransport``, a test double streaming from a generator), so a body
    trickling through it is cut here, as ``wait_for`` cuts it on the async driver."""
    _bounded(None, DeadlineExceeded)


class _DeadlineStream(httpcore2.NetworkStream):
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
        if type(self).read is not _DeadlineStream.read:
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
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

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
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx2.HTTPTransport):
    """httpx2's sync HTTP transport with its pool on :class:`DeadlineBackend`.

    ``HTTPTransport`` keeps all its state in its pool, so this builds the pool
    ``HTTPTransport(verify=ssl_context, limits=limits)`` would, with another backend and our
    HTTP/1.1 connections (as ``_asyncio_tls_backend.AsyncioTLSTransport`` does for the async
    one).
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
            network_backend=DeadlineBackend(),
        )

    @property
    def pool(self) -> httpcore2.ConnectionPool:
        """The pool of our own connections (for ``_sync_direct``)."""
        return self._pool


class _Sender:
    """Sends requests as ``http`` would, straight to ``transport`` (the async driver's
    ``_Sender``, blocking); to the pool of our own transport without httpx2's models when the
    request's head is built here (``_sync_direct``)."""

    def __init__(
        self,
        http: httpx2.Client,
        transport: httpx2.BaseTransport,
        auth: httpx2.BasicAuth | None,
    ) -> None:
        self._http = http
        self._transport = transport
        self._requests = RequestBuilder(http, auth)
        # Exactly ours: a subclass (or a caller's transport) may change what a request does.
        self._direct = (
            SyncDirectExchange(transport.pool, self._requests, _check_deadline)
            if type(transport) is _DeadlineTransport and _sync_direct.AVAILABLE
            else None
        )

    def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None, ok_cap: int
    ) -> Answer | httpx2.Response:
        """The answer, read within ``ok_cap`` (a 200's) or the error bodies' cap; or the
        response with its head read, for the caller to read and close."""
        if self._direct is not None:
            if self._http.is_closed:
                raise ClientClosedError("the client is closed")
            parsed = self._requests.url(url)
            head = self._requests.plain_head(parsed, headers, content)
            if head is not None:
                assert content is not None
                return self._direct.send(method, parsed, head, content, ok_cap)
        return self.open(method, url, headers, content)

    def open(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> httpx2.Response:
        """The response with its head read; the caller closes it."""
        if self._http.is_closed:
            raise ClientClosedError("the client is closed")
        request = self._requests.build(method, url, headers, content)
        if not isinstance(request.stream, httpx2.SyncByteStream):
            # As httpx2's client refuses it (a body that only an async client can send).
            raise RuntimeError("Attempted to send an async request with a sync Client instance.")
        try:
            response = self._transport.handle_request(request)
        except httpx2.RequestError as exc:
            exc.request = request  # as httpx2's client attaches it
            raise
        self._requests.received(request, response)
        return response


class SyncDriver:
    """One ``httpx2.Client`` (thread-safe pool) over :class:`DeadlineBackend`, or over the
    caller's ``transport`` (a sync httpx2 transport).

    A process forked after the client was used gets a pool of its own on first use: the
    inherited one holds the parent's sockets (and TLS sessions), on which two processes would
    interleave requests and read each other's answers.
    """

    def __init__(
        self,
        *,
        timeout: float | httpx2.Timeout | None,
        ssl_context: ssl.SSLContext | None,
        auth: httpx2.BasicAuth | None,
        transport: httpx2.BaseTransport | None,
        sleep: Callable[[float], Any] | None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx2.BaseTransport):
            raise TypeError(
                "the synchronous client needs a synchronous httpx2 transport "
                "(an httpx2.BaseTransport, e.g. httpx2.MockTransport)"
            )
        self.sleep: Callable[[float], Any] = sleep if sleep is not None else time.sleep
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._auth = auth
        self._transport = transport
        self.closed = False
        self._start_in_this_process()

    def _start_in_this_process(self) -> None:
        """A new pool and lock for this process (nothing inherited is closed: the sockets are
        the parent's too, and a lock may have been held by a thread the child does not have)."""
        self._pid = os.getpid()
        transport = self._transport or _DeadlineTransport(self._ssl_context, LIMITS)
        self._http = httpx2.Client(
            timeout=self._timeout,
            verify=self._ssl_context if self._ssl_context is not None else True,
            auth=self._auth,
            follow_redirects=False,
            transport=transport,
            limits=LIMITS,
        )
        # Each attempt goes straight to the transport, with the request the client would
        # build (``_http_request``): its send() layers cost about 40 us a request.
        self._sender = _Sender(self._http, transport, self._auth)
        self._server_key_lock = threading.Lock()

    def _check_process(self) -> None:
        if self._pid != os.getpid() and not self.closed:
            self._start_in_this_process()

    @property
    def server_key_lock(self) -> threading.Lock:
        """Serialises fetching the server key (one fetch however many threads ask)."""
        self._check_process()
        return self._server_key_lock

    def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        ok_cap: int,
        deadline: float | None,
    ) -> Answer:
        """One attempt within ``deadline`` seconds (:class:`DeadlineExceeded` past it)."""
        if self.closed:
            raise ClientClosedError("the client is closed")
        self._check_process()
        ends = time.monotonic() + deadline if deadline is not None else None
        token = _ATTEMPT_ENDS.set(ends)
        try:
            return self._attempt(method, url, headers, content, ok_cap)
        except httpx2.TimeoutException as exc:
            if ends is not None and time.monotonic() >= ends:
                raise DeadlineExceeded(f"the attempt exceeded its {deadline:g} s deadline") from exc
            raise
        finally:
            _ATTEMPT_ENDS.reset(token)

    def _attempt(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None, ok_cap: int
    ) -> Answer:
        response = self._sender.send(method, url, headers, content, ok_cap)
        if isinstance(response, Answer):
            return response
        with contextlib.closing(response):
            status = response.status_code
            retry_after, readable = answer_head(response)
            if not readable:
                return Answer(status, b"", retry_after)
            try:
                cap = ok_cap if status == 200 else MAX_ERROR_BODY_BYTES
                data = iter_raw_capped(response, cap, _check_deadline)
            except ResponseFormatError:
                if status == 200:
                    raise
                data = b""  # an oversized error body: the status says enough
        return Answer(status, data, retry_after)

    def close(self) -> None:
        self.closed = True
        if self._pid == os.getpid():
            self._http.close()
        # else a forked child's inherited pool: those connections are the parent's to close
        # (shutting them down here would end them for the parent too).
