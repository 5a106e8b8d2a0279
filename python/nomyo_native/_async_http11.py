"""The async driver's HTTP/1.1 connections, under the pool in ``_async_pool``.

httpcore2's ``AsyncHTTP11Connection`` wraps every step of an exchange in Trace context
managers and an async state lock, feeds every read to h11 and yields each body chunk through
three generators; a megabyte body was copied five times on its way up. These connections keep
the pool (limits, queueing, keep-alive expiry, the "connection not available" retry) and
httpcore2's exceptions, and do the exchange themselves: h11 checks the request and parses the
response head (``_http11``), and a ``Content-Length`` body is received straight into one
buffer of its own (``AsyncioNetworkStream.receive_body``), handed on whole as the response's
only chunk. Chunked and close-delimited bodies go through h11, chunk by chunk.

A connection goes back to the pool only when the exchange is provably clean: the request sent
whole, the body read to its end with nothing after it, keep-alive on both sides (HTTP/1.1, no
``Connection: close``). Anything else (an error, a cancellation, a body left unread) closes it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, Protocol, cast

import httpcore2

from nomyo_native._http11 import (
    COALESCE_BYTES,
    Exchange,
    ReceivedBytes,
    ResponseHead,
    coalesced,
)
from nomyo_native._http11_state import ConnectionState

__all__ = ["HTTP11Connection", "RequestHead", "ResponseBody"]

# A request's method, target and fields, as httpcore2's request carries them.
RequestHead = tuple[bytes, bytes, list[tuple[bytes, bytes]]]

# What one read asks of a stream read through ``read()`` (httpcore2's READ_NUM_BYTES).
_READ_SIZE = 64 * 1024


class _Source(Protocol):
    """What the exchange reads from: bytes pending, more of them, a body of known length."""

    def pending(self) -> memoryview: ...

    def consume(self, nbytes: int) -> None: ...

    @property
    def clean(self) -> bool: ...

    async def fill(self, timeout: float | None) -> bool: ...

    async def receive_body(self, length: int, timeout: float | None) -> bytearray | memoryview: ...


class _ReadingSource(ReceivedBytes):
    """A :class:`_Source` over any httpcore2 stream's ``read()`` (one the direct path does not
    know): reads are gathered in a buffer of its own."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        super().__init__()
        self._stream = stream

    async def fill(self, timeout: float | None) -> bool:
        data = await self._stream.read(_READ_SIZE, timeout)
        self._ended = not data
        self._buffer += data
        return bool(data)

    async def receive_body(self, length: int, timeout: float | None) -> bytearray | memoryview:
        body = self._buffer[:length]
        self.consume(length)
        while len(body) < length:
            if not await self.fill(timeout):
                raise httpcore2.RemoteProtocolError(
                    "peer closed connection without sending complete message body: "
                    f"received {len(body)} bytes, expected {length}"
                )
            owed = length - len(body)
            body += self._buffer[:owed]
            self.consume(owed)
        return body


