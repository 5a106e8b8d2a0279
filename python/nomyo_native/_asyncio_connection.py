"""The asyncio protocol under each connection of the async driver: what arrives is written
into one buffer the connection keeps, and what is sent waits for the transport's flow control.

asyncio's ``StreamReader`` copies every decrypted chunk into a bytearray, copies it out again
per read and shifts the rest down; a megabyte envelope crossed it in 64 KiB reads, each under
a timeout scope of its own. As a ``BufferedProtocol`` this class lets asyncio's SSL protocol
(or the plain socket transport) decrypt or receive straight into ``_buffer``: a read takes
everything received so far in one ``bytes``, and each connection keeps one read timer,
moved only when a wait would end before it.

The buffer is fixed in size and never sized by the peer: when it is nearly full, reading
pauses until the next read empties it.

A response body of known length (``begin_body``) is received into a buffer of its own instead,
the one handed on whole to the caller: what came with the head is moved there, the rest is
decrypted straight into it. A large body's buffer is one the library keeps and reuses
(``_body_buffers``), handed on as a view of exactly the body. A buffer grows as data arrives
(at most twice what has arrived, never past the declared length), and each view handed to
asyncio ends where the body does, so nothing after the body lands in it. While it is owed, the
loop is woken once a batch of it is queued on the socket, not at every few segments
(``_rcvlowat``; plain TCP and the core's TLS, not asyncio's SSL, which holds an unknown amount).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nomyo_native import _body_buffers
from nomyo_native._asyncio_waits import ReadTimer, WriteFlow
from nomyo_native._body_buffers import BodyBuffer
from nomyo_native._http11 import make_room
from nomyo_native._rcvlowat import MAX_MARK, LowWaterMark, PlainPacing

__all__ = ["BODY_ROOM", "RECEIVE_BUFFER_SIZE", "BufferedConnection", "ReadTimedOut"]

# asyncio's SSL protocol receives at most 256 KiB from the socket at a time; room for that
# much plaintext per loop iteration. Each connection keeps one such buffer.
RECEIVE_BUFFER_SIZE = 256 * 1024
# The room a body's buffer has past what arrived, for one read of it: the core's TLS and a plain
# socket read up to this much of a body at once (``_rcvlowat``).
BODY_ROOM = MAX_MARK
# A body owing less is not paced: it comes in a read or two anyway.
_PACED_MIN = 64 * 1024
# Reading pauses when less room than one TLS record (16 KiB of plaintext) is left: asyncio's SSL
# protocol would otherwise decrypt a few bytes at a time into the tail.
_MIN_ROOM = 16 * 1024


class ReadTimedOut(Exception):
    """A read waited its whole timeout and nothing arrived."""


class BufferedConnection(WriteFlow, ReadTimer, asyncio.BufferedProtocol):
    """Receive buffer, end of stream, the error that ended the connection, write pausing."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray(RECEIVE_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        # Received bytes are _buffer[_start:_filled]: a parsed head is dropped by moving
        # _start, not by shifting what follows it (the start of a body) to the front.
        self._start = 0
        self._filled = 0
        self._reading_paused = False
        # Between start_tls's first step and its end the TCP transport is the SSL protocol's.
        self._handshaking = False
        self._reader: asyncio.Future[bool] | None = None
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self._writing_paused = False
        self._drainer: asyncio.Future[bool] | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        # The body being received (begin_body): its buffer, bytes in it, bytes owed in all.
        self._body: bytearray | None = None
        self.body_received = 0
        self._body_length = 0
        # When body bytes last arrived (loop time). The read timer is kept between waits and
        # moved only when a wait ends before it fires (see _wait_reader); the waiting read's
        # timeout, and the loop time a plain read ends at.
        self._body_arrived = 0.0
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._read_ends = 0.0
        self._waiting_body = False
        self._came_earlier = False  # the next body read takes bytes found under the mark
        # How reads are paced while a body is owed (None: not at all), and whether they are.
        self._pacing: PlainPacing | None = None
        self._batching = False

    # ---- asyncio.BufferedProtocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        mark = LowWaterMark.of(transport.get_extra_info("socket"))
        self._pacing = None if mark is None else PlainPacing(mark, BODY_ROOM)

    def begin_tls(self) -> None:
        """loop.start_tls is about to take the TCP transport over. Data that comes with the end
        of the handshake is delivered before start_tls returns: a pause it causes is kept for
        :meth:`use_tls` to give to the TLS transport (paused, the TCP transport would never be
        resumed by the SSL protocol, whose own reading would go on into a full buffer)."""
        self._handshaking = True

    def use_tls(self, tls: asyncio.Transport) -> None:
        """From now on the connection runs over ``tls`` (loop.start_tls calls no
        connection_made). At the peer's end of stream, asyncio's SSL protocol decrypts what it
        still holds into one get_buffer() and drops the rest; it stops reading the socket once
        it holds its read high-water mark, so that mark is set to what an emptied buffer takes."""
        self._handshaking = False
        self.transport = tls
        self._pacing = getattr(tls, "pacing", None)
        if self._reading_paused:
            tls.pause_reading()
        set_limits = getattr(tls, "set_read_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=len(self._buffer))

    def get_buffer(self, sizehint: int) -> memoryview:
        # Never empty: reading pauses before the room runs out (an empty buffer reads as EOF
        # to the SSL protocol and is an error to the socket transport), and a body's view is
        # handed out only while bytes are still owed.
        if self._body is not None and self.body_received < self._body_length:
            return self._body_room()
        return self._view[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None and self.body_received < self._body_length:
            self.body_received += nbytes
            if self._came_earlier:
                self._came_earlier = False  # _body_arrived is when they came
            else:
                self._body_arrived = self._loop.time()
            if self.body_received >= self._body_length:
                self._wake_reader()
            elif self._batching:
                self._pace()
            return
        self._filled += nbytes
        if len(self._buffer) - self._filled < _MIN_ROOM and self._start:
            self._compact()
        if len(self._buffer) - self._filled < _MIN_ROOM and not self._reading_paused:
            self._reading_paused = True
            if not self._handshaking:
                assert self.transport is not None
                self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # nothing more will be written after the peer's end: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake_reader()
        self._stop_read_timer()  # it holds this connection until it fires
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(True)
        if not self._closed.done():
            self._closed.set_result(None)

    # ---- reading -----------------------------------------------------------------------------

    @property
    def has_data(self) -> bool:
        return self._filled > self._start

    def pending(self) -> memoryview:
        """What has been received and not yet taken (a view valid until the next read)."""
        return self._view[self._start : self._filled]

    def consume(self, nbytes: int) -> None:
        """Drop the first ``nbytes`` pending bytes (a response head the caller has parsed)."""
        self._start += nbytes
        if self._start >= self._filled:
            self._start = self._filled = 0
        self._resume_reading()

    def _compact(self) -> None:
        """Moves the pending bytes to the front (a memoryview copies overlapping bytes with
        memmove), for room at the end."""
        rest = self._filled - self._start
        self._view[:rest] = self._view[self._start : self._filled]
        self._start, self._filled = 0, rest

    def take(self) -> bytes:
        """Everything received so far; b"" at end of stream; the connection's error if it
        ended in one (before any data left unread, as ``StreamReader`` does)."""
        if self.error is not None:
            raise self.error
        data = bytes(self._view[self._start : self._filled])
        self._start = self._filled = 0
        self._resume_reading()
        return data

    def _resume_reading(self) -> None:
        if not self._reading_paused or self.lost:
            return
        if len(self._buffer) - self._filled < _MIN_ROOM and self._start:
            self._compact()
        if len(self._buffer) - self._filled >= _MIN_ROOM:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    # ---- a body received into its own buffer ---------------------------------------------------

    def begin_body(self, length: int) -> None:
        """The next ``length`` bytes of the stream are a body: those pending move into its
        buffer, the rest is received straight into it. The caller waits with
        :meth:`wait_readable` until ``body_received == length`` (or the stream ends), then takes
        it with :meth:`end_body`."""
        taken = min(length, self._filled - self._start)
        body = (
            _body_buffers.take(length) if length > _body_buffers.POOLED_MIN_BYTES else bytearray()
        )
        _body_buffers.put_front(body, self._view[self._start : self._start + taken])
        self.consume(taken)
        self._body = body
        self.body_received = taken
        self._body_length = length
        self._batching = self._pacing is not None and length - taken > _PACED_MIN
        self._came_earlier = False

    def end_body(self) -> bytearray | memoryview:
        """The bytes received (the whole body once ``body_received`` reached its length): a
        kept buffer as a view of exactly them, else the buffer, which never grows past the
        body. Receiving goes back to the connection's own buffer."""
        body, self._body = self._body, None
        assert body is not None
        if self._batching:
            self._batching = False
            self._pace()
        if type(body) is BodyBuffer:
            return _body_buffers.hand_on(body, self.body_received)
        return body

    def _body_room(self) -> memoryview:
        """A view of the body buffer from its first empty byte to at most the body's end, with
        room for one read of it."""
        assert self._body is not None
        body = self._body = make_room(self._body, self.body_received, self._body_length, BODY_ROOM)
        return memoryview(body)[self.body_received : self._body_length]

    async def wait_readable(self, timeout: float | None, beyond: int = 0) -> None:
        """Until more than ``beyond`` bytes are pending (or a body's buffer gets any), the
        stream ends or fails; ReadTimedOut after ``timeout``."""
        if self._filled - self._start > beyond or self.eof or self.error is not None:
            return
        await self._wait_reader(timeout, body=False)

    async def wait_body(self, timeout: float | None) -> None:
        """Until the body begun with :meth:`begin_body` is all in, or the stream ends or fails:
        the reader is woken once, not at every chunk decrypted into the body (a megabyte body
        came in some six chunks, each a wake-up and a loop iteration). ReadTimedOut once
        nothing has arrived for ``timeout`` seconds."""
        if self.body_received >= self._body_length or self.eof or self.error is not None:
            return
        self._body_arrived = self._loop.time()
        if self._batching:
            self._pace()
        await self._wait_reader(timeout, body=True)

    async def _wait_reader(self, timeout: float | None, body: bool) -> None:
        if self._reader is not None:
            # One waiter at a time: a second would orphan the first, which then waits forever.
            raise RuntimeError("another read is already waiting on this connection")
        reader = self._reader = self._loop.create_future()
        self._read_timeout = timeout
        self._waiting_body = body
        if timeout is not None:
            self._arm_read_timer(self._loop.time() + timeout)
        try:
            arrived = await reader
        finally:
            self._reader = None
        if not arrived:
            raise ReadTimedOut(f"timed out after {timeout} s")

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(True)

    # ---- closing -------------------------------------------------------------------------------

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def extra(self, name: str) -> Any:
        return None if self.transport is None else self.transport.get_extra_info(name)
