"""A long response head line that is refused costs a pass over it, not a backtracking search:
h11's field expression (``OWS value? OWS``) and the one-pass reader's tried every split of a
run of blanks before refusing a line, quadratic in its length (a 100 KiB line of blanks and a
NUL held the event loop for minutes). Heads with a byte h11 refuses in any line (NUL, VT, FF,
a CR not ending a line) are refused before h11 reads them; the one-pass reader's expression is
possessive."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h11
import httpcore2
import pytest

from nomyo_native import _http11
from nomyo_native._http11 import MAX_HEAD_BYTES, Exchange
from nomyo_native._http11_head import read_plain_head
from nomyo_native._http11_plain import read_response_head

BLANKS = MAX_HEAD_BYTES - 100
STATUS = b"HTTP/1.1 200 OK\r\n"
# Heads h11 refuses for a byte in them, after a long run of blanks where backtracking hurts.
REFUSED = [
    STATUS + b"X:" + b" " * BLANKS + b"\x00\r\n\r\n",
    STATUS + b"X: a" + b" \t" * (BLANKS // 2) + b"\x0c\r\n\r\n",
    STATUS + b"X:" + b" " * BLANKS + b"\rb\r\n\r\n",
    STATUS + b"X: a" + b" " * BLANKS + b"\x0bb\r\n\r\n",
    b"HTTP/1.1 200 " + b" " * BLANKS + b"\x00\r\n\r\n",
]
SECRET = b"sk-live-0123456789"


def _h11_refuses(head: bytes) -> bool:
    try:
        read_response_head(head)
    except h11.ProtocolError:
        return True
    return False


@pytest.mark.parametrize("control", [b"\x00", b"\x0b", b"\x0c", b"\r"])
@pytest.mark.parametrize("where", ["reason", "name", "value"])
def test_h11_refuses_every_head_the_control_check_refuses(control: bytes, where: str) -> None:
    """The check refuses nothing h11 would take: a short head with the byte h11 reads at once."""
    lines = {
        "reason": b"HTTP/1.1 200 O" + control + b"K\r\nA: b\r\n\r\n",
        "name": STATUS + b"A" + control + b"B: c\r\n\r\n",
        "value": STATUS + b"A: b" + control + b"c\r\n\r\n",
    }
    assert _h11_refuses(lines[where])


@pytest.mark.parametrize("index", range(len(REFUSED)))
@pytest.mark.parametrize("plain_request", [True, False])
def test_a_head_with_a_control_byte_is_refused_before_h11_reads_it(
    index: int, plain_request: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: object) -> None:
        raise AssertionError("h11 was given a head with a control byte")

    monkeypatch.setattr(_http11, "read_response_head", never)
    monkeypatch.setattr(Exchange, "_receive", never)
    # A declared length takes the plain path; a chunked request goes through h11's connection.
    framing = (b"Content-Length", b"1") if plain_request else (b"Transfer-Encoding", b"chunked")
    exchange = Exchange(b"POST", b"/x", [(b"Host", b"h"), framing])
    head = REFUSED[index].replace(b"X:", b"X: " + SECRET, 1)
    with pytest.raises(httpcore2.RemoteProtocolError) as refused:
        exchange.take_head(memoryview(head))
    assert SECRET.decode() not in str(refused.value)


def test_interim_then_a_final_head_with_a_control_byte_is_refused() -> None:
    exchange = Exchange(b"POST", b"/x", [(b"Host", b"h"), (b"Content-Length", b"1")])
    head = b"HTTP/1.1 100 Continue\r\n\r\n" + STATUS + b"A: b\x00\r\n\r\n"
    with pytest.raises(httpcore2.RemoteProtocolError):
        exchange.take_head(memoryview(head))


@pytest.mark.parametrize("byte", [b"\x01", b"\x08", b"\x0e", b"\x1f", b"\x7f", b"\xe9"])
def test_heads_with_bytes_h11_takes_still_read_as_h11_reads_them(byte: bytes) -> None:
    """Controls h11 takes in a value or a reason (its ``[^\\x00\\s]``) are not refused."""
    exchange = Exchange(b"POST", b"/x", [(b"Host", b"h"), (b"Content-Length", b"1")])
    head = b"HTTP/1.1 200 O" + byte + b"K\r\nA: " + byte + b" x \t\r\nContent-Length: 2\r\n\r\n"
    event = read_response_head(head)
    assert isinstance(event, h11.Response)
    taken, got = exchange.take_head(memoryview(head))
    assert taken == len(head)
    assert got is not None and got.headers == event.headers.raw_items()
    assert got.reason == event.reason and got.length == 2


def test_the_one_pass_reader_refuses_a_long_bad_line_without_backtracking() -> None:
    """Run where a quadratic search cannot finish: a 1 MiB refused line under a CPU-time limit
    some thousand times what one pass over it takes (the limit, not a measured time, decides)."""
    script = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
        from nomyo_native._http11_head import read_plain_head
        blanks = 1 << 20
        heads = [
            b"HTTP/1.1 200 OK\\r\\nX:" + b" " * blanks + b"\\x00\\r\\n\\r\\n",
            b"HTTP/1.1 200 OK\\r\\nX: " + b"a " * (blanks // 2) + b"\\xe9\\r\\n\\r\\n",
            b"HTTP/1.1 200 OK\\r\\n" + b"X: a\\r\\n" * (blanks // 6) + b"\\x00\\r\\n\\r\\n",
            b"HTTP/1.1 200 " + b" " * blanks + b"\\xe9\\r\\n\\r\\n",
        ]
        print(sum(read_plain_head(head) is None for head in heads))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "4"


def test_the_one_pass_reader_still_reads_blanks_as_h11_does() -> None:
    head = STATUS + b"A:  \t \r\nB: x \t y\t \r\nC:x\r\n\r\n"
    plain = read_plain_head(head)
    event = read_response_head(head)
    assert isinstance(event, h11.Response)
    assert plain == (200, b"OK", event.headers.raw_items())


def test_a_long_refused_trailer_line_is_refused_without_backtracking() -> None:
    """As for heads: a chunked body's trailer line of 100 KiB of blanks and a NUL, refused
    within a CPU-time limit some thousand times what one pass over it takes."""
    script = textwrap.dedent(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (5, 5))
        import httpcore2
        from nomyo_native._http11 import Exchange
        exchange = Exchange(b"POST", b"/x", [(b"Host", b"h"), (b"Content-Length", b"1")])
        exchange.body_parts(b"a")
        exchange.end_of_request()
        head = b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"
        exchange.take_head(memoryview(head))
        try:
            exchange.body_chunks(b"1\\r\\na\\r\\n0\\r\\nX:" + b" " * 100_000 + b"\\x00\\r\\n\\r\\n")
        except httpcore2.RemoteProtocolError:
            print("refused")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "refused"
