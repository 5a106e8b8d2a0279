"""A request of declared length sent as h11 writes it, checked by h11's own code, without
running h11's connection state machine; and the response heads to it parsed by h11's reader.

An ``h11.Connection`` runs four events through its state machine for a request with a body
and its answer (the request, its data, its end, the response), each re-reading the head's
fields (upgrade, keep-alive, framing): about a third of the CPU an exchange costs in h11. For
a request framed by one ``Content-Length`` (no ``Transfer-Encoding``, ``Upgrade`` or
``Expect``, not ``CONNECT``) the state machine decides nothing: every field was checked by
h11 (``checked_fields``), the request line is checked by h11's own expressions, the head is
written by h11's writer, the body is counted against the declared length with h11's errors,
and each response head is parsed by h11's reader for a server's answer (every check h11 makes
on received bytes: status line, each field, framing values). What the state machine would
still refuse of a response (a 101 with no upgrade proposed) is refused here with its words.
A body that h11 must read itself (chunked, or to the end of stream) is read by an
``h11.Connection`` that is given the request first (:meth:`PlainRequest.replayed`).
"""

from __future__ import annotations

import h11
from h11._events import method_re, request_target_re
from h11._headers import Headers
from h11._readers import maybe_read_from_SEND_RESPONSE_server
from h11._receivebuffer import ReceiveBuffer
from h11._util import validate
from h11._writers import write_headers

__all__ = ["PlainRequest", "new_connection", "plain_request", "read_response_head"]

# Request fields whose meaning the state machine acts on: such a request goes through it.
_STATEFUL = frozenset({b"transfer-encoding", b"upgrade", b"expect"})
# Request lines h11's expressions accepted, remembered within a bound (the library's own
# methods and paths: nothing secret). A target with a query is checked every time and never
# kept: a base URL's query may carry a credential (``?api_key=...``) that must not outlive
# the client in a module-level set.
_BOUND = 64
_checked_lines: set[tuple[bytes, bytes]] = set()
# What h11's state machine says of a 101 when no upgrade was proposed.
_NO_PROPOSAL = "Received server _SWITCH_UPGRADE event without a pending proposal"

_SENDING, _DONE, _ERROR = 0, 1, 2


def new_connection(max_incomplete_event_size: int) -> h11.Connection:
    return h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=max_incomplete_event_size)


class PlainRequest:
    """One request's head and the count of its body against the declared length."""

    def __init__(self, method: bytes, target: bytes, fields: Headers, length: int) -> None:
        self.method = method
        self.target = target
        self.fields = fields
        self._left = length
        self._chunks: list[bytes] = []  # kept for replayed(): references, not copies
        self._state = _SENDING
        parts = [b"%s %s HTTP/1.1\r\n" % (method, target)]
        write_headers(fields, parts.append)
        self.head = b"".join(parts)

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    def body_parts(self, chunk: bytes) -> list[bytes]:
        """``chunk`` to send: h11's LocalProtocolError past the declared length."""
        self._check_sending("Data")
        self._left -= len(chunk)
        if self._left < 0:
            self._state = _ERROR
            raise h11.LocalProtocolError("Too much data for declared Content-Length")
        self._chunks.append(chunk)
        return [chunk]

    def end(self) -> bytes:
        """The end of the request (nothing to send): h11's LocalProtocolError if short."""
        self._check_sending("EndOfMessage")
        if self._left != 0:
            self._state = _ERROR
            raise h11.LocalProtocolError("Too little data for declared Content-Length")
        self._state = _DONE
        return b""

    def _check_sending(self, event: str) -> None:
        if self._state == _ERROR:
            raise h11.LocalProtocolError("Can't send data when our state is ERROR")
        if self._state == _DONE:
            raise h11.LocalProtocolError(
                f"can't handle event type {event} when role=CLIENT and state=DONE"
            )

    def replayed(self, max_incomplete_event_size: int) -> h11.Connection:
        """An ``h11.Connection`` that has sent this request as far as it went (its bytes are
        already on the wire), ready to read the answer."""
        connection = new_connection(max_incomplete_event_size)
        connection.send(h11.Request(method=self.method, target=self.target, headers=self.fields))
        for chunk in self._chunks:
            connection.send_with_data_passthrough(h11.Data(data=chunk))
        if self._state == _DONE:
            connection.send(h11.EndOfMessage())
        return connection


def plain_request(method: bytes, target: bytes, fields: Headers) -> PlainRequest | None:
    """The request if it needs nothing of h11's state machine (see the module's docstring),
    checked as ``h11.Request`` checks it (its LocalProtocolError); else None."""
    if type(method) is not bytes or type(target) is not bytes or method == b"CONNECT":
        return None
    length: int | None = None
    hosts = 0
    for _, name, value in fields._full_items:
        if name == b"content-length":
            length = int(value)  # h11 left one field of digits
        elif name == b"host":
            hosts += 1
        elif name in _STATEFUL:
            return None
    if length is None:
        return None
    if hosts == 0:
        raise h11.LocalProtocolError("Missing mandatory Host: header")
    if hosts > 1:
        raise h11.LocalProtocolError("Found multiple Host: headers")
    if (method, target) not in _checked_lines:
        validate(method_re, method, "Illegal method characters")
        validate(request_target_re, target, "Illegal target characters")
        if b"?" not in target:
            if len(_checked_lines) >= _BOUND:
                _checked_lines.clear()
            _checked_lines.add((method, target))
    return PlainRequest(method, target, fields, length)


def read_response_head(head: bytes) -> h11.Response | h11.InformationalResponse:
    """One complete response head (through its empty line) as h11's reader parses it: its
    LocalProtocolError for anything it refuses, and for a 101 (no upgrade was proposed)."""
    received = ReceiveBuffer()
    received += head
    event = maybe_read_from_SEND_RESPONSE_server(received)
    if event is None or received:  # not what a complete head gives
        raise h11.LocalProtocolError("incomplete response head")
    if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
        raise h11.LocalProtocolError(_NO_PROPOSAL)
    return event
