"""uvicorn's h11 protocol with a connection cap and a header deadline.

At the cap, a new connection first displaces the connection that has waited longest for its
client (idle between requests, or sending headers or a body) and has not yet been answered:
stalled clients then cost each other their slots instead of locking good requests out until
their deadlines pass. Only when every connection is being served does a newcomer get 503.

See :mod:`nomyo_native.server.limits` for what is bounded and why. This subclass keeps to
uvicorn's documented extension point (``Config(http=<protocol class>)``) and to the
attributes every uvicorn h11 protocol has had for years (``conn``, ``cycle``, ``transport``,
``connections``); the suite's slow-client tests fail if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from nomyo_native.server.limits import ConnectionLimits


def raw_response(
    status: int, reason: str, detail: str, extra: dict[str, str] | None = None
) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a ``{"detail": ...}`` body, for
    answering outside a request cycle (before headers arrived, or instead of serving)."""
    body = json.dumps({"detail": detail}).encode("ascii")
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("ascii") + b"\r\n" + body


# After answering outside a request cycle, read and drop what the client still sends for this
# long before closing: closing at once would answer its next bytes with a TCP reset, which
# can destroy the response before the client reads it (a "lingering close", as httpd does).
LINGER_SECONDS = 1.0

_TOO_MANY_CONNECTIONS = raw_response(
    503, "Service Unavailable", "too many connections; retry shortly", {"retry-after": "1"}
)
_HEADER_TIMEOUT = raw_response(408, "Request Timeout", "request headers took too long")
_EVICTED = raw_response(
    408,
    "Request Timeout",
    "the server is at its connection limit and this request was the slowest to arrive",
)


class GuardedH11Protocol(H11Protocol):
    """The h11 protocol under :attr:`limits`; :func:`guarded_protocol` makes the subclass with
    the limits of one endpoint (uvicorn instantiates the class it is given)."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Answered outside a request cycle (503 or 408): input is dropped until closed.
        self._refused = False
        # In uvicorn's connection set (counted against the cap, released on loss).
        self._registered = False
        self._header_timer: asyncio.TimerHandle | None = None
        # Armed while the send buffer is full: a client that stops reading is dropped.
        self._write_timer: asyncio.TimerHandle | None = None
        # Bytes of a next request arrived (a partial request, not an idle connection).
        self._partial_request = False
        # When the client last sent anything (or connected): the eviction order at the cap.
        self._last_input = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._evict_slowest():
            self.transport = transport
            self._answer_and_close(_TOO_MANY_CONNECTIONS)
            return
        super().connection_made(transport)
        self._registered = True
        self._last_input = self.loop.time()
        self._arm_header_timer()

    def _evict_slowest(self) -> bool:
        """Drop the connection that has waited longest for its client; False if none is
        waiting (every one is being answered)."""
        waiting = [
            other
            for other in self.connections
            if isinstance(other, GuardedH11Protocol) and other._waiting_on_client()
        ]
        if not waiting:
            return False
        min(waiting, key=lambda other: other._last_input)._evict()
        return True

    def _waiting_on_client(self) -> bool:
        """Idle, or the client still owes its request's headers or body (no answer yet)."""
        if self._refused or self.transport.is_closing():
            return False
        if self._between_requests():
            return True
        assert self.cycle is not None
        return self.conn.their_state is h11.SEND_BODY and not self.cycle.response_started

    def _evict(self) -> None:
        # The slot is the newcomer's at once, not after the lingering close.
        self.connections.discard(self)
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        if not self._between_requests():
            # The app reading this body sees a disconnect, and its answer goes nowhere.
            assert self.cycle is not None
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        elif not self._partial_request and self.conn.their_state is h11.IDLE:
            self.transport.close()  # idle: nothing to answer
            return
        self._answer_and_close(_EVICTED)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_write_timer()
        if self._registered:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._last_input = self.loop.time()
        if self._between_requests():
            self._partial_request = True
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers (or this one's unread body) get their own deadline;
        # bytes of it that came pipelined behind this request make it a partial request.
        self._partial_request = bool(self.conn.trailing_data[0])
        if not self.transport.is_closing():
            self._arm_header_timer()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_deadline)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._between_requests():
            return  # a request is being served: the app's body deadlines apply
        self._unset_keepalive_if_required()
        if self.conn.their_state is h11.IDLE and self._partial_request:
            self._answer_and_close(_HEADER_TIMEOUT)
        else:
            self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.body_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        super().resume_writing()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        # The client took nothing of the response for body_timeout: drop it and what we
        # buffered for it (abort, not close, which would wait for the buffer to drain).
        self._write_timer = None
        self.transport.abort()

    def _answer_and_close(self, response: bytes) -> None:
        self._refused = True
        transport = self.transport
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a connection cap and a header deadline (``limits``)."""

    class EndpointH11Protocol(GuardedH11Protocol):
        pass

    EndpointH11Protocol.limits = limits
    return EndpointH11Protocol
