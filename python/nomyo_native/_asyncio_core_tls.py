"""TLS over an asyncio TCP transport with the core's TLS session (rustls on aws-lc-rs), for
the async driver's connections whose context is a :class:`~nomyo_native._core_tls.CoreTlsContext`.

asyncio's SSL protocol runs the interpreter's OpenSSL through memory BIOs: each 16 KiB record
is copied into a BIO, decrypted (by whatever AES that OpenSSL build has), copied out, and the
BIOs' buffers are zero-filled as they grow. Here the socket is read into a fixed buffer (one per
thread; up to a megabyte of a body at once, see ``_rcvlowat``), handed to the core's session in
one call (every complete record decrypted, the GIL released for a large read), and the
plaintext moved straight into the views the connection's protocol hands out (``get_buffer``):
a megabyte body lands in its own buffer with no bytes object between.

Towards the connection this is the transport asyncio's ``start_tls`` returns (writes, flow
control both ways, ``get_extra_info`` with an ``ssl_object``), with the same ends of stream:
the peer's close_notify and a bare TCP FIN both end the stream (``eof_received``), a TLS failure
ends the connection with the ``ssl`` error (``connection_lost(exc)``). Unlike asyncio's, nothing
decrypted is dropped at the end of stream: while the connection pauses reading, plaintext waits
in the session and the socket is not read, so what waits is bounded by one socket read.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from nomyo_native import _core
from nomyo_native._core_tls import CoreTlsContext, SessionInfo, as_ssl_error, start_session
from nomyo_native._rcvlowat import MAX_MARK, LowWaterMark, TlsPacing

__all__ = ["CoreTlsTransport", "start_core_tls"]

# One socket read (the most asyncio's own SSL protocol takes at a time): the ciphertext a
# connection holds undelivered is at most this plus one partial record.
_RAW_BUFFER_SIZE = 256 * 1024
# While a body of known length is owed, a read takes up to this much of it at once.
_BODY_READ_SIZE = MAX_MARK
# loop.start_tls's own bound, for a caller that gives none.
_HANDSHAKE_TIMEOUT = 60.0
# The smallest read size a caller may set (set_read_buffer_limits): one whole TLS record.
_MIN_READ_SIZE = 16 * 1024 + 256


async def start_core_tls(
    transport: asyncio.Transport,
    protocol: asyncio.BufferedProtocol,
    context: CoreTlsContext,
    server_hostname: str | None,
) -> CoreTlsTransport:
    """Runs the handshake over ``transport`` (a TCP transport whose protocol is ``protocol``)
    and returns the TLS transport ``protocol`` now runs over. ValueError without a host name,
    an ``ssl`` error if the handshake fails, ConnectionResetError if the peer closes during it.
    On a failure or a cancellation the caller aborts ``transport``."""
    session = start_session(context, server_hostname)
    tls = CoreTlsTransport(transport, protocol, session, context, server_hostname)
    try:
        async with asyncio.timeout(_HANDSHAKE_TIMEOUT):
            await tls.handshake_done()
    except TimeoutError:
        raise ConnectionAbortedError(
            f"TLS handshake is taking longer than {_HANDSHAKE_TIMEOUT} seconds: aborting the "
            "connection"
        ) from None
    # Plaintext that came with the end of the handshake (and the socket) waits until the caller
    # has made this the connection's transport: it runs before the loop's next callbacks.
    asyncio.get_running_loop().call_soon(tls.receiver.resume_delivery)
    return tls


class _ReadBuffer(threading.local):
    """Where socket reads land, one per thread: asyncio calls get_buffer, reads and calls
    buffer_updated in one go, and the session takes every byte in buffer_updated."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_BODY_READ_SIZE))


_READ_BUFFER = _ReadBuffer()


