"""The sync driver's HTTP/1.1 connections, under httpcore2's own (thread-safe) pool: the blocking
twin of ``_async_http11``.

The same framing (``_http11``: h11 checks the request and parses each head) and the same rule
for reuse (``_http11_state``). A ``Content-Length`` body is received with ``recv_into`` straight
into one buffer of its own (on a TLS socket OpenSSL decrypts into it), handed on whole as the
response's only chunk, where httpcore2's connection fed every read to h11 and copied each chunk
out again. Chunked and close-delimited bodies go through h11, chunk by chunk.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import httpcore2

from nomyo_native import _body_buffers
from nomyo_native._body_buffers import BodyBuffer
from nomyo_native._http11 import (
    COALESCE_BYTES,
    Exchange,
    ReceivedBytes,
    ResponseHead,
    coalesced,
    make_room,
)
from nomyo_native._http11_state import ConnectionState

__all__ = ["HTTP11Connection", "HTTP11ConnectionPool", "ReceiveInto"]

# What one read asks of the stream (its reads may return more: see _sync_driver.READ_AHEAD).
_READ_SIZE = 64 * 1024
# The room a growing body buffer offers each receive (filled whole before it grows again).
_RECEIVE_ROOM = 256 * 1024

# A stream's direct receive: (view, timeout) -> bytes received into it, 0 at end of stream.
ReceiveInto = Callable[[memoryview, float | None], int]


class _Source(ReceivedBytes):
    """Bytes received and not yet parsed, more of them, and a body of known length: received
    straight into its own buffer when the stream offers ``receiver()``, else read and copied."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        super().__init__()
        self._stream = stream
        receiver = getattr(stream, "receiver", None)
        self._receive_into: ReceiveInto | None = receiver() if receiver is not None else None

    def fill(self, timeout: float | None) -> bool:
        data = self._stream.read(_READ_SIZE, timeout)
        self._ended = not data
        self._buffer += data
        return bool(data)

    def receive_body(self, length: int, timeout: float | None) -> bytearray | memoryview:
        if self._receive_into is None:
            return self._read_body(length, timeout)
        body = (
            _body_buffers.take(length) if length > _body_buffers.POOLED_MIN_BYTES else bytearray()
        )
        received = min(length, len(self._buffer))
        with memoryview(self._buffer) as pending:
            body[:received] = pending[:received]
        self.consume(received)
        while received < length:
            body = make_room(body, received, length, _RECEIVE_ROOM)
            got = self._receive_into(memoryview(body)[received:length], timeout)
            if not got:
                raise self._cut_short(received, length)
            received += got
        if type(body) is BodyBuffer:
            return _body_buffers.hand_on(body, length)
        return body

    def _read_body(self, length: int, timeout: float | None) -> bytearray:
        """A body read through the stream's ``read()`` (one without a direct receive)."""
        body = self._buffer[:length]
        self.consume(length)
        while len(body) < length:
            if not self.fill(timeout):
                raise self._cut_short(len(body), length)
            got = min(len(self._buffer), length - len(body))
            body += self._buffer[:got]
            self.consume(got)
        return body

    def _cut_short(self, received: int, length: int) -> httpcore2.RemoteProtocolError:
        self._ended = True
        return httpcore2.RemoteProtocolError(
            "peer closed connection without sending complete message body: "
            f"received {received} bytes, expected {length}"
        )


