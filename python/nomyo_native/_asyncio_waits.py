"""The waits of an asyncio connection (``_asyncio_connection``), as mixins over its state: a
write waits while the transport has paused writing, and a read waits under one timer per
connection, moved only when a wait would end before it fires (a call_later and a cancel per
wait cost some 5 us each).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nomyo_native._rcvlowat import PlainPacing

__all__ = ["BodyPacing", "ReadTimer", "WriteFlow", "expire"]


class WriteFlow:
    """The write half's flow control: asyncio's transport pauses and resumes the protocol, and
    a write waits while it is paused."""

    _loop: asyncio.AbstractEventLoop
    _writing_paused: bool
    _drainer: asyncio.Future[bool] | None
    lost: bool
    error: BaseException | None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(True)

    @property
    def must_wait_to_write(self) -> bool:
        return self._writing_paused or self.lost

    async def wait_writable(self, ends: float | None) -> None:
        """Until the transport takes more (ConnectionResetError if the connection is gone;
        TimeoutError at the loop time ``ends``)."""
        while self._writing_paused and not self.lost:
            if self._drainer is not None:
                raise RuntimeError("another write is already waiting on this connection")
            left = None if ends is None else ends - self._loop.time()
            if left is not None and left <= 0:
                raise TimeoutError
            drainer = self._drainer = self._loop.create_future()
            timer = None if left is None else self._loop.call_later(left, expire, drainer)
            try:
                await drainer
            finally:
                self._drainer = None
                if timer is not None:
                    timer.cancel()
        if self.lost:
            raise self.error if self.error is not None else ConnectionResetError("connection lost")


class BodyPacing:
    """While a body is owed, reads wait for a batch of it (``_rcvlowat``): the pacing is set at
    each read of it and when its wait begins, and set back once it is in or its timer is due."""

    transport: asyncio.Transport | None
    error: BaseException | None
    body_received: int
    _body_length: int
    # How reads are paced while a body is owed (None: not at all), and whether they are.
    _pacing: PlainPacing | None
    _batching: bool

    def _wake_reader(self) -> None:
        raise NotImplementedError  # the connection's

    def _pace(self) -> None:
        """The reads' pacing for what the body still owes (nothing, once not batching)."""
        assert self._pacing is not None
        try:
            self._pacing.expect(self._body_length - self.body_received if self._batching else 0)
        except OSError as exc:
            self._pacing_failed(exc)

    def _unbatch(self) -> float | None:
        """No more batching for this body (its read timer is due): how long ago bytes queued
        under the mark came, None if none are."""
        if not self._batching:
            return None
        self._batching = False
        assert self._pacing is not None
        try:
            return self._pacing.unbatch()
        except OSError as exc:
            self._pacing_failed(exc)
            return None

    def _pacing_failed(self, exc: OSError) -> None:
        """A mark that cannot be set back fails the connection: it must not be reused."""
        self._batching = False
        if self.error is None:
            self.error = exc
        assert self.transport is not None
        self.transport.abort()
        self._wake_reader()


class ReadTimer(BodyPacing):
    """The read half's timer: one per connection, not one created and cancelled per wait. A
    timer due before a wait ends is kept (when it fires it is set again for what is left), one
    due after is replaced; a timer that fires with no read waiting just lapses."""

    _loop: asyncio.AbstractEventLoop
    _reader: asyncio.Future[bool] | None
    _read_timer: asyncio.TimerHandle | None
    _read_timeout: float | None
    _read_ends: float
    _waiting_body: bool
    _body_arrived: float
    _came_earlier: bool

    def _arm_read_timer(self, ends: float) -> None:
        self._read_ends = ends
        timer = self._read_timer
        if timer is None or timer.when() > ends or timer.cancelled():
            if timer is not None:
                timer.cancel()
            self._read_timer = self._loop.call_at(ends, self._on_read_timer)

    def _stop_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _on_read_timer(self) -> None:
        """The read timer fired: the waiting read (if any, with a timeout) ends in a timeout if
        its time is up, else the timer is set again for when it will be."""
        fired, self._read_timer = self._read_timer, None
        reader, timeout = self._reader, self._read_timeout
        if reader is None or reader.done() or timeout is None or fired is None:
            return
        if self._waiting_body:
            self._body_idle(reader, timeout)
        elif self._read_ends <= fired.when():
            expire(reader)
        else:
            self._read_timer = self._loop.call_at(self._read_ends, self._on_read_timer)

    def _body_idle(self, reader: asyncio.Future[bool], timeout: float) -> None:
        """A body wait's timer: expired only if nothing arrived for ``timeout`` seconds, else
        set again for what is left of that since the last bytes came."""
        now = self._loop.time()
        left = self._body_arrived + timeout - now
        if left <= 0:
            # Bytes queued under the low-water mark came unseen: they count from when they came,
            # also when the next read takes them.
            idle = self._unbatch()
            if idle is not None and now - idle > self._body_arrived:
                self._body_arrived, self._came_earlier = now - idle, True
                left = self._body_arrived + timeout - now
        if left > 0 and not reader.done():
            self._read_timer = self._loop.call_later(left, self._on_read_timer)
        else:
            expire(reader)


def expire(waiter: asyncio.Future[Any]) -> None:
    """A timer's end: the waiter wakes with False (nothing arrived, not writable yet)."""
    if not waiter.done():
        waiter.set_result(False)
