"""The async driver: send one attempt, read its body raw and capped within a deadline, sleep.

It decides nothing (the client does, with ``_protocol`` and ``_retry``). Connections and
asyncio locks belong to one event loop, so each loop that uses a client gets its own pool.

Each attempt goes straight to the pool's transport (``handle_async_request``, httpx2's public
transport API) with a request built as ``httpx2.AsyncClient`` builds it from its settings
(:class:`_Sender`, on ``_http_request``): the client's per-request layers (URL merging and
parsing, header and cookie merging, the auth and redirect generators, event hooks, the bound
response stream) cost about 0.2 ms of CPU per small request and did nothing this client uses
beyond that.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from nomyo_native import _async_direct
from nomyo_native._async_direct import DirectExchange
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._http_body import LIMITS, Answer, answer_head, read_raw_capped
from nomyo_native._http_request import RequestBuilder
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES
from nomyo_native.errors import ClientClosedError, ResponseFormatError

__all__ = ["AsyncDriver"]


class _Sender:
    """Sends requests as ``http`` would (its default headers, timeouts, cookie jar and Basic
    auth; redirects not followed, no event hooks: the driver's client sets none), straight to
    ``transport``; to the pool of our own transport without httpx2's models when the request's
    head is built here (``_async_direct``)."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        transport: httpx2.AsyncBaseTransport,
        auth: httpx2.BasicAuth | None,
    ) -> None:
        self._http = http
        self._transport = transport
        self._requests = RequestBuilder(http, auth)
        # Exactly ours: a subclass (or a caller's transport) may change what a request does.
        self._direct = (
            DirectExchange(transport.pool, self._requests)
            if type(transport) is AsyncioTLSTransport and _async_direct.AVAILABLE
            else None
        )

    async def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None, ok_cap: int
    ) -> Answer:
        """One attempt: the answer, its body read within ``ok_cap`` (a 200's) or the error
        bodies' cap, and the response closed."""
        if self._direct is not None:
            if self._http.is_closed:
                raise ClientClosedError("the client is closed")
            parsed = self._requests.url(url)
            head = self._requests.plain_head(parsed, headers, content)
            if head is not None:
                assert content is not None
                answer = await self._direct.send(method, url, head, content, ok_cap)
                if isinstance(answer, Answer):
                    return answer
                return await _read_answer(answer, ok_cap)
        return await _read_answer(await self.open(method, url, headers, content), ok_cap)

    async def open(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> httpx2.Response:
        """The response with its head read; the caller closes it."""
        if self._http.is_closed:
            raise ClientClosedError("the client is closed")
        request = self._requests.build(method, url, headers, content)
        if not isinstance(request.stream, httpx2.AsyncByteStream):
            # A body that is not bytes (a caller's sealer): refused as httpx2's client does.
            raise RuntimeError("Attempted to send a sync request with an AsyncClient instance.")
        try:
            response = await self._transport.handle_async_request(request)
        except httpx2.RequestError as exc:
            exc.request = request  # as httpx2's client attaches it
            raise
        self._requests.received(request, response)
        return response


async def _read_answer(response: httpx2.Response, ok_cap: int) -> Answer:
    """The answer of ``response`` (its head read), then closed on every path."""
    try:
        status = response.status_code
        retry_after, readable = answer_head(response)
        if not readable:
            return Answer(status, b"", retry_after)
        try:
            data = await read_raw_capped(
                response, ok_cap if status == 200 else MAX_ERROR_BODY_BYTES
            )
        except ResponseFormatError:
            if status == 200:
                raise
            data = b""  # an oversized error body: the status says enough
    finally:
        # On every path, cancellation included: the connection goes back to the pool, or
        # is closed when its response was not read to the end.
        await response.aclose()
    return Answer(status, data, retry_after)


@dataclass
class _LoopState:
    """Per-event-loop resources: httpx2 connections and asyncio locks belong to one loop."""

    http: httpx2.AsyncClient
    server_key_lock: asyncio.Lock
    sender: _Sender


class AsyncDriver:
    """httpx2.AsyncClient pools, one per event loop, over the native TLS transport (or the
    caller's ``transport``)."""

    def __init__(
        self,
        *,
        timeout: float | httpx2.Timeout | None,
        ssl_context: ssl.SSLContext | None,
        auth: httpx2.BasicAuth | None,
        transport: httpx2.AsyncBaseTransport | None,
        sleep: Callable[[float], Awaitable[Any]] | None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx2.AsyncBaseTransport):
            # Refused now, as the sync driver refuses an async one: httpx2 would only fail at
            # the first request, with an AttributeError naming its internals.
            raise TypeError(
                "the asynchronous client needs an asynchronous httpx2 transport "
                "(an httpx2.AsyncBaseTransport, e.g. httpx2.MockTransport)"
            )
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._auth = auth
        self._transport = transport
        self.sleep: Callable[[float], Awaitable[Any]] = (
            sleep if sleep is not None else asyncio.sleep
        )
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.closed = False
        # Pools being closed by close() on their own running loop: the loop keeps only a weak
        # reference to a task, so one waiting on a future nothing else holds could be collected
        # before the connections are closed.
        self._closing: set[asyncio.Task[None]] = set()

    def state(self) -> _LoopState:
        """The running loop's pool and locks, made on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                if self.closed:
                    raise ClientClosedError("the client is closed")
                # Ours unless the caller gave one: TLS in asyncio's SSL transport (see
                # nomyo_native._asyncio_tls_backend).
                transport = self._transport or AsyncioTLSTransport(self._ssl_context, LIMITS)
                http = httpx2.AsyncClient(
                    timeout=self._timeout,
                    verify=self._ssl_context if self._ssl_context is not None else True,
                    auth=self._auth,
                    follow_redirects=False,
                    transport=transport,
                    limits=LIMITS,
                )
                sender = _Sender(http, transport, self._auth)
                state = self._states[loop] = _LoopState(http, asyncio.Lock(), sender)
            return state

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        ok_cap: int,
        deadline: float | None,
    ) -> Answer:
        """One attempt within ``deadline`` seconds (TimeoutError past it)."""
        sender = self.state().sender
        # A timeout scope, not wait_for: that runs the attempt as a task of its own, one more
        # task and hand-off per request.
        async with asyncio.timeout(deadline):
            return await sender.send(method, url, headers, content, ok_cap)

    def _take_states(self) -> list[tuple[asyncio.AbstractEventLoop, _LoopState]]:
        with self._lock:
            self.closed = True
            taken = list(self._states.items())
            self._states.clear()
        return taken

    async def aclose(self) -> None:
        current = asyncio.get_running_loop()
        for loop, state in self._take_states():
            if loop is current:
                await state.http.aclose()
            elif not loop.is_closed():
                asyncio.run_coroutine_threadsafe(state.http.aclose(), loop)

    def close(self) -> None:
        """Close every loop's pool from synchronous code."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, state in self._take_states():
            if loop.is_closed():
                continue
            if loop is running:
                task = loop.create_task(state.http.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(state.http.aclose(), loop)
            else:
                loop.run_until_complete(state.http.aclose())
