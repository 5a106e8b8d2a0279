"""A request of declared length goes without h11's state machine (``_http11_plain``): the same
bytes, the same refusals and the same parsed answers as through ``h11.Connection``."""

from __future__ import annotations

from typing import Any

import httpcore2
import pytest

from nomyo_native import _http11, _http11_plain
from nomyo_native._http11 import Exchange

FIELDS = [
    (b"Host", b"example:8443"),
    (b"Accept", b"*/*"),
    (b"X-Payload-ID", b"p-1"),
    (b"Content-Type", b"application/octet-stream"),
    (b"Content-Length", b"5"),
]


def _through_h11(monkeypatch: Any) -> None:
    """Every request through h11's connection state machine, as before the plain path."""
    monkeypatch.setattr(_http11, "plain_request", lambda *args: None)


def _outcome(make: Any) -> tuple[str, Any]:
    try:
        return "ok", make()
    except (httpcore2.LocalProtocolError, httpcore2.RemoteProtocolError) as exc:
        return type(exc).__name__, str(exc)


def _both(monkeypatch: pytest.MonkeyPatch, make: Any) -> tuple[Any, Any]:
    plain = _outcome(make)
    with monkeypatch.context() as patched:
        _through_h11(patched)
        full = _outcome(make)
    return plain, full


def test_a_plain_request_is_what_h11_would_send_and_skips_its_state_machine(monkeypatch):
    def send() -> tuple[bytes, bytes, bool]:
        sent = Exchange(b"POST", b"/v1/chat/secure_completion?x=1", FIELDS)
        parts = sent.body_parts(b"hello")
        return sent.head + b"".join(parts), sent.end_of_request(), sent.request_complete

    plain, full = _both(monkeypatch, send)
    assert plain == full
    assert plain[1][0].startswith(b"POST /v1/chat/secure_completion?x=1 HTTP/1.1\r\nHost: ")
    assert plain[1][0].endswith(b"\r\n\r\nhello") and plain[1][2] is True
    assert Exchange(b"POST", b"/", FIELDS)._h11 is None  # no h11 connection made


@pytest.mark.parametrize(
    ("method", "target", "fields", "body"),
    [
        (b"POST", b"/", [(b"Content-Length", b"5")], [b"hello"]),  # no Host
        (b"POST", b"/", [(b"Host", b"a"), (b"Host", b"b"), (b"Content-Length", b"1")], [b"x"]),
        (b"PO ST", b"/", FIELDS, [b"hello"]),
        (b"POST", b"/a b", FIELDS, [b"hello"]),
        (b"POST", b"/\x00", FIELDS, [b"hello"]),
        (b"POST", b"/", FIELDS, [b"hello!"]),  # too much
        (b"POST", b"/", FIELDS, [b"hell"]),  # too little
        (b"POST", b"/", FIELDS, [b"hel", b"lo!"]),
        (b"POST", b"/", FIELDS, [b"hello", b""]),
    ],
)
def test_a_plain_request_is_refused_as_h11_refuses_it(monkeypatch, method, target, fields, body):
    def send() -> tuple[bytes, bool]:
        sent = Exchange(method, target, fields)
        parts = [part for chunk in body for part in sent.body_parts(chunk)]
        return b"".join(parts) + sent.end_of_request(), sent.request_complete

    plain, full = _both(monkeypatch, send)
    assert plain == full


def test_sending_after_the_end_or_an_error_is_refused_as_h11_refuses_it(monkeypatch):
    def after_end() -> None:
        sent = Exchange(b"POST", b"/", FIELDS)
        sent.body_parts(b"hello")
        sent.end_of_request()
        sent.body_parts(b"more")

    def after_error() -> None:
        sent = Exchange(b"POST", b"/", FIELDS)
        with pytest.raises(httpcore2.LocalProtocolError):
            sent.body_parts(b"too long")
        sent.end_of_request()

    for send in (after_end, after_error):
        plain, full = _both(monkeypatch, send)
        assert plain == full and plain[0] == "LocalProtocolError"


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")],
        [(b"Host", b"h"), (b"Content-Length", b"0"), (b"Upgrade", b"websocket")],
        [(b"Host", b"h"), (b"Content-Length", b"0"), (b"Expect", b"100-continue")],
        [(b"Host", b"h")],  # no declared length
    ],
)
def test_a_request_the_state_machine_acts_on_goes_through_h11(fields):
    assert Exchange(b"POST", b"/", fields)._h11 is not None
    assert Exchange(b"CONNECT", b"h:443", [(b"Host", b"h"), (b"Content-Length", b"0")])._h11


ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nto the end",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n \r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("method", [b"POST", b"HEAD"])
def test_an_answer_to_a_plain_request_is_read_as_through_h11(monkeypatch, answer, method):
    def receive() -> tuple[Any, ...]:
        sent = Exchange(method, b"/", FIELDS)
        sent.body_parts(b"hello")
        sent.end_of_request()
        taken, head = sent.take_head(memoryview(answer))
        assert head is not None
        rest = answer[taken:]
        chunks: list[bytes] = []
        done = head.length is not None
        if not done:
            chunks, done = sent.body_chunks(rest)
            if not done:
                more, done = sent.body_chunks(b"")
                chunks += more
        return head, chunks, done, sent.h11_cycle_complete if head.length is None else None

    plain, full = _both(monkeypatch, receive)
    assert plain == full


def test_remembered_request_lines_are_bounded(monkeypatch):
    monkeypatch.setattr(_http11_plain, "_checked_lines", set())
    for index in range(_http11_plain._BOUND + 10):
        Exchange(b"POST", b"/%d" % index, FIELDS)
    assert 0 < len(_http11_plain._checked_lines) <= _http11_plain._BOUND
    # A line once refused is never remembered: refused again, as h11 refuses it.
    for _ in range(2):
        with pytest.raises(httpcore2.LocalProtocolError, match="Illegal target characters"):
            Exchange(b"POST", b"/a b", FIELDS)
    assert (b"POST", b"/a b") not in _http11_plain._checked_lines


@pytest.mark.parametrize("target", [b"/v1/chat?api_key=s3cr3t", b"/v1/chat?", b"/p?a=1&tok=t0k"])
def test_a_target_with_a_query_is_checked_every_time_and_never_kept(monkeypatch, target):
    # A base URL's query may carry a credential: it must not outlive the client in the cache.
    monkeypatch.setattr(_http11_plain, "_checked_lines", set())
    Exchange(b"POST", b"/plain", FIELDS)
    for _ in range(2):
        assert Exchange(b"POST", target, FIELDS).head.startswith(b"POST " + target + b" ")
        with pytest.raises(httpcore2.LocalProtocolError, match="Illegal target characters"):
            Exchange(b"POST", target + b" x", FIELDS)
    assert _http11_plain._checked_lines == {(b"POST", b"/plain")}
