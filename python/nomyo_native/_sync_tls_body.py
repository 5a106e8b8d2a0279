"""The sync driver's TLS stream (``_sync_core_tls``) receiving a body of known length straight
into its buffer (``receiver()``), each wait woken only once the socket holds a batch of what must
still come of it (the receive low-water mark, ``_rcvlowat``), not at every few segments.

The mark hides the bytes queued under it: when a wait runs out, bytes that came unseen count as
if read when they came (the kernel says when, on Linux): the mark goes back to 1, they are
taken, and the next wait ends a whole timeout after they came, as it would have unbatched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpcore2

from nomyo_native import _core
from nomyo_native._rcvlowat import TlsPacing

__all__ = ["PacedBodyReceive"]


class PacedBodyReceive:
    """A mixin of the stream's state: the body receive and its pacing."""

    _session: _core.TlsSession
    _lock: threading.Lock
    _failure: Exception | None
    _ended: bool
    _into: memoryview | None
    _written_into: int
    # While a body is received: the socket's low-water mark at what must still come of it,
    # unless a wait ran out with bytes under it (then the end of the wait after them).
    _pacing: TlsPacing
    _batching: bool
    _wait_ends: float | None

    def _pull(self, timeout: float | None, wait: bool = True) -> bool:
        raise NotImplementedError

    def receiver(self) -> Callable[[memoryview, float | None], int]:
        """For the HTTP/1.1 layer (``_sync_http11``): a receive straight into a body's buffer."""
        return self._receive_into

    def _receive_into(self, view: memoryview, timeout: float | None) -> int:
        """Decrypts into ``view`` until it is full or the stream ends: the bytes received, 0 at
        the end of stream. Each wait is bound by ``timeout`` and the attempt's deadline, and
        woken only once the socket holds what must still come for ``view`` (or the end)."""
        session = self._session
        received, size = 0, len(view)
        self._batching, self._wait_ends = True, None
        try:
            while received < size:
                if session.plaintext_pending:
                    with self._lock:
                        received += session.read_into(view[received:] if received else view)
                elif self._failure is not None:
                    raise self._failure
                elif self._ended or session.peer_closed:
                    break
                else:
                    self._into, self._written_into = view[received:], 0
                    try:
                        self._pull_body(size - received, timeout)
                    finally:
                        self._into = None  # never a buffer the caller is done with
                    received += self._written_into
        finally:
            self._pace(0)  # the mark back to 1: the pool's idle check polls this socket
        return received

    def _pull_body(self, owed: int, timeout: float | None) -> None:
        """One wait for ``owed`` bytes of a body, woken once the socket holds what must come of
        them. At the timeout, bytes queued under the mark count as if read when they came: the
        mark goes back to 1, they are taken, and the next wait ends ``timeout`` after they came
        (a ReadTimeout now, if that has passed)."""
        if self._wait_ends is not None:
            left = self._wait_ends - time.monotonic()
            self._wait_ends = None
            if left <= 0:
                raise httpcore2.ReadTimeout("timed out")
            self._pull(left)
            return
        if not (self._batching and self._pace(owed)):
            self._pull(timeout)
            return
        try:
            self._pull(timeout)
        except httpcore2.ReadTimeout:
            self._batching = False  # for the rest of this receive
            idle = self._pacing.unbatch()
            if idle is None or timeout is None or idle >= timeout:
                raise  # nothing came unseen, or it came a whole timeout ago
            self._wait_ends = time.monotonic() - idle + timeout
            self._pull(timeout, wait=False)

    def _pace(self, owed: int) -> bool:
        """The mark for ``owed`` bytes of a body (0: none owed): whether it is above 1. A mark
        that cannot be set back fails the stream: it must not be reused."""
        try:
            self._pacing.expect(owed)
        except OSError as exc:
            failure = httpcore2.ReadError(str(exc) or type(exc).__name__)
            failure.__cause__ = failure.__context__ = exc
            self._failure = failure
            raise failure from exc
        return self._pacing.batching