class _Receiver(asyncio.BufferedProtocol):
    """The TCP transport's protocol: ciphertext into the session, plaintext out to the
    connection's protocol, the handshake's end, the ends of stream."""

    def __init__(
        self,
        tcp: asyncio.Transport,
        app: asyncio.BufferedProtocol,
        session: _core.TlsSession,
        server_hostname: str | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._server_hostname = server_hostname
        self.tcp = tcp
        # None once the connection is lost: nothing is delivered after, and the cycle
        # connection -> transport -> this -> connection is broken (the session's keys and the
        # buffers go with the last reference, not at the next cyclic collection).
        self.app: asyncio.BufferedProtocol | None = app
        self.session = session
        self._lost = False
        mark = LowWaterMark.of(tcp.get_extra_info("socket"))
        self.pacing = TlsPacing(mark, session, _RAW_BUFFER_SIZE, _BODY_READ_SIZE)
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self.established = False
        # The connection has the TLS transport (after start_core_tls): plaintext goes to it.
        self.delivering = False
        self.app_paused = False
        # The peer's end of stream: seen, and given to the connection (after all plaintext).
        self._peer_ended = False
        self._end_given = False
        self.error: Exception | None = None

    # ---- asyncio.BufferedProtocol (called by the TCP transport) --------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER.view[: 0 if self._lost else self.pacing.read_size]

    def buffer_updated(self, nbytes: int) -> None:
        if self._peer_ended or self.error is not None:
            return  # nothing after close_notify or a failure is read
        session = self.session
        try:
            self._receive(nbytes)
            self.flush()  # handshake replies, key updates, alerts
        except _core.TlsError as exc:
            # The records before the bad one are authentic: the connection gets their plaintext
            # (an answer complete before a forged record is an answer), then the failure.
            self.deliver()
            self.fail(exc)
            return
        if session.peer_closed:
            self._peer_ended = True
        if not self.handshake.done():
            if self._peer_ended:
                self._fail_handshake(ConnectionResetError("the peer closed during the handshake"))
            elif not session.handshaking:
                # Until the caller hands this transport to the connection (start_core_tls).
                self.tcp.pause_reading()
                self.established = True
                self.handshake.set_result(None)
            return
        self.deliver()

    def _receive(self, nbytes: int) -> None:
        """Gives the session ``nbytes`` of ciphertext; while the connection takes plaintext,
        it is decrypted straight into the connection's buffer (a body's own, for a body), one
        copy less than through the session's and one call less. A TlsError comes after the
        connection got the plaintext of the records before the bad one."""
        app = self.app
        if not self.delivering or self.app_paused or app is None:
            self.session.receive(_READ_BUFFER.view[:nbytes])
            return
        view = app.get_buffer(nbytes)
        moved = 0
        try:
            moved = self.session.receive_into(_READ_BUFFER.view[:nbytes], view)
        except _core.TlsError as exc:
            moved = getattr(exc, "written", 0)
            raise
        finally:
            del view  # no export of the connection's buffer outlives the call
            if moved:
                app.buffer_updated(moved)

    def eof_received(self) -> bool:
        if not self.handshake.done():
            self._fail_handshake(ConnectionResetError("the connection closed during the handshake"))
            return False
        # A FIN without close_notify ends the stream as asyncio's SSL protocol ends it (an HTTP
        # body's declared length tells a cut short answer); what was decrypted is delivered first.
        self._peer_ended = True
        self.deliver()
        return True  # the TCP transport is closed once the connection has everything

    def connection_lost(self, exc: Exception | None) -> None:
        app, self.app = self.app, None
        self._lost = True
        if self.established and app is not None:
            app.connection_lost(self.error or exc)
        elif not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("the connection closed"))

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # ---- towards the connection --------------------------------------------------------------

    def deliver(self) -> None:
        """Moves the waiting plaintext into the connection's buffers, view by view, until it
        pauses reading; then the end of stream, if the peer has ended it."""
        session, app = self.session, self.app
        if not self.delivering or self.error is not None or app is None:
            return
        try:
            while session.plaintext_pending and not self.app_paused:
                view = app.get_buffer(session.plaintext_pending)
                moved = session.read_into(view)
                if not moved:
                    break
                app.buffer_updated(moved)
        except _core.TlsError as exc:
            self.fail(exc)
            return
        if self._peer_ended and not self._end_given and not session.plaintext_pending:
            self._end_stream(app)

    def resume_delivery(self) -> None:
        """After the connection resumed reading (or got this transport): what waits first, then
        the socket again."""
        self.delivering = True
        if self.app_paused or self.error is not None:
            return
        self.deliver()
        if not (self.app_paused or self._peer_ended or self.tcp.is_closing()):
            self.tcp.resume_reading()

    def _end_stream(self, app: asyncio.BufferedProtocol) -> None:
        self._end_given = True
        app.eof_received()  # its answer cannot keep a TLS connection half open
        if self.session.peer_closed:
            self.close_notify()  # answered, as asyncio's SSL protocol answers it
        self.tcp.close()

    # ---- writing and failing -------------------------------------------------------------------

    def flush(self) -> None:
        """Writes out what the session has for the peer (TlsError if it has failed)."""
        data = self.session.take_tls()
        if data and not self.tcp.is_closing():
            self.tcp.write(data)

    def close_notify(self) -> None:
        try:
            self.session.close()
            self.flush()
        except _core.TlsError:
            pass  # a failed session has nothing to close

    def fail(self, exc: _core.TlsError) -> None:
        """Ends the connection in the ``ssl`` error for ``exc`` (the handshake's, or the
        connection's ``connection_lost``), after the alert the session has for the peer."""
        self.error = as_ssl_error(exc, self._server_hostname)
        try:
            self.flush()
        except _core.TlsError:
            pass  # the alert is best effort
        if not self.handshake.done():
            self.handshake.set_exception(self.error)
        self.tcp.abort()

    def _fail_handshake(self, exc: BaseException) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        self.tcp.abort()

    def set_read_size(self, high: int) -> None:
        self.pacing.set_read_size(max(_MIN_READ_SIZE, min(high, _RAW_BUFFER_SIZE)))


