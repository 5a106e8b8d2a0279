"""The receive low-water mark (``SO_RCVLOWAT``) of a TCP socket: while a body of known length is
being received, the reader is woken once a batch of it is queued, not at every few segments.

Without it the event loop (or a blocking ``poll``) wakes as soon as anything is queued: over a
network a megabyte body trickles in and every wake-up costs a loop turn, a read and a context
switch. With the mark at the bytes the body still certainly owes (capped), one wake-up takes a
whole batch. The end of stream and a reset still wake the reader at once (the kernel reports
them whatever the mark), and the mark goes back to 1 as soon as the body is in: an idle
connection in the pool must look readable at its first byte.

Linux honours the mark in poll/epoll for TCP and grows the receive buffer to hold it; macOS and
the BSDs honour it in select/poll/kqueue. Windows does not let it be set: a socket whose
``setsockopt`` fails is left alone from then on.

The mark hides bytes queued under it, so a read timeout measured from the last wake-up would
count a slow but live peer as idle: :meth:`LowWaterMark.idle_since_arrival` says whether bytes
are queued and how long ago they came, for the caller to stop batching and count them.
"""

from __future__ import annotations

import array
import socket
import struct
import sys
from typing import Any, Protocol

__all__ = ["MAX_MARK", "LowWaterMark", "PlainPacing", "TlsPacing"]

# The largest batch: a megabyte body in one or two wake-ups, while the kernel holds no more than
# this for a sleeping reader.
MAX_MARK = 1024 * 1024

_AVAILABLE = hasattr(socket, "SO_RCVLOWAT") and sys.platform != "win32"
# Linux grows a socket's receive buffer to hold its mark (tcp_set_rcvlowat); elsewhere the mark
# is kept to half of the buffer as it is.
_GROWS_BUFFER = sys.platform.startswith("linux")
# The most TLS bytes a session can hold of a record not yet complete (TLS 1.2's largest).
_PARTIAL_RECORD = 5 + 16 * 1024 + 2048

# Linux: struct tcp_info's tcpi_last_data_recv (ms since data last arrived), an append-only ABI.
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_INFO_SIZE = 104
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 52

if sys.platform != "win32":
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
else:  # pragma: no cover - the mark is never set there
    _FIONREAD = None


class _Socket(Protocol):
    """A socket, or asyncio's TransportSocket over one."""

    def fileno(self) -> int: ...
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...
    def getsockopt(self, level: int, option: int, buflen: int = ..., /) -> Any: ...


class LowWaterMark:
    """The receive low-water mark of one TCP socket: :meth:`set` it to the bytes certain to come
    before the reader can use any, :meth:`reset` it once they are in."""

    __slots__ = ("_sock", "value")

    def __init__(self, sock: _Socket) -> None:
        self._sock: _Socket | None = sock
        self.value = 1  # the kernel's default: the reader wakes at the first byte

    @classmethod
    def of(cls, sock: Any) -> LowWaterMark | None:
        """The mark of ``sock`` (a TCP socket, or asyncio's wrapper of one); None where the mark
        is not available (Windows, no socket, not TCP)."""
        if not _AVAILABLE or sock is None:
            return None
        if getattr(sock, "type", None) != socket.SOCK_STREAM:
            return None
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return None  # a Unix socket's mark means something else, and it never trickles
        return cls(sock)

    @property
    def available(self) -> bool:
        return self._sock is not None

    def set(self, nbytes: int) -> None:
        """Wakes the reader only once ``nbytes`` are queued (at most :data:`MAX_MARK`; 1: at the
        first byte), or at the end of stream."""
        value = max(1, min(nbytes, MAX_MARK))
        sock = self._sock
        if sock is None:
            return
        try:
            if value > 1 and not _GROWS_BUFFER:
                # A mark past half the receive buffer would sleep with the window nearly shut.
                receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                value = max(1, min(value, int(receive_buffer) // 2))
            if value == self.value:
                return
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
        except OSError:
            # Not settable here: the mark stays what it was (1, if it never took).
            self._sock = None
            if self.value != 1:
                raise
            return
        self.value = value

    def reset(self) -> None:
        """Back to waking at the first byte. OSError if that fails (the socket then must not be
        reused: it could look idle with bytes queued)."""
        self.set(1)

    def drop(self) -> float | None:
        """Back to 1 (the reader's timer is due: what is queued under the mark must count):
        how long ago bytes queued under it came, None if none are."""
        idle = self.idle_since_arrival()
        self.reset()
        return idle

    def idle_since_arrival(self) -> float | None:
        """Seconds since data last reached the receive queue, if bytes are queued unread (the
        reader, its mark not reached, was not woken for them); None if none are. Where the
        kernel does not say when they came (not Linux), they count as just arrived: 0.0."""
        sock = self._sock
        if sock is None or _FIONREAD is None:
            return None
        queued = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), _FIONREAD, queued)
        except OSError:
            return None
        if queued[0] <= 0:
            return None
        if _TCP_INFO is None:
            return 0.0
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
        except OSError:
            return 0.0
        if len(info) < _LAST_DATA_RECV_OFFSET + _LAST_DATA_RECV.size:
            return 0.0
        (milliseconds,) = _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)
        return float(milliseconds) / 1000.0


class PlainPacing:
    """How a plain TCP connection's reads are paced while a body is owed: every byte of it
    still comes through the socket, so the mark is set at what is owed (capped by one read)."""

    __slots__ = ("_cap", "_mark")

    def __init__(self, mark: LowWaterMark | None, cap: int) -> None:
        self._mark = mark
        self._cap = cap

    def expect(self, owed: int) -> None:
        """The reader can use nothing before ``owed`` more bytes (0: anything, at once).
        OSError if the mark cannot be set back (the socket must then not be reused)."""
        if self._mark is not None:
            self._mark.set(min(owed, self._cap))

    @property
    def batching(self) -> bool:
        """The mark is above 1: the reader is woken only for a batch."""
        return self._mark is not None and self._mark.value > 1

    def unbatch(self) -> float | None:
        """The mark back to 1, for the read timer (bytes queued under it must count): how long
        ago bytes queued under it came, None if none are."""
        return None if self._mark is None else self._mark.drop()


class _Session(Protocol):
    @property
    def plaintext_pending(self) -> int: ...


class TlsPacing(PlainPacing):
    """As :class:`PlainPacing`, over the core's TLS session: what the session holds (plaintext,
    a partial record) came off the socket already, so the mark is set that much lower. Reads
    grow to take the rest of the body at once (up to ``body_read``), and no more: what follows
    the body is not owed, and waits undecrypted on the socket."""

    __slots__ = ("_base_read", "_body_read", "_session", "read_size")

    def __init__(
        self, mark: LowWaterMark | None, session: _Session, read: int, body_read: int
    ) -> None:
        super().__init__(mark, body_read)
        self._session = session
        self._base_read = self.read_size = read
        self._body_read = body_read

    def set_read_size(self, size: int) -> None:
        """The size of a read while no body is owed."""
        self._base_read = self.read_size = size

    def expect(self, owed: int) -> None:
        if owed <= 0:
            self.read_size = self._base_read
            super().expect(0)
            return
        self.read_size = min(self._body_read, max(self._base_read, owed + _PARTIAL_RECORD))
        coming = owed - self._session.plaintext_pending - _PARTIAL_RECORD
        if self._mark is not None:
            self._mark.set(min(coming, self.read_size))
