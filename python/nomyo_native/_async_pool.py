"""The async driver's connection pool: httpcore2's, asking asyncio alone to wait.

httpcore2's ``AsyncConnectionPool`` works under asyncio and trio alike: every request creates
an event through anyio (a sniffio lookup each), closes nothing inside two anyio cancel scopes
(and one more when the response closes), and goes through a queue that is scanned twice. That
was about a seventh of the Python calls of a small request. Our connections only ever run on
asyncio (``_asyncio_tls_backend``), so this pool keeps httpcore2's rules (limits, keep-alive
expiry and surplus, the "connection not available" retry, its exceptions and their messages)
with asyncio's own futures: an idle connection is taken at once, a new one opened while under
``max_connections``, and otherwise the request waits its turn (first come, first served), up
to the ``pool`` timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar, cast

import httpcore2

from nomyo_native._async_http11 import HTTP11Connection, RequestHead, ResponseBody

__all__ = ["HTTP11ConnectionPool", "PooledResponse"]

T = TypeVar("T")


class HTTP11ConnectionPool(httpcore2.AsyncConnectionPool):
    """httpcore2's pool rules (limits, queueing, keep-alive expiry and surplus, exceptions) over
    :class:`HTTP11Connection`, waiting on asyncio futures; httpcore2's own code for anything
    else (a proxy, a Unix socket, HTTP/2: not what the drivers build)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Requests waiting for a connection, in arrival order; each is woken (its future
        # settled) when a connection goes idle or a slot frees, and then looks again.
        self._waiting: deque[asyncio.Future[None]] = deque()

    def create_connection(self, origin: httpcore2.Origin) -> httpcore2.AsyncConnectionInterface:
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

    def __repr__(self) -> str:
        if not self._ours:
            return super().__repr__()
        # httpcore2's repr counts its request list, which this pool does not keep: each busy
        # HTTP/1.1 connection serves one request, and those waiting are in ``_waiting``.
        idle = [connection.is_idle() for connection in self._connections]
        queued = sum(not turn.cancelled() for turn in self._waiting)
        return (
            f"<{type(self).__name__} [Requests: {idle.count(False)} active, {queued} queued"
            f" | Connections: {idle.count(False)} active, {idle.count(True)} idle]>"
        )

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        if not self._ours:
            return await super().handle_async_request(request)
        scheme = request.url.scheme.decode()
        if scheme == "":
            raise httpcore2.UnsupportedProtocol(
                "Request URL is missing an 'http://' or 'https://' protocol."
            )
        if scheme not in ("http", "https", "ws", "wss"):
            raise httpcore2.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'."
            )
        timeout = request.extensions.get("timeout", {}).get("pool")
        connection, response = await self._exchange_on(
            request.url.origin, timeout, lambda connection: connection.handle_async_request(request)
        )
        assert isinstance(response.stream, AsyncIterable)
        # The connection's own response, its stream wrapped (httpcore2's pool makes a new
        # one, checking every header field again).
        response.stream = _PooledStream(response.stream, self, connection)
        return response

    async def send_plain(
        self,
        origin: httpcore2.Origin,
        head: RequestHead,
        content: bytes,
        timeouts: Mapping[str, float | None],
    ) -> PooledResponse:
        """A request sent without httpcore2's request model (``head``: method, target and
        fields; ``origin``: an http or https one), its response's head read: the response to
        read and close, which gives the connection back."""
        connection, body = await self._exchange_on(
            origin,
            timeouts.get("pool"),
            lambda connection: connection.exchange(origin, head, content, timeouts),
        )
        return PooledResponse(body, self, connection)

    async def _exchange_on(
        self,
        origin: httpcore2.Origin,
        timeout: float | None,
        exchange: Callable[[HTTP11Connection], Awaitable[T]],
    ) -> tuple[HTTP11Connection, T]:
        """``exchange`` on a connection of the pool (another one if the one taken turns out
        unusable), and that connection, still taken until the response is closed."""
        while True:
            connection = cast(HTTP11Connection, await self._acquire(origin, timeout))
            try:
                return connection, await exchange(connection)
            except httpcore2.ConnectionNotAvailable:
                # Idle, yet found unusable as the request went out: it closed itself.
                await self._release(connection)
                continue
            except BaseException as exc:
                await self._release(connection)
                raise exc from None  # as httpcore2's pool raises it

    async def _acquire(
        self, origin: httpcore2.Origin, timeout: float | None
    ) -> httpcore2.AsyncConnectionInterface:
        """A connection for ``origin``: an idle one, else a new one within the limit, else
        the next one released (after those who waited before), within ``timeout``."""
        woken = False
        while True:
            # Behind a request still waiting, or one woken that has yet to look (it passes
            # the turn on), this one waits; behind only cancelled ones, which have yet to
            # leave the line and were woken by nothing, it looks now.
            waiting = self._waiting
            if woken or not waiting or all(turn.cancelled() for turn in waiting):
                # Closed before one is chosen: a cancellation while closing leaves nothing
                # chosen and unused behind (and passes a turn it was woken for on).
                try:
                    await self._close_connections(self._sweep(origin))
                except BaseException:
                    if woken:
                        self._wake_next()
                    raise
                connection = self._choose(origin)
                if connection is not None:
                    if woken and self._waiting and self._has_room():
                        # Several slots freed before this one looked woke it alone, and a
                        # request may have queued behind it since: the next one looks too.
                        self._wake_next()
                    return connection
            await self._wait_turn(timeout)
            woken = True

    def _sweep(self, origin: httpcore2.Origin) -> list[httpcore2.AsyncConnectionInterface]:
        """The connections to close now, as httpcore2's pool closes them: every idle one that
        expired or that the server closed or wrote to, and, when the pool is full with none
        for ``origin`` idle, an idle one of another origin to make room."""
        closing: list[httpcore2.AsyncConnectionInterface] = []
        kept: list[httpcore2.AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.is_idle() and connection.has_expired():
                closing.append(connection)
            else:
                kept.append(connection)
        self._connections = kept
        if len(kept) >= self._max_connections and self._idle_for(origin) is None:
            for connection in kept:
                if connection.is_idle():
                    kept.remove(connection)
                    closing.append(connection)
                    break
        return closing

    def _idle_for(self, origin: httpcore2.Origin) -> httpcore2.AsyncConnectionInterface | None:
        # The most recently used first: its peer is the likeliest to have kept it open.
        for connection in reversed(self._connections):
            if connection.is_available() and connection.can_handle_request(origin):
                return connection
        return None

    def _has_room(self) -> bool:
        """Whether another request could be served now: an idle connection (of any origin:
        one is closed to make room) or a slot for a new one."""
        connections = self._connections
        return len(connections) < self._max_connections or any(
            connection.is_idle() or connection.is_closed() for connection in connections
        )

    def _choose(self, origin: httpcore2.Origin) -> httpcore2.AsyncConnectionInterface | None:
        """An idle connection for ``origin``, else a new one within ``max_connections``, else
        None (wait)."""
        connection = self._idle_for(origin)
        if connection is None and len(self._connections) < self._max_connections:
            connection = self.create_connection(origin)
            self._connections.append(connection)
        return connection

    async def _wait_turn(self, timeout: float | None) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        looked = False
        try:
            async with asyncio.timeout(timeout):
                await turn
            looked = True
        except TimeoutError as exc:
            raise httpcore2.PoolTimeout(exc) from exc  # as httpcore2's pool words it
        finally:
            self._waiting.remove(turn)
            if not looked and turn.done() and not turn.cancelled():
                self._wake_next()  # woken, then cancelled before it looked: the turn passes on

    def _wake_next(self) -> None:
        for turn in self._waiting:
            if not turn.done():
                turn.set_result(None)
                return

    async def _release(self, connection: httpcore2.AsyncConnectionInterface) -> None:
        """``connection`` is done with an exchange: forgotten if closed; if idle, the oldest
        idle connections beyond ``max_keepalive_connections`` are closed (as httpcore2 does:
        the one just used stays warm); the next request waiting is woken."""
        closing: list[httpcore2.AsyncConnectionInterface] = []
        if connection.is_closed():
            if connection in self._connections:
                self._connections.remove(connection)
        elif connection.is_idle():
            if connection not in self._connections:
                closing.append(connection)
            else:
                idle = [other for other in self._connections if other.is_idle()]
                closing = idle[: max(0, len(idle) - self._max_keepalive_connections)]
                for surplus in closing:
                    self._connections.remove(surplus)
        self._wake_next()
        await self._close_connections(closing)

    async def _close_connections(self, closing: list[httpcore2.AsyncConnectionInterface]) -> None:
        if closing:  # httpcore2 enters an anyio cancel scope even to close nothing
            await super()._close_connections(closing)


class _PooledStream:
    """A response's body as the pool hands it on: closing it gives the connection back."""

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        pool: HTTP11ConnectionPool,
        connection: httpcore2.AsyncConnectionInterface,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._connection = connection
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self._pool._release(self._connection)


class PooledResponse(_PooledStream):
    """A response of :meth:`HTTP11ConnectionPool.send_plain`, its head read: its body read whole
    or streamed (as httpcore2's response, :meth:`core_response`); closing it gives the
    connection back."""

    def __init__(
        self, body: ResponseBody, pool: HTTP11ConnectionPool, connection: HTTP11Connection
    ) -> None:
        super().__init__(cast("AsyncIterable[bytes]", body), pool, connection)
        self.body = body
        self.head = body.head

    def core_response(self) -> httpcore2.Response:
        """The response as httpcore2's pool hands it on, its stream this one."""
        return self.body.core_response(self)
