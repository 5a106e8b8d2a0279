"""The sync driver: send one attempt, read its body raw and capped within a deadline, sleep.

Like the async driver it decides nothing. It runs on an ``httpx2.Client``'s pool over httpcore2's
own sync network backend with the client's ``SSLContext`` (``_asyncio_tls_backend`` is asyncio-only;
blocking sockets with the same verification are what a script wants), with HTTP/1.1 connections
of our own (``_sync_http11``: a ``Content-Length`` body is received straight into its own
buffer). The whole-attempt
deadline is kept by the pool (``_sync_pool``: the wait for a connection) and by
:class:`DeadlineBackend` (``_sync_stream``): every name lookup, connect, TLS handshake, write and
read of an attempt gets at most the time the attempt has left, so a peer trickling a byte at a
time cannot hold a request past its deadline (asyncio's timeout scope plays this part in the
async driver).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import httpx2

from nomyo_native import _sync_direct
from nomyo_native._http_body import LIMITS, Answer, answer_head, iter_raw_capped
from nomyo_native._http_request import RequestBuilder
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES
from nomyo_native._sync_deadline import ATTEMPT_ENDS, READ_AHEAD, DeadlineExceeded, check_deadline
from nomyo_native._sync_direct import SyncDirectExchange
from nomyo_native._sync_pool import HTTP11ConnectionPool
from nomyo_native._sync_stream import DeadlineBackend
from nomyo_native.errors import ClientClosedError, ResponseFormatError

__all__ = ["READ_AHEAD", "DeadlineBackend", "DeadlineExceeded", "SyncDriver"]


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
    def pool(self) -> HTTP11ConnectionPool:
        """The pool of our own connections (for ``_sync_direct``)."""
        return cast(HTTP11ConnectionPool, self._pool)


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
            SyncDirectExchange(transport.pool, self._requests, check_deadline)
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
                return self._direct.send(method, url, head, content, ok_cap)
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
        token = ATTEMPT_ENDS.set(ends)
        try:
            return self._attempt(method, url, headers, content, ok_cap)
        except httpx2.TimeoutException as exc:
            if ends is not None and time.monotonic() >= ends:
                raise DeadlineExceeded(f"the attempt exceeded its {deadline:g} s deadline") from exc
            raise
        finally:
            ATTEMPT_ENDS.reset(token)

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
                data = iter_raw_capped(response, cap, check_deadline)
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
