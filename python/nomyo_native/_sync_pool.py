"""The sync driver's connection pool: httpcore2's own (thread-safe: limits, queueing,
keep-alive expiry) over our HTTP/1.1 connections (``_sync_http11``), and a request sent on it
without httpcore2's request and response models (:meth:`HTTP11ConnectionPool.send_plain`).

httpcore2's ``handle_request`` takes an ``httpcore2.Request`` (every header field checked
again) and hands on a new ``httpcore2.Response`` around the connection's (every field checked a
third time) with a stream wrapped twice. ``send_plain`` runs the same queueing with the pool's
own request records (``PoolRequest``, its bookkeeping under the pool's lock) and hands on the
connection's response head and body, closed through the pool's own stream (``PoolByteStream``:
the request leaves the queue, the pool is rebalanced). Both ways a wait for a connection (all of
them busy) ends by the attempt's deadline too, not only by the ``pool`` timeout. Those two are
httpcore2's private names: a release that moves them turns ``send_plain`` off
(:data:`PLAIN_AVAILABLE`), and requests go through httpcore2's own ``handle_request``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import httpcore2

try:
    from httpcore2._sync.connection_pool import PoolByteStream, PoolRequest
except ImportError:
    PLAIN_AVAILABLE = False
else:
    PLAIN_AVAILABLE = True

from nomyo_native._sync_deadline import bounded
from nomyo_native._sync_http11 import HTTP11Connection, RequestHead, ResponseBody

__all__ = ["PLAIN_AVAILABLE", "HTTP11ConnectionPool", "PooledResponse"]

T = TypeVar("T")
# What httpcore2's pool sends on our connections; any other scheme goes to its own code.
_SCHEMES = (b"http", b"https")


class HTTP11ConnectionPool(httpcore2.ConnectionPool):
    """httpcore2's pool (limits, queueing, keep-alive expiry) over :class:`HTTP11Connection`."""

    def create_connection(self, origin: httpcore2.Origin) -> httpcore2.ConnectionInterface:
        if not self._ours:
            return super().create_connection(origin)  # not what the drivers build
        return HTTP11Connection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._network_backend,
            local_address=self._local_address,
            socket_options=self._socket_options,
        )

    @property
    def _ours(self) -> bool:
        return self._proxy is None and self._uds is None and not self._http2

    def handle_request(self, request: httpcore2.Request) -> httpcore2.Response:
        """httpcore2's ``handle_request``, its waits for a connection within the attempt's
        deadline (:meth:`_on_connection`)."""
        if not (self._ours and PLAIN_AVAILABLE) or request.url.scheme not in _SCHEMES:
            return super().handle_request(request)  # refusing the scheme, as it words it
        pool_request, response = self._on_connection(
            request,
            request.extensions.get("timeout", {}).get("pool"),
            lambda connection: connection.handle_request(request),
        )
        assert isinstance(response.stream, Iterable)
        return httpcore2.Response(
            status=response.status,
            headers=response.headers,
            content=PoolByteStream(response.stream, pool_request, self),
            extensions=response.extensions,
        )

    def send_plain(
        self,
        routing: httpcore2.Request,
        head: RequestHead,
        content: bytes,
        timeouts: Mapping[str, float | None],
    ) -> PooledResponse:
        """A request sent without httpcore2's request model (``head``: method, target and
        fields) to the http or https origin of ``routing`` (a request for that URL, only read
        for its origin: one made once per URL), its response's head read: the response to
        read and close, which gives the connection back. httpcore2's ``handle_request`` with
        our connection's ``exchange`` in place of its ``handle_request``."""
        assert self._ours and PLAIN_AVAILABLE
        origin = routing.url.origin
        pool_request, body = self._on_connection(
            routing,
            timeouts.get("pool"),
            lambda connection: connection.exchange(origin, head, content, timeouts),
        )
        return PooledResponse(body, PoolByteStream(body, pool_request, self))  # type: ignore[arg-type]

    def _on_connection(
        self,
        routing: httpcore2.Request,
        timeout: float | None,
        exchange: Callable[[HTTP11Connection], T],
    ) -> tuple[PoolRequest, T]:
        """``exchange`` on a connection the pool assigns to ``routing`` (another one if the one
        assigned turns out unusable), as httpcore2's ``handle_request`` queues it: the request's
        record in the queue (the connection stays taken until the response is closed) and what
        ``exchange`` returned. Each wait for a connection ends by ``timeout`` and the attempt's
        deadline (httpcore2 waits the ``pool`` timeout however little the attempt has left)."""
        with self._optional_thread_lock:
            pool_request = PoolRequest(routing)
            self._requests.append(pool_request)
        try:
            while True:
                with self._optional_thread_lock:
                    closing = self._assign_requests_to_connections()
                self._close_connections(closing)
                connection = pool_request.connection
                if connection is None:  # all busy: wait for one, within the deadline too
                    wait = bounded(timeout, httpcore2.PoolTimeout)
                    connection = pool_request.wait_for_connection(timeout=wait)
                assert isinstance(connection, HTTP11Connection)
                try:
                    return pool_request, exchange(connection)
                except httpcore2.ConnectionNotAvailable:
                    pool_request.clear_connection()  # found unusable: another one
        except BaseException as exc:
            with self._optional_thread_lock:
                self._requests.remove(pool_request)
                closing = self._assign_requests_to_connections()
            self._close_connections(closing)
            raise exc from None  # as httpcore2's pool raises it


class PooledResponse:
    """A response of :meth:`HTTP11ConnectionPool.send_plain`, its head read: its body read whole
    or streamed (as httpcore2's response, :meth:`core_response`); closing it gives the
    connection back."""

    def __init__(self, body: ResponseBody, stream: PoolByteStream) -> None:
        self.body = body
        self.head = body.head
        self.stream = stream

    def core_response(self) -> httpcore2.Response:
        """The response as httpcore2's pool hands it on, its stream the pool's."""
        return self.body.core_response(self.stream)

    def close(self) -> None:
        self.stream.close()
