"""``_http11_head.read_plain_head`` against h11's reader on generated response heads, valid and
malformed: whatever the one-pass reader takes, h11 takes too and reads the same way (status,
reason, version, every field as received, in order); what it leaves, h11 reads or refuses as
before."""

from __future__ import annotations

import random

import h11
import httpcore2
import pytest

from nomyo_native._http11 import Exchange
from nomyo_native._http11_head import read_plain_head
from nomyo_native._http11_plain import read_response_head

CASES = 6000
# Each list: what servers send, then what h11 takes or refuses that a server seldom sends.
VERSIONS = ([b"HTTP/1.1"], [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/11"])
STATUSES = ([b"200", b"204", b"401", b"503", b"999"], [b"100", b"101", b"199", b"20", b"2000"])
REASONS = ([b" OK", b" Not Found", b" ", b" a\tb"], [b"", b" \xe9t\xe9", b" a\x00", b" x\x7f"])
NAMES = (
    [b"Content-Type", b"Date", b"Server", b"X-Payload-ID", b"connection", b"Content-Length"],
    [b"Bad Name", b"", b"X@", b"x\xe9", b"Transfer-Encoding"],
)
VALUES = (
    [b"application/json", b"keep-alive", b"close", b"uvicorn", b"Mon, 01 Jan 2024 0:00 GMT"],
    [b"", b" padded \t", b"a  b", b"\xe9", b"a\x00b", b"a\x0bb", b"\tx", b"chunked", b"1"],
)
LENGTHS = ([b"12", b"0", b"007", b"1" * 20], [b"1" * 21, b"1, 1", b"+1", b"", b" 3 ", b"1,2"])
# Bytes a mutation puts anywhere in a head.
NOISE = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b"\xff", b"\x7f", b"\r\n\r\n", b"A"]


def _pick(rng: random.Random, choices: tuple[list[bytes], list[bytes]]) -> bytes:
    return rng.choice(choices[0] if rng.random() < 0.85 else choices[1])


def _head(rng: random.Random) -> bytes:
    eol = rng.choice([b"\r\n"] * 10 + [b"\n"])
    lines = [_pick(rng, VERSIONS) + b" " + _pick(rng, STATUSES) + _pick(rng, REASONS)]
    for _ in range(rng.randint(0, 6)):
        name = _pick(rng, NAMES)
        value = _pick(rng, LENGTHS if name == b"Content-Length" else VALUES)
        sep = rng.choice([b": ", b":", b":\t", b" : ", b":  "])
        lines.append(name + sep + value)
    head = eol.join(lines) + eol + eol
    for _ in range(rng.choice([0, 0, 0, 0, 1, 2])):
        at = rng.randint(0, len(head))
        head = head[:at] + rng.choice(NOISE) + head[at + rng.choice([0, 1]) :]
    return head


def _h11(head: bytes) -> object:
    try:
        return read_response_head(head)
    except h11.ProtocolError as exc:
        return exc


@pytest.mark.parametrize("start", range(0, CASES, 1000))
def test_what_the_one_pass_reader_takes_h11_reads_the_same(start: int) -> None:
    taken = 0
    for seed in range(start, start + 1000):
        head = _head(random.Random(seed))
        plain = read_plain_head(head)
        if plain is None:
            continue
        taken += 1
        event = _h11(head)
        assert isinstance(event, h11.Response), (seed, head, event)
        status, reason, fields = plain
        assert (status, reason, b"1.1") == (event.status_code, event.reason, event.http_version)
        assert fields == event.headers.raw_items(), (seed, head)
    # The generator's plain heads are common enough for the comparison to mean something.
    assert taken > 100


def test_a_servers_usual_head_is_read_in_one_pass() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-length: 1234\r\ncontent-type: application/octet-stream\r\n\r\n"
    )
    assert read_plain_head(head) == (
        200,
        b"OK",
        [
            (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
            (b"server", b"uvicorn"),
            (b"content-length", b"1234"),
            (b"content-type", b"application/octet-stream"),
        ],
    )


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",  # interim
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\n\n",  # bare LF
        b"HTTP/1.1 200\r\n\r\n",  # no reason: h11 takes it
        b"HTTP/1.1 200 OK\r\nX: \xe9\r\n\r\n",  # obs-text: h11 takes it
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",  # h11 normalizes it
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",  # h11 merges
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 21 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
    ],
)
def test_other_heads_are_left_to_h11(head: bytes) -> None:
    assert read_plain_head(head) is None


@pytest.mark.parametrize("seed", range(400))
def test_an_exchange_reads_every_generated_head_as_before(seed: int) -> None:
    """Through ``Exchange.take_head``: the same head, or the same refusal, as h11 alone."""
    head = _head(random.Random(seed))
    exchange = Exchange(b"POST", b"/x", [(b"Host", b"h"), (b"Content-Length", b"1")])
    event = _h11(head)
    try:
        _, got = exchange.take_head(memoryview(head))
    except httpcore2.RemoteProtocolError as exc:
        assert not isinstance(event, h11.Response) or b"\n " in head or b"\n\t" in head, exc
        return
    if isinstance(event, h11.Response) and got is not None:
        assert (got.status, got.reason) == (event.status_code, event.reason)
        assert got.headers == event.headers.raw_items()
        assert got.http_version == b"HTTP/" + event.http_version
