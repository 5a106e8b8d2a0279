"""The sync driver's attempt deadline, kept by every wait of its network streams (``_sync_stream``
over OpenSSL, ``_sync_core_tls`` over the core's TLS), and the most one of their reads returns.

The whole-attempt deadline lives in a context variable set by the driver around one attempt:
every wait for a pooled connection (``_sync_pool``), name lookup (``_resolver``), connect, TLS
handshake, write and read gets at most the time the attempt has left, so neither a peer
trickling a byte at a time, nor a resolver that never answers, nor a pool whose connections are
all busy can hold a request past its deadline.
"""

from __future__ import annotations

import contextvars
import time

__all__ = ["ATTEMPT_ENDS", "READ_AHEAD", "DeadlineExceeded", "bounded", "check_deadline"]

# The most one read of a connection returns: what a TLS connection has already received is
# gathered up to this much per trip through the HTTP layers.
READ_AHEAD = 128 * 1024

# When the running attempt must end (time.monotonic()), or None: no deadline.
ATTEMPT_ENDS: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "nomyo_native_attempt_ends", default=None
)


class DeadlineExceeded(TimeoutError):
    """The attempt used up its deadline (the builtin TimeoutError, as in the async driver)."""


def bounded(timeout: float | None, on_timeout: type[Exception]) -> float | None:
    """``timeout`` cut to what the running attempt has left; raises ``on_timeout`` if none."""
    ends = ATTEMPT_ENDS.get()
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise on_timeout("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


def check_deadline() -> None:
    """Between two chunks of a body: a caller's transport has no socket for the deadline to
    bound (``httpx2.MockTransport``, a test double streaming from a generator), so a body
    trickling through it is cut here, as ``wait_for`` cuts it on the async driver."""
    bounded(None, DeadlineExceeded)
