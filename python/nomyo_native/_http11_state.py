"""An HTTP/1.1 connection's state as httpcore2's pool asks for it, shared by the async and the
sync driver's connections (``_async_http11``, ``_sync_http11``); no I/O.

A connection is made on its first request (NEW), carries one exchange at a time (ACTIVE),
waits in the pool between them (IDLE, until its keep-alive expiry or until the server closes
it or sends what nobody asked for) and is CLOSED on anything it cannot prove clean.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Any

import httpcore2

from nomyo_native._http11 import Exchange, ResponseHead

__all__ = ["ConnectionState", "tracing_wanted"]

# httpcore2's loggers: a caller debugging the transport sees the steps it saw before, in
# httpcore2's words (no header values: a request's may carry a bearer token).
_HTTP11_LOG = logging.getLogger("httpcore2.http11")
_CONNECTION_LOG = logging.getLogger("httpcore2.connection")


def _debug(logger: logging.Logger, event: str, info: dict[str, Any]) -> None:
    """One of httpcore2's trace lines: ``event`` and its ``key=repr`` arguments."""
    if logger.isEnabledFor(logging.DEBUG):
        args = " ".join(f"{key}={value!r}" for key, value in info.items())
        logger.debug(f"{event} {args}" if args else event)


def tracing_wanted() -> bool:
    """Whether httpcore2's trace lines are logged: an attempt then goes the way that logs
    them (with the request they name)."""
    return _HTTP11_LOG.isEnabledFor(logging.DEBUG) or _CONNECTION_LOG.isEnabledFor(logging.DEBUG)


class _State(enum.IntEnum):
    NEW = 0
    ACTIVE = 1
    IDLE = 2
    CLOSED = 3


class ConnectionState:
    """The bookkeeping half of a connection: its subclass owns ``_stream`` (None until the
    connection is made) and does the I/O."""

    _stream: Any

    def __init__(self, origin: httpcore2.Origin, keepalive_expiry: float | None) -> None:
        self._origin = origin
        self._keepalive_expiry = keepalive_expiry
        self._state = _State.NEW
        self._expire_at: float | None = None
        self._request_count = 0
        # The sync pool's threads may race for a connection (the async pool's tasks cannot,
        # but the lock costs nothing there).
        self._state_lock = threading.Lock()
        # Whether this exchange's steps are logged (checked once per exchange: cheap when not).
        self.tracing = False

    def _begin_exchange(self, origin: httpcore2.Origin, usable: bool, traced: bool = True) -> bool:
        """Takes the connection for one exchange if it is new or idle (else
        ConnectionNotAvailable: the pool then tries another). An idle one that is not
        ``usable`` (something unread, or the server closed it) is marked closed instead:
        False, and the caller closes it and raises ConnectionNotAvailable. ``traced``: whether
        the exchange's steps may be logged (see :func:`tracing_wanted`)."""
        if not self.can_handle_request(origin):
            raise RuntimeError(
                f"Attempted to send request to {origin} on connection to {self._origin}"
            )
        with self._state_lock:
            if self._state not in (_State.NEW, _State.IDLE):
                raise httpcore2.ConnectionNotAvailable()
            if not usable:
                self._state = _State.CLOSED
                return False
            self._state = _State.ACTIVE
            self.tracing = traced and _HTTP11_LOG.isEnabledFor(logging.DEBUG)
            self._request_count += 1
            self._expire_at = None
            return True

    def _end_exchange(
        self, exchange: Exchange, head: ResponseHead, read: bool, stream_clean: bool
    ) -> bool:
        """The exchange is over (``read``: its body was received to the end). True when the
        connection goes back to the pool; False when it must be closed: the request sent
        whole, the body read to its end with nothing after it, keep-alive on both sides."""
        reusable = (
            read
            and exchange.request_complete
            and head.keep_alive
            and (head.length is not None or exchange.h11_cycle_complete)
            and stream_clean
        )
        with self._state_lock:
            if not reusable or self._state is not _State.ACTIVE:
                self._state = _State.CLOSED
                return False
            self._state = _State.IDLE
            if self._keepalive_expiry is not None:
                self._expire_at = time.monotonic() + self._keepalive_expiry
            return True

    def trace(self, event: str, **info: Any) -> None:
        """An exchange's step at DEBUG on ``httpcore2.http11``, as httpcore2 logged it (the
        caller checks :attr:`tracing` first)."""
        _debug(_HTTP11_LOG, event, info)

    def _trace_connect(self, event: str, **info: Any) -> None:
        """A connect step at DEBUG on ``httpcore2.connection``."""
        _debug(_CONNECTION_LOG, event, info)

    def _mark_closed(self) -> None:
        self._state = _State.CLOSED

    # ---- what httpcore2's pool asks ----------------------------------------------------------

    def can_handle_request(self, origin: httpcore2.Origin) -> bool:
        return origin == self._origin

    def is_connected(self) -> bool:
        return self._stream is not None and self._state is not _State.CLOSED

    def is_available(self) -> bool:
        return self._state is _State.IDLE

    def has_expired(self) -> bool:
        if self._stream is None:
            return self._state is _State.CLOSED  # the connect failed
        expire_at = self._expire_at
        if expire_at is not None and time.monotonic() > expire_at:
            return True
        # Idle yet readable: the server closed it (or sent what nobody asked for).
        return self._state is _State.IDLE and bool(self._stream.get_extra_info("is_readable"))

    def is_idle(self) -> bool:
        if self._stream is None:
            return self._state is _State.CLOSED
        return self._state is _State.IDLE

    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def info(self) -> str:
        if self._stream is None:
            return "CONNECTION FAILED" if self._state is _State.CLOSED else "CONNECTING"
        origin = str(self._origin)
        return f"{origin!r}, HTTP/1.1, {self._state.name}, Request Count: {self._request_count}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.info()}]>"