class HTTP11Connection(ConnectionState, httpcore2.AsyncConnectionInterface):
    """One connection to ``origin``, made on its first request; one exchange at a time."""

    def __init__(
        self,
        origin: httpcore2.Origin,
        *,
        ssl_context: ssl.SSLContext | None,
        keepalive_expiry: float | None,
        network_backend: httpcore2.AsyncNetworkBackend,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> None:
        super().__init__(origin, keepalive_expiry)
        self._ssl_context = ssl_context
        self._backend = network_backend
        self._local_address = local_address
        self._socket_options = socket_options
        self._stream: httpcore2.AsyncNetworkStream | None = None
        self._source: _Source | None = None

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        assert isinstance(request.stream, AsyncIterable)
        body = await self.exchange(
            request.url.origin,
            (request.method, request.url.target, request.headers),
            request.stream,
            request.extensions.get("timeout", {}),
            request,
        )
        return body.core_response(body)

    async def exchange(
        self,
        origin: httpcore2.Origin,
        head: RequestHead,
        content: AsyncIterable[bytes] | bytes,
        timeouts: Mapping[str, float | None],
        request: httpcore2.Request | None = None,
    ) -> ResponseBody:
        """Sends the request (``head``: method, target, fields) with ``content`` and reads the
        response head: the body to read or stream, then close. ``request``: what the connect
        step and the trace lines see; a direct attempt has none, and is not traced."""
        usable = self._source is None or self._source.clean
        if not self._begin_exchange(origin, usable, traced=request is not None):
            # Idle, yet the server sent what nobody asked for, or closed: nothing to close
            # gracefully (a peer sending junk need not answer close_notify).
            await self._drop()
            raise httpcore2.ConnectionNotAvailable()
        try:
            if self._stream is None:
                sni = request.extensions.get("sni_hostname") if request is not None else None
                await self._connect(timeouts.get("connect"), sni)
            return await self._exchange(head, content, timeouts, request)
        except BaseException:
            await self._drop()
            raise

    async def _connect(self, timeout: float | None, sni_hostname: str | None) -> None:
        host = self._origin.host.decode("ascii")
        port, local, options = self._origin.port, self._local_address, self._socket_options
        self._trace_connect(
            "connect_tcp.started", host=host, port=port, local_address=local, timeout=timeout,
            socket_options=options,
        )  # fmt: skip
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local, socket_options=options
        )
        self._trace_connect("connect_tcp.complete", return_value=stream)
        if self._origin.scheme in (b"https", b"wss"):
            context = self._ssl_context or httpcore2.default_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            server_hostname = sni_hostname or host
            self._trace_connect(
                "start_tls.started", ssl_context=context, server_hostname=server_hostname,
                timeout=timeout,
            )  # fmt: skip
            stream = await stream.start_tls(context, server_hostname, timeout)
            self._trace_connect("start_tls.complete", return_value=stream)
        self._stream = stream
        receiver = getattr(stream, "receiver", None)
        direct: _Source | None = receiver() if receiver is not None else None
        self._source = direct if direct is not None else _ReadingSource(stream)

    async def _exchange(
        self,
        head: RequestHead,
        content: AsyncIterable[bytes] | bytes,
        timeouts: Mapping[str, float | None],
        request: httpcore2.Request | None,
    ) -> ResponseBody:
        if self.tracing:
            self.trace("send_request_headers.started", request=request)
        exchange = Exchange(*head)
        try:
            await self._send(exchange, content, timeouts.get("write"))
        except httpcore2.WriteError:
            # As httpcore2: a server may answer (a 413, say) and stop reading before the
            # request is all sent; its answer is read, and the connection is not reused.
            pass
        if self.tracing:
            self.trace("send_request_body.complete")
            self.trace("receive_response_headers.started", request=request)
        answer = await self._receive_head(exchange, timeouts.get("read"))
        if self.tracing:
            self.trace(
                "receive_response_headers.complete",
                return_value=(answer.http_version, answer.status, answer.reason),
            )
        return ResponseBody(self, exchange, answer, timeouts.get("read"))

    async def _send(
        self, exchange: Exchange, body: AsyncIterable[bytes] | bytes, timeout: float | None
    ) -> None:
        """The head and body as h11 checked them; the body's bytes written as the caller gave
        them (sliced by the stream), a small request joined into one write."""
        parts = [exchange.head]
        if isinstance(body, bytes):
            parts += exchange.body_parts(body)  # a direct attempt's content: one chunk
        else:
            async for chunk in body:
                parts += exchange.body_parts(chunk)
                if sum(map(len, parts)) > COALESCE_BYTES:
                    await self._write(parts, timeout)
                    parts = []
        parts.append(exchange.end_of_request())
        await self._write(parts, timeout)

    async def _write(self, parts: list[bytes], timeout: float | None) -> None:
        assert self._stream is not None
        for part in coalesced(parts):
            await self._stream.write(part, timeout)

    async def _receive_head(self, exchange: Exchange, timeout: float | None) -> ResponseHead:
        source = self.source
        while True:
            taken, head = exchange.take_head(source.pending())
            source.consume(taken)
            if head is not None:
                return head
            if not await source.fill(timeout):
                raise exchange.end_of_stream_before_head()

    async def response_closed(self, exchange: Exchange, head: ResponseHead, read: bool) -> None:
        """The response is done with (``read``: its body was received to the end): back to the
        pool if the exchange is provably clean, else closed."""
        if self.tracing:
            self.trace("response_closed.started")
        source = self._source
        clean = source is not None and source.clean
        if not self._end_exchange(exchange, head, read, clean):
            # Graceful only after a complete exchange with nothing after it (Connection: close,
            # HTTP/1.0): a peer that sent bytes past the body need not answer close_notify.
            unread = source is not None and len(source.pending()) > 0
            await (self.aclose() if read and not unread else self._drop())
        if self.tracing:
            self.trace("response_closed.complete")

    @property
    def network_stream(self) -> httpcore2.AsyncNetworkStream | None:
        return self._stream

    @property
    def source(self) -> _Source:
        assert self._source is not None
        return self._source

    async def aclose(self) -> None:
        source = self._source
        if source is not None and len(source.pending()) > 0:
            # Holding bytes nobody asked for (httpcore2's pool closes an idle connection it
            # finds readable before the next request goes out): such a peer need not answer
            # close_notify, and the next request would wait for it.
            await self._drop()
            return
        self._mark_closed()
        if self._stream is not None:
            await self._stream.aclose()

    async def _drop(self) -> None:
        """Closes a connection whose exchange failed, was cancelled or was left unread, at once
        where the stream can (a graceful TLS close waits for the peer's close_notify, which a
        peer that stopped answering never sends: the caller's timeout came that much late)."""
        self._mark_closed()
        abort = getattr(self._stream, "abort", None)
        if abort is not None:
            abort()
        elif self._stream is not None:
            await self._stream.aclose()


