"""Response heads as ``_http11.Exchange`` finds and parses them, whatever the reads' sizes,
and what its errors say (never the offending bytes: a header's value or a piece of a body)."""

from __future__ import annotations

import re
from typing import Any

import httpcore2
import pytest

from nomyo_native import _http11
from nomyo_native._http11 import Exchange, ResponseHead

REQUEST = [(b"Host", b"example"), (b"Content-Length", b"0")]
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nX-A: one\r\nContent-Length: 7\r\n\r\n"


def exchange() -> Exchange:
    sent = Exchange(b"POST", b"/", REQUEST)
    sent.end_of_request()
    return sent


def feed(sent: Exchange, arrivals: list[bytes]) -> tuple[ResponseHead | None, bytes]:
    """``arrivals`` received one after another, as a connection's pending bytes: the head, and
    what is left pending after it."""
    pending = b""
    head = None
    for data in arrivals:
        pending += data
        if head is None:
            taken, head = sent.take_head(memoryview(pending))
            pending = pending[taken:]
    return head, pending


class CountingPattern:
    """``_HEAD_END`` counting the bytes each search looks at."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self._pattern = pattern
        self.scanned = 0

    def search(self, data: Any, pos: int = 0) -> re.Match[bytes] | None:
        self.scanned += len(data) - pos
        return self._pattern.search(data, pos)


@pytest.mark.parametrize("end", [b"\r\n\r\n", b"\n\n", b"\r\n\n"])
def test_a_head_split_at_every_byte_is_found_whole(end: bytes) -> None:
    final = FINAL[: -len(b"\r\n\r\n")] + end
    wire = INTERIM + final + b"payload" + b"HTTP/1.1"
    for cut in range(1, len(wire)):
        head, left = feed(exchange(), [wire[:cut], wire[cut:]])
        assert head is not None and head.status == 200 and head.length == 7, cut
        assert (b"X-A", b"one") in head.headers
        assert left == b"payload" + b"HTTP/1.1", cut
    head, left = feed(exchange(), [bytes([byte]) for byte in wire])
    assert head is not None and head.status == 200 and left == b"payload" + b"HTTP/1.1"


def test_a_head_arriving_a_byte_at_a_time_is_searched_once(monkeypatch: Any) -> None:
    # A server trickling a large head must not make the client rescan it from its start on every
    # read (100 KiB a byte at a time would be five billion bytes looked at, seconds of the
    # event loop's time).
    counting = CountingPattern(_http11._HEAD_END)
    monkeypatch.setattr(_http11, "_HEAD_END", counting)
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 60) for i in range(300))
    wire = INTERIM + b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 0\r\n\r\n"
    head, _ = feed(exchange(), [bytes([byte]) for byte in wire])
    assert head is not None and head.status == 200 and len(head.headers) == 301
    assert counting.scanned <= 3 * len(wire)


def test_a_head_still_arriving_is_refused_once_past_the_bound() -> None:
    sent = exchange()
    wire = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * (2 * _http11.MAX_HEAD_BYTES)
    with pytest.raises(httpcore2.RemoteProtocolError, match="larger than"):
        feed(sent, [wire[i : i + 4096] for i in range(0, len(wire), 4096)])


SECRET = b"s3cr3t-VALUE"
# Each refused by h11, whose own message quotes the offending line.
QUOTING = {
    "bad header line": b"HTTP/1.1 200 OK\r\nX-Session: " + SECRET + b"\x00\r\n\r\n",
    "header name with a space": b"HTTP/1.1 200 OK\r\nX " + SECRET + b": 1\r\n\r\n",
    "bad status line": b"HTTP/1.1 2" + SECRET + b" OK\r\n\r\n",
    "status line with a bare CR": b"HTTP/1.1 200 OK\r" + SECRET + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(QUOTING))
def test_a_refused_head_is_not_quoted_in_the_error(case: str) -> None:
    with pytest.raises(httpcore2.RemoteProtocolError) as refused:
        feed(exchange(), [QUOTING[case]])
    assert_unquoted(refused.value)


def test_a_refused_chunk_header_is_not_quoted_in_the_error() -> None:
    sent = exchange()
    head, left = feed(
        sent, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + SECRET + b"\r\n"]
    )
    assert head is not None and head.length is None
    with pytest.raises(httpcore2.RemoteProtocolError, match="chunk") as refused:
        sent.body_chunks(left)
    assert_unquoted(refused.value)


def assert_unquoted(error: BaseException) -> None:
    """Neither the error nor anything it chains to (printed with its traceback) quotes SECRET."""
    seen: BaseException | None = error
    while seen is not None:
        assert SECRET.decode() not in str(seen) and SECRET.decode() not in repr(seen.args)
        assert str(seen)  # still says what was wrong
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)


def test_a_refused_request_header_is_not_quoted_in_the_error() -> None:
    # h11 refuses a line break in a value (a header injection) and quotes the value it refused:
    # a bearer token, here.
    bearer = b"Bearer " + SECRET + b"\r\nX-Injected: 1"
    with pytest.raises(httpcore2.LocalProtocolError, match="header value") as refused:
        Exchange(b"POST", b"/", [(b"Host", b"example"), (b"Authorization", bearer)])
    assert_unquoted(refused.value)