class CoreTlsTransport(asyncio.Transport):
    """The connection's transport over the core's TLS: what ``loop.start_tls`` returns."""

    def __init__(
        self,
        tcp: asyncio.Transport,
        app: asyncio.BufferedProtocol,
        session: _core.TlsSession,
        context: CoreTlsContext,
        server_hostname: str | None,
    ) -> None:
        super().__init__()
        self._tcp = tcp
        self._session = session
        self._context = context
        self._info = SessionInfo(session, server_hostname)
        self._closing = False
        self.receiver = _Receiver(tcp, app, session, server_hostname)
        tcp.set_protocol(self.receiver)
        self.receiver.flush()  # the ClientHello
        tcp.resume_reading()

    async def handshake_done(self) -> None:
        await self.receiver.handshake

    # ---- writing -------------------------------------------------------------------------------

    def write(self, data: Any) -> None:
        if not data:
            return
        if self.is_closing() or self.receiver.error is not None:
            return  # as asyncio's SSL transport: writes after the end are dropped
        try:
            self._session.send(data)
            self.receiver.flush()
        except _core.TlsError as exc:
            self.receiver.fail(exc)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS does not support half-closes")

    def get_write_buffer_size(self) -> int:
        return self._tcp.get_write_buffer_size() + self._session.tls_pending

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tcp.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tcp.set_write_buffer_limits(high, low)

    # ---- reading -------------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not (self.receiver.app_paused or self._closing or self._tcp.is_closing())

    def pause_reading(self) -> None:
        """Plaintext already decrypted waits in the session, and the socket is not read."""
        self.receiver.app_paused = True
        self._tcp.pause_reading()

    def resume_reading(self) -> None:
        receiver = self.receiver
        if not receiver.app_paused:
            return
        receiver.app_paused = False
        # Not now: the connection resumes in the middle of its own bookkeeping.
        asyncio.get_running_loop().call_soon(receiver.resume_delivery)

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """``high`` caps one socket read, hence what the connection can hold undelivered
        (asyncio's SSL protocol stops reading at its high-water mark)."""
        del low  # reading resumes when the connection asks, not at a low-water mark
        self.receiver.set_read_size(_RAW_BUFFER_SIZE if high is None else high)

    def get_read_buffer_size(self) -> int:
        """Plaintext waiting for the connection."""
        return self._session.plaintext_pending

    @property
    def pacing(self) -> TlsPacing:
        """How reads are paced while a body of known length is owed (``_rcvlowat``)."""
        return self.receiver.pacing

    # ---- closing -------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._tcp.is_closing()

    def close(self) -> None:
        """close_notify, then the TCP transport's close (which sends what is buffered first)."""
        if self._closing:
            return
        self._closing = True
        self.receiver.close_notify()
        self._tcp.close()

    def abort(self) -> None:
        self._closing = True
        self._tcp.abort()

    # ---- the rest of asyncio.Transport ----------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._info
        if name == "sslcontext":
            return self._context
        if name == "peercert":
            return self._info.getpeercert()
        if name == "cipher":
            return self._info.cipher()
        return self._tcp.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.receiver.app = protocol  # type: ignore[assignment]  # a BufferedProtocol's

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.receiver.app  # type: ignore[return-value]  # None once lost, as asyncio's