class HTTP11Connection(ConnectionState, httpcore2.ConnectionInterface):
    """One connection to ``origin``, made on its first request; one exchange at a time."""

    def __init__(
        self,
        origin: httpcore2.Origin,
        *,
        ssl_context: ssl.SSLContext | None,
        keepalive_expiry: float | None,
        network_backend: httpcore2.NetworkBackend,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> None:
        super().__init__(origin, keepalive_expiry)
        self._ssl_context = ssl_context
        self._backend = network_backend
        self._local_address = local_address
        self._socket_options = socket_options
        self._stream: httpcore2.NetworkStream | None = None
        self._source: _Source | None = None

    def handle_request(self, request: httpcore2.Request) -> httpcore2.Response:
        usable = self._source is None or self._source.clean
        if not self._begin_exchange(request.url.origin, usable):
            self.close()
            raise httpcore2.ConnectionNotAvailable()
        try:
            if self._stream is None:
                self._connect(request)
            return self._exchange(request)
        except BaseException:
            self.close()
            raise

    def _connect(self, request: httpcore2.Request) -> None:
        timeout = request.extensions.get("timeout", {}).get("connect")
        host = self._origin.host.decode("ascii")
        port, local, options = self._origin.port, self._local_address, self._socket_options
        self._trace_connect(
            "connect_tcp.started", host=host, port=port, local_address=local, timeout=timeout,
            socket_options=options,
        )  # fmt: skip
        stream = self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local, socket_options=options
        )
        self._trace_connect("connect_tcp.complete", return_value=stream)
        if self._origin.scheme in (b"https", b"wss"):
            context = self._ssl_context or httpcore2.default_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            server_hostname = request.extensions.get("sni_hostname") or host
            self._trace_connect(
                "start_tls.started", ssl_context=context, server_hostname=server_hostname,
                timeout=timeout,
            )  # fmt: skip
            stream = stream.start_tls(context, server_hostname, timeout)
            self._trace_connect("start_tls.complete", return_value=stream)
        self._stream = stream
        self._source = _Source(stream)

    def _exchange(self, request: httpcore2.Request) -> httpcore2.Response:
        timeouts = request.extensions.get("timeout", {})
        if self.tracing:
            self.trace("send_request_headers.started", request=request)
        exchange = Exchange(request.method, request.url.target, request.headers)
        assert isinstance(request.stream, Iterable)
        try:
            self._send(exchange, request.stream, timeouts.get("write"))
        except httpcore2.WriteError:
            pass  # as httpcore2: the answer may already be there; the connection is not reused
        if self.tracing:
            self.trace("send_request_body.complete")
            self.trace("receive_response_headers.started", request=request)
        head = self._receive_head(exchange, timeouts.get("read"))
        if self.tracing:
            self.trace(
                "receive_response_headers.complete",
                return_value=(head.http_version, head.status, head.reason),
            )
        return httpcore2.Response(
            status=head.status,
            headers=head.headers,
            # The body's own buffer (or a view of it) passes through httpcore2 and httpx2.
            content=cast(
                "Iterable[bytes]", _ResponseBody(self, exchange, head, timeouts.get("read"))
            ),
            extensions={
                "http_version": head.http_version,
                "reason_phrase": head.reason,
                "network_stream": self._stream,
            },
        )

    def _send(self, exchange: Exchange, body: Iterable[bytes], timeout: float | None) -> None:
        parts = [exchange.head]
        for chunk in body:
            parts += exchange.body_parts(chunk)
            if sum(map(len, parts)) > COALESCE_BYTES:
                self._write(parts, timeout)
                parts = []
        parts.append(exchange.end_of_request())
        self._write(parts, timeout)

    def _write(self, parts: list[bytes], timeout: float | None) -> None:
        assert self._stream is not None
        for part in coalesced(parts):
            self._stream.write(part, timeout)

    def _receive_head(self, exchange: Exchange, timeout: float | None) -> ResponseHead:
        source = self.source
        while True:
            taken, head = exchange.take_head(source.pending())
            source.consume(taken)
            if head is not None:
                return head
            if not source.fill(timeout):
                raise exchange.end_of_stream_before_head()

    def response_closed(self, exchange: Exchange, head: ResponseHead, read: bool) -> None:
        if self.tracing:
            self.trace("response_closed.started")
        clean = self._source is not None and self._source.clean
        if not self._end_exchange(exchange, head, read, clean):
            self.close()
        if self.tracing:
            self.trace("response_closed.complete")

    @property
    def source(self) -> _Source:
        assert self._source is not None
        return self._source

    def close(self) -> None:
        self._mark_closed()
        if self._stream is not None:
            self._stream.close()


class _ResponseBody:
    """The response's stream for httpcore2: a ``Content-Length`` body as one chunk (the buffer
    it was received into), any other body as h11 yields it."""

    def __init__(
        self,
        connection: HTTP11Connection,
        exchange: Exchange,
        head: ResponseHead,
        timeout: float | None,
    ) -> None:
        self._connection = connection
        self._exchange = exchange
        self._head = head
        self._timeout = timeout
        self._read = head.length == 0
        self._closed = False

    def __iter__(self) -> Iterator[bytes | bytearray | memoryview]:
        connection = self._connection
        if connection.tracing:
            connection.trace("receive_response_body.started")
        try:
            length = self._head.length
            if length is None:
                yield from self._h11_chunks()
            elif length:
                body = self._connection.source.receive_body(length, self._timeout)
                self._read = True
                yield body
            if connection.tracing:
                connection.trace("receive_response_body.complete")
        except BaseException:
            self.close()
            raise

    def _h11_chunks(self) -> Iterator[bytes]:
        source, exchange = self._connection.source, self._exchange
        ended = False
        while True:
            data = bytes(source.pending())
            source.consume(len(data))
            # b"" tells h11 the stream ended: the end of a close-delimited body, or an error.
            chunks, done = exchange.body_chunks(data) if data or ended else ([], False)
            yield from chunks
            if done:
                self._read = True
                return
            if ended and not data:
                raise httpcore2.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
            if not ended:
                ended = not source.fill(self._timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.response_closed(self._exchange, self._head, self._read)


class HTTP11ConnectionPool(httpcore2.ConnectionPool):
    """httpcore2's pool (limits, queueing, keep-alive expiry) over :class:`HTTP11Connection`."""

    def create_connection(self, origin: httpcore2.Origin) -> httpcore2.ConnectionInterface:
        if self._proxy is not None or self._uds is not None or self._http2:
            return super().create_connection(origin)  # not what the drivers build
        return HTTP11Connection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._network_backend,
            local_address=self._local_address,
            socket_options=self._socket_options,
        )
