"""The sync driver's HTTP/1.1 connections, under httpcore2's own (thread-safe) pool
(``_sync_pool``): the blocking twin of ``_async_http11``.

The same framing (``_http11``: h11 checks the request and parses each head) and the same rule
for reuse (``_http11_state``). A ``Content-Length`` body is received with ``recv_into`` straight
into one buffer of its own (on a TLS socket OpenSSL decrypts into it), handed on whole as the
response's only chunk, where httpcore2's connection fed every read to h11 and copied each chunk
out again. Chunked and close-delimited bodies go through h11, chunk by chunk.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
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

__all__ = ["HTTP11Connection", "ReceiveInto", "RequestHead", "ResponseBody"]

# A request's method, target and fields, as httpcore2's request carries them.
RequestHead = tuple[bytes, bytes, list[tuple[bytes, bytes]]]

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
            _body_buffers.put_front(body, pending[:received])
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
        assert isinstance(request.stream, Iterable)
        body = self.exchange(
            request.url.origin,
            (request.method, request.url.target, request.headers),
            request.stream,
            request.extensions.get("timeout", {}),
            request,
        )
        return body.core_response(body)

    def exchange(
        self,
        origin: httpcore2.Origin,
        head: RequestHead,
        content: Iterable[bytes] | bytes,
        timeouts: Mapping[str, float | None],
        request: httpcore2.Request | None = None,
    ) -> ResponseBody:
        """Sends the request (``head``: method, target, fields) with ``content`` and reads the
        response head: the body to read or stream, then close. ``request``: what the connect
        step and the trace lines see; a direct attempt has none, and is not traced."""
        usable = self._source is None or self._source.clean
        if not self._begin_exchange(origin, usable, traced=request is not None):
            self.close()
            raise httpcore2.ConnectionNotAvailable()
        try:
            if self._stream is None:
                sni = request.extensions.get("sni_hostname") if request is not None else None
                self._connect(timeouts.get("connect"), sni)
            return self._exchange(head, content, timeouts, request)
        except BaseException:
            self.close()
            raise

    def _connect(self, timeout: float | None, sni_hostname: str | None) -> None:
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
            server_hostname = sni_hostname or host
            self._trace_connect(
                "start_tls.started", ssl_context=context, server_hostname=server_hostname,
                timeout=timeout,
            )  # fmt: skip
            stream = stream.start_tls(context, server_hostname, timeout)
            self._trace_connect("start_tls.complete", return_value=stream)
        self._stream = stream
        self._source = _Source(stream)

    def _exchange(
        self,
        head: RequestHead,
        content: Iterable[bytes] | bytes,
        timeouts: Mapping[str, float | None],
        request: httpcore2.Request | None,
    ) -> ResponseBody:
        if self.tracing:
            self.trace("send_request_headers.started", request=request)
        exchange = Exchange(*head)
        try:
            self._send(exchange, content, timeouts.get("write"))
        except httpcore2.WriteError:
            pass  # as httpcore2: the answer may already be there; the connection is not reused
        if self.tracing:
            self.trace("send_request_body.complete")
            self.trace("receive_response_headers.started", request=request)
        answer = self._receive_head(exchange, timeouts.get("read"))
        if self.tracing:
            self.trace(
                "receive_response_headers.complete",
                return_value=(answer.http_version, answer.status, answer.reason),
            )
        return ResponseBody(self, exchange, answer, timeouts.get("read"))

    def _send(
        self, exchange: Exchange, body: Iterable[bytes] | bytes, timeout: float | None
    ) -> None:
        parts = [exchange.head]
        if isinstance(body, bytes):
            parts += exchange.body_parts(body)  # a direct attempt's content: one chunk
        else:
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
    def network_stream(self) -> httpcore2.NetworkStream | None:
        return self._stream

    @property
    def source(self) -> _Source:
        assert self._source is not None
        return self._source

    def close(self) -> None:
        self._mark_closed()
        if self._stream is not None:
            self._stream.close()


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

    def core_response(self, content: Iterable[Any]) -> httpcore2.Response:
        """The response as httpcore2 models it, its body streamed from ``content``."""
        head = self.head
        return httpcore2.Response(
            status=head.status,
            headers=head.headers,
            # The body's own buffer (or a view of it) passes through httpcore2 and httpx2.
            content=cast("Iterable[bytes]", content),
            extensions={
                "http_version": head.http_version,
                "reason_phrase": head.reason,
                "network_stream": self._connection.network_stream,
            },
        )

    def read_declared(self) -> bytearray | memoryview | bytes:
        """The whole body of a response of declared length (``head.length`` not None)."""
        length = self.head.length
        assert length is not None
        if not length:
            return b""
        try:
            body = self._connection.source.receive_body(length, self._timeout)
        except BaseException:
            self.close()
            raise
        self._read = True
        return body

    def __iter__(self) -> Iterator[bytes | bytearray | memoryview]:
        connection = self._connection
        if connection.tracing:
            connection.trace("receive_response_body.started")
        try:
            length = self.head.length
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
            self._connection.response_closed(self._exchange, self.head, self._read)
