"""One HTTP/1.1 exchange's framing, without I/O: the drivers' connection layer does the I/O.

h11 checks the request (head and declared length) and parses every response head, 1xx
interim responses skipped, with its limits and ours (``_http11_limits``: a head's bytes, and
how many interim responses, and how many bytes of them, come before the final one).
What it is not given is a ``Content-Length`` body: that is read by the connection straight into
one buffer of the declared length (h11 would copy it out of its receive buffer chunk by chunk,
and httpcore2 copy each chunk again). Chunked and close-delimited bodies keep going through h11.

A head is found in the bytes received (:meth:`Exchange.take_head`) and only the head is fed to
h11, which parses and checks it as it would on its own (for a request of declared length, by
h11's reader without its connection state machine: ``_http11_plain``). Stricter than h11
here: a head is bounded even when complete, and a folded header line is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import h11
import httpcore2
from h11 import _headers as h11_headers

from nomyo_native._h11_linear import install as install_linear_field_line
from nomyo_native._http11_head import read_plain_head
from nomyo_native._http11_limits import MAX_HEAD_BYTES, InterimResponses, head_too_large
from nomyo_native._http11_plain import new_connection, plain_request, read_response_head
from nomyo_native._request_fields import checked_fields

__all__ = [
    "COALESCE_BYTES",
    "MAX_HEAD_BYTES",
    "Exchange",
    "ReceivedBytes",
    "ResponseHead",
    "coalesced",
    "make_room",
]

# Trailers and heads h11 reads are read by its field expression: made linear first.
install_linear_field_line()

# h11's end of a head: an empty line, CRLF or a bare LF.
_HEAD_END = re.compile(rb"\n\r?\n")
# A line starting with a space or tab continues the previous one (obs-fold). h11 unfolds it, as
# RFC 9112 lets a user agent do; refused here instead: no server this client talks to folds,
# and a field split across lines is how one part reads a head differently from another.
_FOLD = re.compile(rb"\n[ \t]")
# Bytes h11 refuses anywhere in a head (NUL, VT, FF, a CR not ending a line; its field and
# reason characters are ``[^\x00\s]``): refused before h11 reads the head, as its line expression
# (``OWS value? OWS``) backtracks quadratically on a long line it refuses (a 100 KiB line of
# blanks and a NUL: minutes of the event loop's CPU).
_CONTROL = re.compile(rb"[\x00\x0b\x0c]|\r(?!\n)")
# Responses that never have a body, whatever their headers say (RFC 9112 section 6.3).
_BODYLESS_STATUSES = (204, 304)
# The fields that decide how a response is framed and whether the connection is kept.
_FRAMING_FIELDS = (b"connection", b"transfer-encoding", b"content-length")
# h11 quotes what it refused after its message (a header or status line, a chunk header: a
# header's value, a body's bytes, an API key): only its words reach our errors.
_QUOTED = re.compile(r":? *(?:bytearray\()?b['\"].*", re.DOTALL)
# httpcore2's message for a server closing before it answered.
_NO_RESPONSE = "Server disconnected without sending a response."

# Room in a growing body buffer comes from these zeros (no temporary object per step).
_ZEROS = memoryview(bytes(256 * 1024))

Headers = list[tuple[bytes, bytes]]


# A request's head and body up to this size go out in one write (one TLS record, one send).
COALESCE_BYTES = 64 * 1024


def coalesced(parts: list[bytes]) -> list[bytes]:
    """A request's pieces as written: small ones joined into one write, a large body left
    whole (the stream slices it) rather than copied into a join."""
    parts = [part for part in parts if part]
    if len(parts) > 1 and sum(map(len, parts)) <= COALESCE_BYTES:
        return [b"".join(parts)]
    return parts


def make_room(body: bytearray, received: int, length: int, room: int) -> bytearray:
    """The buffer to receive the rest of a body into: ``body`` (of which ``received`` bytes are
    in) grown to take at least ``room`` more bytes, or all that is still owed of ``length``: to
    twice what has arrived (few steps, each a realloc that may copy what is in; a buffer reused
    from ``_body_buffers`` seldom needs one), never past ``length``. The buffer is never sized
    by the peer beyond twice what it has sent (plus ``room``); one already longer (kept from an
    earlier body) is used as it is. If ``body`` cannot be resized (a view of it still
    exported), a new buffer with its first ``received`` bytes is returned instead."""
    wanted = received + min(length - received, room)
    if len(body) < wanted:
        grown = min(length, max(wanted, 2 * received))
        try:
            while len(body) < grown:
                body += _ZEROS[: grown - len(body)]
        except BufferError:
            fresh = bytearray(grown)
            fresh[:received] = memoryview(body)[:received]
            return fresh
    return body


class ReceivedBytes:
    """Bytes a connection has received and not yet parsed (the I/O half, async or blocking,
    fills ``_buffer`` and sets ``_ended`` at the end of stream)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ended = False

    def pending(self) -> memoryview:
        # Not a copy: a head trickling in a byte per read would be copied whole per read.
        return memoryview(self._buffer)

    def consume(self, nbytes: int) -> None:
        try:
            del self._buffer[:nbytes]
        except BufferError:  # a view of it still alive (an exception's traceback): copy
            self._buffer = self._buffer[nbytes:]

    @property
    def clean(self) -> bool:
        """Nothing unread and the stream not ended: the connection may carry another request."""
        return not self._buffer and not self._ended


