"""Bounds on what slow or idle clients can hold: time, connections and buffered body bytes.

uvicorn alone bounds none of them: a client that never finishes its headers, trickles its
body, or never completes a TLS handshake keeps a connection (and up to a whole body in
memory) for as long as it likes. Here:

- the TLS handshake must finish within ``tls_handshake_timeout`` (asyncio's default is 60 s);
- a request's headers must arrive within ``header_timeout`` of the connection opening or of
  the previous response (a partial request gets 408, an idle connection is closed);
- the body may pause at most ``body_timeout`` between chunks and must be complete within
  ``request_timeout`` of the headers (408, then the connection is closed); a client that
  takes nothing of its response for ``body_timeout`` loses the connection;
- at most ``max_connections`` connections are held at once; a newcomer beyond that displaces
  the connection that has waited longest for its client (idle, or still sending headers or a
  body: 408 if a request was under way), and gets 503 only when every connection is being
  answered;
- at most ``max_inflight_body_bytes`` of request bodies are buffered at once across all
  requests; a request that would exceed it gets 503 with ``Retry-After``.

The connection-level parts live in :mod:`nomyo_native.server.protocol` (uvicorn's h11
protocol, guarded); the body parts in :class:`BodyBudget` and the app's body reader. This
module imports nothing of the server extra, so the CLI can show its defaults in ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 15.0
# A 16 MiB body in 120 s needs about 140 KB/s.
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_INFLIGHT_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds described in the module docstring (seconds, counts, bytes)."""

    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY_BYTES

    def __post_init__(self) -> None:
        for name in ("tls_handshake_timeout", "header_timeout", "body_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_inflight_body_bytes < 1:
            raise ValueError("max_inflight_body_bytes must be positive")


class BodyBudget:
    """Request-body bytes buffered at once, across all requests of one event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) when that would exceed the limit."""
        if self.in_use + size > self.limit:
            return False
        self.in_use += size
        return True

    def give_back(self, size: int) -> None:
        self.in_use -= size
