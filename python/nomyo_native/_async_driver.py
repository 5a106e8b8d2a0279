"""The async driver: send one attempt, read its body raw and capped within a deadline, sleep.

It decides nothing (the client does, with ``_protocol`` and ``_retry``). Connections and
asyncio locks belong to one event loop, so each loop that uses a client gets its own pool.
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

from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._http_body import LIMITS, Answer, answer_head, read_raw_capped
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES
from nomyo_native.errors import ClientClosedError, ResponseFormatError

__all__ = ["AsyncDriver"]


@dataclass
class _LoopState:
    """Per-event-loop resources: httpx2 connections and asyncio locks belong to one loop."""

    http: httpx2.AsyncClient
    server_key_lock: asyncio.Lock


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
                state = self._states[loop] = _LoopState(http, asyncio.Lock())
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
        http = self.state().http
        # A timeout scope, not wait_for: that runs the attempt as a task of its own, one more
        # task and hand-off per request.
        async with asyncio.timeout(deadline):
            return await self._attempt(http, method, url, headers, content, ok_cap)

    @staticmethod
    async def _attempt(
        http: httpx2.AsyncClient,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        ok_cap: int,
    ) -> Answer:
        async with http.stream(method, url, headers=headers, content=content) as response:
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
        return Answer(status, data, retry_after)

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