@dataclass(frozen=True)
class ResponseHead:
    """A final response's head, and how its body is framed."""

    status: int
    reason: bytes
    http_version: bytes  # e.g. b"HTTP/1.1", as httpcore2 reports it
    headers: Headers  # as received (h11's raw_items: original case)
    # The body's declared length, read by the connection itself; None: h11 reads the body.
    length: int | None
    # Whether the response allows the connection to carry another request.
    keep_alive: bool


def _comma_tokens(headers: Headers, names: tuple[bytes, ...]) -> dict[bytes, list[bytes]]:
    """For each of ``names`` (lower case), the comma-separated, lower-cased tokens of all its
    fields, as h11 reads them (one pass: iterating h11's Headers item by item is slow)."""
    tokens: dict[bytes, list[bytes]] = {name: [] for name in names}
    for field, value in headers:
        found = tokens.get(field.lower())
        if found is not None:
            found.extend(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def _asks_to_close(fields: h11_headers.Headers) -> bool:
    """Whether a request's (checked) fields ask to close the connection after it: a
    ``close`` token in a ``Connection`` field, as :func:`_comma_tokens` reads it."""
    for _, name, value in fields._full_items:
        if name == b"connection" and b"close" in (t.strip().lower() for t in value.split(b",")):
            return True
    return False


def _unquoted(exc: h11.ProtocolError) -> str:
    return _QUOTED.sub("", str(exc))


def _refuse_controls(head: bytes) -> None:
    """A RemoteProtocolError for a head h11 would refuse for a control byte in it."""
    if _CONTROL.search(head) is not None:
        raise httpcore2.RemoteProtocolError("control character in response head")


class Exchange:
    """The framing state of one request and its response: through h11's connection state
    machine, or, for a request of declared length, h11's checks without it
    (``_http11_plain``)."""

    def __init__(self, method: bytes, target: bytes, headers: Headers) -> None:
        self._method = method
        self._h11: h11.Connection | None = None
        try:
            fields = checked_fields(headers)
            self._plain = plain_request(method, target, fields)
            if self._plain is not None:
                self.head: bytes = self._plain.head
            else:
                self._h11 = new_connection(MAX_HEAD_BYTES)
                request = h11.Request(method=method, target=target, headers=fields)
                self.head = self._h11.send(request)
        except h11.LocalProtocolError as exc:
            raise httpcore2.LocalProtocolError(_unquoted(exc)) from None
        self._request_keeps_alive = not _asks_to_close(fields)
        self._head: ResponseHead | None = None
        # How much of the head still arriving has been searched for its end: each search goes
        # on from there, so a head trickling in a byte per read is scanned once, not per read.
        self._searched = 0
        self._interim: InterimResponses | None = None  # those skipped so far

    # ---- the request -----------------------------------------------------------------------

    def body_parts(self, chunk: bytes) -> list[bytes]:
        """``chunk`` of the request body as bytes to send (itself under ``Content-Length``):
        a LocalProtocolError past the declared length."""
        try:
            if self._plain is not None:
                return self._plain.body_parts(chunk)
            return self._connection.send_with_data_passthrough(h11.Data(data=chunk)) or []
        except h11.LocalProtocolError as exc:
            raise httpcore2.LocalProtocolError(_unquoted(exc)) from None

    def end_of_request(self) -> bytes:
        """The bytes ending the request: a LocalProtocolError short of the declared length."""
        try:
            if self._plain is not None:
                return self._plain.end()
            return self._connection.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise httpcore2.LocalProtocolError(_unquoted(exc)) from None

    @property
    def request_complete(self) -> bool:
        if self._plain is not None:
            return self._plain.complete
        return self._connection.our_state is h11.DONE

    @property
    def _connection(self) -> h11.Connection:
        assert self._h11 is not None
        return self._h11

    # ---- the response head -----------------------------------------------------------------

    def take_head(self, pending: memoryview) -> tuple[int, ResponseHead | None]:
        """Parses the heads complete in ``pending`` (bytes received, from the start of the
        response): the number of bytes taken, and the final response's head once complete.
        Interim (1xx) responses are skipped. A head still arriving is left in ``pending``,
        refused once it is longer than :data:`MAX_HEAD_BYTES`."""
        taken = 0
        while self._head is None:
            rest = pending[taken:]
            # Back two bytes: the end found may begin in what was searched before.
            found = _HEAD_END.search(rest, max(0, self._searched - 2))
            if found is None:
                self._searched = len(rest)
                if len(rest) > MAX_HEAD_BYTES:
                    raise head_too_large()
                if len(rest) and rest[0] < 0x21:
                    # h11 refuses at once what cannot start a status line (a control, a space).
                    raise httpcore2.RemoteProtocolError("illegal status line")
                return taken, None
            if found.end() > MAX_HEAD_BYTES:
                raise head_too_large()
            head = bytes(rest[: found.end()])
            if _FOLD.search(head) is not None:
                raise httpcore2.RemoteProtocolError("folded header line (obs-fold) refused")
            self._searched = 0
            taken += found.end()
            if self._h11 is None:
                self._parse_plain(head)
            else:
                _refuse_controls(head)
                self._receive(head)
                self._parse_head()
            if self._head is None:  # an interim response, skipped: refused past the bounds
                self._interim = self._interim or InterimResponses()
                self._interim.skipped(len(head))
        return taken, self._head

    def end_of_stream_before_head(self) -> httpcore2.RemoteProtocolError:
        return httpcore2.RemoteProtocolError(_NO_RESPONSE)

    def _parse_plain(self, head: bytes) -> None:
        """One head, as h11's reader parses it (a plain one without h11: ``_http11_head``); a
        final one whose body h11 must read goes to an h11 connection that has carried the
        request (``PlainRequest.replayed``)."""
        assert self._plain is not None
        plain = read_plain_head(head)
        if plain is not None:
            framed = self._framed(plain[0], plain[1], b"1.1", plain[2])
        else:
            _refuse_controls(head)
            event = self._read_head(head)
            if isinstance(event, h11.InformationalResponse):
                return  # 100 Continue, 103 Early Hints: the final answer follows
            framed = self._framed_event(event)
        if framed.length is None:
            self._h11 = self._plain.replayed(MAX_HEAD_BYTES)
            self._receive(head)
            self._parse_head()
        else:
            self._head = framed

    @staticmethod
    def _read_head(head: bytes) -> h11.Response | h11.InformationalResponse:
        try:
            return read_response_head(head)
        except h11.ProtocolError as exc:
            message = _unquoted(exc)
        # Raised outside the handler: h11's error, quote and all, is not chained as its context.
        raise httpcore2.RemoteProtocolError(message)

    def _receive(self, data: bytes) -> None:
        try:
            self._connection.receive_data(data)
        except RuntimeError as exc:  # data after the end of stream: h11's usage error
            raise httpcore2.RemoteProtocolError(str(exc)) from exc

    def _parse_head(self) -> None:
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                return  # only after an interim response: the next head is not here yet
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue, 103 Early Hints: the final answer follows
            if isinstance(event, h11.Response):
                self._head = self._framed_event(event)
                return
            raise httpcore2.RemoteProtocolError(f"unexpected {type(event).__name__} event")

    def _next_event(self) -> object:
        try:
            return self._connection.next_event()
        except h11.RemoteProtocolError as exc:
            message = _unquoted(exc)
        # Raised outside the handler: h11's error, quote and all, is not chained as its context.
        raise httpcore2.RemoteProtocolError(message)

    def _framed_event(self, event: h11.Response) -> ResponseHead:
        return self._framed(
            event.status_code, event.reason, event.http_version, event.headers.raw_items()
        )

    def _framed(self, status: int, reason: bytes, version: bytes, headers: Headers) -> ResponseHead:
        """The head of a final response (``version`` as h11 gives it, e.g. b"1.1"; fields as
        received) and how its body is framed."""
        tokens = _comma_tokens(headers, _FRAMING_FIELDS)
        keep_alive = (
            self._request_keeps_alive
            and version >= b"1.1"
            and b"close" not in tokens[b"connection"]
        )
        length: int | None
        if (
            status in _BODYLESS_STATUSES
            or self._method == b"HEAD"
            or (self._method == b"CONNECT" and 200 <= status < 300)
        ):
            length = 0
            # A tunnel is not something this layer carries on: the connection ends with it.
            keep_alive = keep_alive and self._method != b"CONNECT"
        elif tokens[b"transfer-encoding"]:
            length = None  # chunked (h11 refuses any other coding): h11 reads it
            # Both framings at once smell of smuggling: whatever h11 reads, close after.
            keep_alive = keep_alive and not tokens[b"content-length"]
        else:
            # h11 has already refused conflicting values and non-digits.
            declared = tokens[b"content-length"]
            length = int(declared[0]) if declared else None
            # No length, no chunks: the body runs to the end of stream.
            keep_alive = keep_alive and length is not None
        return ResponseHead(
            status=status,
            reason=reason,
            http_version=b"HTTP/" + version,
            headers=headers,
            length=length,
            keep_alive=keep_alive,
        )

    # ---- a body h11 reads (chunked, or delimited by the end of stream) -----------------------

    def body_chunks(self, data: bytes) -> tuple[list[bytes], bool]:
        """Feeds ``data`` (b"" at the end of stream) to h11: the body bytes it yields, and
        whether the body is complete. A RemoteProtocolError for a malformed or cut body."""
        self._receive(data)
        chunks: list[bytes] = []
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                return chunks, False
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return chunks, True
            else:
                raise httpcore2.RemoteProtocolError(f"unexpected {type(event).__name__} event")

    @property
    def h11_cycle_complete(self) -> bool:
        """After an h11-read body: both sides done, h11 sees no reason to close, and nothing
        arrived after the body."""
        h11_state = self._h11
        return (
            h11_state is not None
            and h11_state.our_state is h11.DONE
            and h11_state.their_state is h11.DONE
            and not h11_state.trailing_data[0]
        )