class ResponseBody:
    """A response's head and its body to come: read whole (:meth:`read_declared`), or streamed
    for httpcore2 (a ``Content-Length`` body as one chunk, the buffer it was received into; any
    other body as h11 yields it); closing it ends the exchange."""

    def __init__(
        self,
        connection: HTTP11Connection,
        exchange: Exchange,
        head: ResponseHead,
        timeout: float | None,
    ) -> None:
        self._connection = connection
        self._exchange = exchange
        self.head = head
        self._timeout = timeout
        self._read = head.length == 0
        self._closed = False

    def core_response(self, content: AsyncIterable[Any]) -> httpcore2.Response:
        """The response as httpcore2 models it, its body streamed from ``content``."""
        head = self.head
        return httpcore2.Response(
            status=head.status,
            headers=head.headers,
            # httpcore2 types a stream's chunks as bytes; the body's own buffer (or a view of
            # it) is passed on untouched by it and httpx2 alike.
            content=cast("AsyncIterable[bytes]", content),
            extensions={
                "http_version": head.http_version,
                "reason_phrase": head.reason,
                "network_stream": self._connection.network_stream,
            },
        )

    async def read_declared(self) -> bytearray | memoryview | bytes:
        """The whole body of a response of declared length (``head.length`` not None)."""
        length = self.head.length
        assert length is not None
        if not length:
            return b""
        try:
            body = await self._connection.source.receive_body(length, self._timeout)
        except BaseException:
            await self.aclose()
            raise
        self._read = True
        return body

    async def __aiter__(self) -> AsyncIterator[bytes | bytearray | memoryview]:
        connection = self._connection
        if connection.tracing:
            connection.trace("receive_response_body.started")
        try:
            length = self.head.length
            if length is None:
                async for chunk in self._h11_chunks():
                    yield chunk
            elif length:
                body = await self._connection.source.receive_body(length, self._timeout)
                self._read = True
                yield body
            if connection.tracing:
                connection.trace("receive_response_body.complete")
        except BaseException:
            await self.aclose()
            raise

    async def _h11_chunks(self) -> AsyncIterator[bytes]:
        source, exchange = self._connection.source, self._exchange
        ended = False
        while True:
            data = bytes(source.pending())
            source.consume(len(data))
            if data or ended:
                # b"" tells h11 the stream ended: the end of a close-delimited body, or an error.
                chunks, done = exchange.body_chunks(data)
            else:
                chunks, done = [], False
            for chunk in chunks:
                yield chunk
            if done:
                self._read = True
                return
            if ended and not data:
                raise httpcore2.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
            if not ended:
                ended = not await source.fill(self._timeout)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._connection.response_closed(self._exchange, self.head, self._read)
