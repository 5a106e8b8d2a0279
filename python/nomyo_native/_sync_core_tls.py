"""The sync driver's TLS over the core: an httpcore2 network stream over a blocking socket and a
core ``TlsSession`` (rustls on aws-lc-rs). The socket moves TLS bytes; the session parses the
records, decrypts into the caller's buffers and encrypts what is written, so no OpenSSL runs
and the traffic keys stay in the core.

It behaves as ``_sync_stream.DeadlineStream`` over an ``ssl.SSLSocket`` does: each wait is bound
by its timeout and what the attempt has left of its deadline (``_sync_deadline``); a read hands
over everything already decrypted and what the socket holds now, up to ``READ_AHEAD``; a body
of known length is received straight into its buffer (``receiver()``), each wait for it woken
only once a batch of it is queued (``_rcvlowat``); failures are httpcore2's
errors with the ``ssl`` error OpenSSL would have raised as their cause (``_core_tls``), so the
client's retry decisions and messages are the same on both.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import Any

import httpcore2

from nomyo_native import _core
from nomyo_native._core_tls import CoreTlsContext, SessionInfo, as_ssl_error, start_session
from nomyo_native._rcvlowat import LowWaterMark, TlsPacing
from nomyo_native._sync_deadline import READ_AHEAD, bounded
from nomyo_native._sync_tls_body import PacedBodyReceive

__all__ = ["WRITE_SLICE", "CoreTlsStream"]

# The most TLS bytes one socket receive takes (eight full records).
_RECEIVE_SIZE = 128 * 1024
# The most plaintext encrypted at once by a write: a 4 MB body goes out slice by slice instead
# of being held whole as TLS records too (the peak RSS is a bench target).
WRITE_SLICE = 256 * 1024

# What OpenSSL's path raises when the server hangs up during the handshake.
_EOF_IN_HANDSHAKE = "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol"

_Mapped = type[httpcore2.NetworkError] | type[httpcore2.TimeoutException]


def _socket_readable(sock: socket.socket) -> bool:
    """The kernel has bytes (or the end of stream) for ``sock``, or it is closed."""
    if sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):  # no FD_SETSIZE limit
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _as_httpcore_error(
    exc: OSError | _core.TlsError, hostname: str | None, on_timeout: _Mapped, on_error: _Mapped
) -> Exception:
    """httpcore2's error for ``exc``: a TLS failure with the ``ssl`` error OpenSSL's path raises
    as its cause and context (``_retry`` finds a refused certificate there). httpcore2's pool
    re-raises a connection's error ``from None``, which keeps only the context: so the caller
    raises this out of its except clause, where Python would set the context to ``exc``."""
    cause: BaseException = exc
    if isinstance(exc, _core.TlsError):
        cause = as_ssl_error(exc, hostname)
        mapped: Exception = on_error(str(cause))
    elif isinstance(exc, TimeoutError):
        mapped = on_timeout(str(exc) or "timed out")
    else:
        mapped = on_error(str(exc) or type(exc).__name__)
    mapped.__cause__ = mapped.__context__ = cause
    return mapped


def _start_session(context: CoreTlsContext, server_hostname: str | None) -> _core.TlsSession:
    """A session, or the ConnectError of a name no certificate can be verified against (its
    ``ssl`` refusal as cause and context, as a failed handshake's)."""
    try:
        return start_session(context, server_hostname)
    except ssl.SSLError as exc:
        failure = exc
    raise _as_httpcore_error(
        failure, server_hostname, httpcore2.ConnectTimeout, httpcore2.ConnectError
    )


def _receive(session: _core.TlsSession, data: memoryview, into: memoryview | None) -> int:
    """The session takes ``data``; with ``into``, a body's buffer, the plaintext is decrypted
    straight into it (one copy and one call less than through the session's own buffer): the
    bytes written there (a TlsError says it in ``written``)."""
    if into is None:
        session.receive(data)
        return 0
    return session.receive_into(data, into)


class CoreTlsStream(PacedBodyReceive, httpcore2.NetworkStream):
    """One TLS connection: a connected socket and the core's session over it."""

    def __init__(
        self, sock: socket.socket, session: _core.TlsSession, server_hostname: str | None
    ) -> None:
        self._sock = sock
        self._session = session
        self._hostname = server_hostname
        self._info = SessionInfo(session, server_hostname)
        self._received = bytearray(_RECEIVE_SIZE)
        self._received_view = memoryview(self._received)
        # A failure met after authentic records: their plaintext is handed over first, then
        # the next read that needs more raises it (the pool, asking is_readable, sees the
        # connection as unusable).
        self._failure: Exception | None = None
        self._ended = False  # the socket's end of stream was received
        self._into: memoryview | None = None  # a body's buffer the next receive decrypts into
        self._written_into = 0  # what it wrote there (authentic, also if it then failed)
        self._pacing = TlsPacing(LowWaterMark.of(sock), session, _RECEIVE_SIZE, _RECEIVE_SIZE)
        self._batching = False
        self._wait_ends: float | None = None
        # Session calls of this stream's user and a close() from another thread do not overlap:
        # close() sends close_notify only if it gets the lock at once.
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        sock: socket.socket,
        context: CoreTlsContext,
        server_hostname: str | None,
        timeout: float | None,
    ) -> CoreTlsStream:
        """The handshake over ``sock`` (closed if it fails), each wait bound by ``timeout``
        and the attempt's deadline: ConnectTimeout, or ConnectError with the ``ssl`` error as
        its cause."""
        try:
            stream = cls(sock, _start_session(context, server_hostname), server_hostname)
            stream._handshake(timeout)
        except BaseException:
            sock.close()
            raise
        return stream

    def _handshake(self, timeout: float | None) -> None:
        session = self._session
        failure: OSError | _core.TlsError | None = None
        try:
            while session.handshaking or session.tls_pending:
                self._send_waiting(timeout, httpcore2.ConnectTimeout)
                if session.handshaking and not self._receive_tls(timeout, httpcore2.ConnectTimeout):
                    raise ssl.SSLEOFError(8, _EOF_IN_HANDSHAKE)
        except (OSError, _core.TlsError) as exc:
            self._send_alert()
            failure = exc
        if failure is not None:  # raised out of the except clause: see _as_httpcore_error
            raise _as_httpcore_error(
                failure, self._hostname, httpcore2.ConnectTimeout, httpcore2.ConnectError
            )

    # ---- bytes in ----------------------------------------------------------------------------

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Everything already decrypted and what the socket holds now, up to
        :data:`READ_AHEAD` bytes even past ``max_bytes`` (httpcore2 hands each read whole to
        h11, which takes any size); b"" at the end of the stream. It waits only until the
        first plaintext arrives."""
        session = self._session
        while not session.plaintext_pending:
            if self._failure is not None:
                raise self._failure
            if self._ended or session.peer_closed:
                return b""
            self._pull(timeout)
        self._gather()
        data = bytearray(min(session.plaintext_pending, READ_AHEAD))
        with self._lock:
            session.read_into(data)
        return bytes(data)

    def _gather(self) -> None:
        """Gives the session what the socket holds now, without waiting, until READ_AHEAD of
        plaintext waits: a record still on its way may belong to nothing the HTTP layer needs
        (the answer can be complete), so it is left for a next read, which then waits with its
        timeout and the attempt's deadline."""
        session = self._session
        while session.plaintext_pending < READ_AHEAD and not self._ended and not self._failure:
            if not self._pull(None, wait=False):
                return

    def _pull(self, timeout: float | None, wait: bool = True) -> bool:
        """One wait (or none) for TLS bytes, given to the session: False if nothing came. A
        failure is kept, not raised: the records before it were authentic, and the plaintext
        they carried is handed over first (the next read that needs more raises it)."""
        try:
            return self._receive_tls(timeout, httpcore2.ReadTimeout, wait)
        except (BlockingIOError, InterruptedError) as exc:
            if wait:  # a zero timeout from the caller: as OpenSSL's path, no lasting failure
                raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc
            return False  # nothing more has arrived
        except TimeoutError as exc:  # the wait ran out: no failure of the connection
            raise httpcore2.ReadTimeout(str(exc) or "timed out") from exc
        except (OSError, _core.TlsError) as exc:
            self._written_into = getattr(exc, "written", self._written_into)
            self._failure = _as_httpcore_error(
                exc, self._hostname, httpcore2.ReadTimeout, httpcore2.ReadError
            )
            return False

    def _receive_tls(
        self, timeout: float | None, on_timeout: type[Exception], wait: bool = True
    ) -> bool:
        """One wait (or none: BlockingIOError if nothing has arrived) for TLS bytes, all of
        them given to the session (decrypted into ``_into`` as far as it goes, if set), and any
        reply it then has (a key update's) sent; False at the socket's end of stream."""
        sock = self._sock
        # A zero timeout, not MSG_DONTWAIT: with a timeout set, Python waits for the socket
        # to be readable before it receives, whatever the flags.
        sock.settimeout(bounded(timeout, on_timeout) if wait else 0.0)
        got = sock.recv_into(self._received)
        if not got:
            self._ended = True
            return False
        with self._lock:
            self._written_into = _receive(self._session, self._received_view[:got], self._into)
        if self._session.tls_pending:
            self._send_waiting(timeout, on_timeout)
        return True

    # ---- bytes out ---------------------------------------------------------------------------

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        session = self._session
        try:
            with memoryview(buffer) as view:
                for start in range(0, len(view), WRITE_SLICE):
                    with self._lock:
                        session.send(view[start : start + WRITE_SLICE])
                    self._send_waiting(timeout, httpcore2.WriteTimeout)
        except (OSError, _core.TlsError) as exc:
            failure = exc
        else:
            return
        raise _as_httpcore_error(
            failure, self._hostname, httpcore2.WriteTimeout, httpcore2.WriteError
        )

    def _send_waiting(self, timeout: float | None, on_timeout: type[Exception]) -> None:
        """Sends the TLS bytes the session has for the peer, within ``timeout`` and the
        attempt's deadline (``sendall``'s timeout bounds the whole send)."""
        with self._lock:
            data = self._session.take_tls()
        if data:
            self._sock.settimeout(bounded(timeout, on_timeout))
            self._sock.sendall(data)

    def _send_alert(self) -> None:
        """A failed session's alert for the peer, if the socket takes it at once."""
        try:
            with self._lock:
                alert = self._session.take_tls()
            if alert:
                self._send_nowait(alert)
        except (OSError, _core.TlsError):
            pass  # the connection is failing anyway

    def _send_nowait(self, data: bytes) -> None:
        self._sock.settimeout(0.0)
        self._sock.send(data)

    # ---- the rest of a stream ----------------------------------------------------------------

    def close(self) -> None:
        """close_notify if it can go at once, then the socket shut down and closed: a thread
        blocked reading it (its request in flight while another thread closes the client)
        wakes now with a closed connection, as on the OpenSSL path."""
        if self._sock.fileno() >= 0 and self._lock.acquire(blocking=False):
            try:
                self._session.close()
                notify = self._session.take_tls()
                if notify:
                    self._send_nowait(notify)
            except (OSError, _core.TlsError):
                pass  # best effort: the peer sees the FIN either way
            finally:
                self._lock.release()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        raise NotImplementedError("TLS inside the core's TLS (a proxy) is not supported")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._info
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "is_readable":
            # Plaintext past an answer (a body received into its buffer takes only up to its
            # end) waits in the session, unseen by the kernel's socket: it would be read as the
            # next request's answer if the connection were reused.
            session = self._session
            return (
                self._failure is not None
                or self._ended
                or session.plaintext_pending > 0
                or session.peer_closed
                or _socket_readable(self._sock)
            )
        return None
