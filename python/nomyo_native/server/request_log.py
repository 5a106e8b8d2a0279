"""The method and path of every request the endpoint received, for tests.

Tests of clients that sit under other software (the openai SDK transport) check that nothing
reached the server outside the protocol's paths. Only the request line is kept (method and
path, never headers, query values or bodies), in a bounded ring, so it is always on.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

# The most request lines kept; older ones are forgotten.
MAX_REQUEST_LINES = 4096


class RequestLog:
    """Thread-safe ring of ``(method, path)`` pairs, oldest first."""

    def __init__(self, limit: int = MAX_REQUEST_LINES) -> None:
        self._lock = threading.Lock()
        self._lines: deque[tuple[str, str]] = deque(maxlen=limit)

    def add(self, method: str, path: str) -> None:
        with self._lock:
            self._lines.append((method, path))

    @property
    def lines(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._lines)

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()


class RequestLogMiddleware:
    """ASGI middleware adding each HTTP request's method and path to a :class:`RequestLog`."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.log.add(str(scope.get("method", "")), str(scope.get("path", "")))
        await self.app(scope, receive, send)


def request_log_of(state: Any) -> RequestLog:
    """The endpoint state's request log."""
    log = getattr(state, "request_log", None)
    if not isinstance(log, RequestLog):
        raise RuntimeError("this endpoint keeps no request log")
    return log
