"""``_http11_plain`` against ``h11.Connection`` on generated exchanges: requests of declared
length (valid and not) and the answers a server may give them (interim answers, every framing,
bodies cut, bytes after them, malformed heads), arriving in pieces of any size. Both ways must
send the same bytes, refuse the same things with the same words, parse the same heads and
bodies, and agree on whether the connection may carry another request."""

from __future__ import annotations

import random
from typing import Any

import httpcore2
import pytest

from nomyo_native import _http11
from nomyo_native._http11 import Exchange

CASES = 3000
FRAMINGS = ["length", "length", "chunked", "to the end", "both", "length twice"]
STATUSES = [200, 200, 200, 204, 304, 401, 429, 503, 100, 103, 101, 199, 205, 302, 2000]
# Fields of an answer beside its framing, valid and not.
EXTRA_FIELDS = [
    b"Connection: close",
    b"Connection: keep-alive",
    b"connection: Close, x",
    b"Retry-After: 1",
    b"Transfer-Encoding: gzip, chunked",
    b"Content-Length: +2",
    b"Content-Length: 1, 2",
    b"Bad Name: v",
    b"X-A: a\x00b",
    b"X-A:",
    b"X-A :v",
    b" folded",
]


def _answer(rng: random.Random) -> bytes:
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"])
    framing = rng.choice(FRAMINGS)
    content = b"x" * rng.choice([0, 2, 7])
    fields = []
    if framing in ("length", "both"):
        fields.append(b"Content-Length: %d" % len(content))
    if framing == "length twice":
        fields += [b"Content-Length: %d" % len(content)] * 2
    if framing in ("chunked", "both"):
        fields.append(rng.choice([b"Transfer-Encoding: chunked", b"transfer-encoding: CHUNKED"]))
    if rng.random() < 0.3:
        fields.append(rng.choice(EXTRA_FIELDS))
    eol = rng.choice([b"\r\n"] * 9 + [b"\n"])
    interim = rng.choice([b""] * 4 + [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 E\r\n\r\n"])
    status = b"%d" % rng.choice(STATUSES)
    head = eol.join([version + b" " + status + b" X", *fields]) + eol + eol
    if framing in ("chunked", "both"):
        chunk = b"%x\r\n%s\r\n" % (len(content), content) if content else b""
        body = chunk + rng.choice([b"0\r\n\r\n", b"0\r\nT: 1\r\n\r\n", b"0\r\n", b"zz\r\n"])
    else:
        body = content
    answer = interim + head + body + rng.choice([b"", b"", b"", b"X", b"HTTP/1.1 200 OK\r\n\r\n"])
    return answer[: rng.randint(0, len(answer))] if rng.random() < 0.05 else answer


def _exchange(seed: int) -> list[Any]:
    """One exchange, recorded step by step up to its first refusal."""
    rng = random.Random(seed)
    method = rng.choice([b"POST"] * 16 + [b"HEAD", b"GET", b"PUT", b"PO ST"])
    target = rng.choice([b"/v1/x"] * 9 + [b"/v1/x?q=1"] * 9 + [b"/a b"])
    body = b"y" * rng.choice([3, 18])
    declared = len(body) + rng.choice([0] * 18 + [1, -1])
    fields = [(b"Host", b"h"), (b"Accept", b"*/*"), (b"Content-Length", b"%d" % declared)]
    if rng.random() < 0.15:
        fields.append((b"Connection", rng.choice([b"close", b"keep-alive"])))
    if rng.random() < 0.03:
        fields.append((b"Host", b"h2"))
    answer, ended = _answer(rng), rng.random() < 0.4
    pieces = [rng.choice([rng.randint(1, 30), len(answer) + 1]) for _ in range(len(answer) + 1)]
    steps: list[Any] = []
    try:
        exchange = Exchange(method, target, fields)
        steps.append(exchange.head)
        steps.append(exchange.body_parts(body[:2]) + exchange.body_parts(body[2:]))
        if rng.random() < 0.95:
            steps.append(exchange.end_of_request())
        received, offset, head = bytearray(), 0, None
        while head is None:
            if offset >= len(answer):
                steps.append(str(exchange.end_of_stream_before_head()))
                return steps
            size = pieces.pop()
            received += answer[offset : offset + size]
            offset += size
            taken, head = exchange.take_head(memoryview(received))
            steps.append(taken)
            del received[:taken]
        steps.append(head)
        rest = bytes(received) + answer[offset:]
        reusable = head.keep_alive and exchange.request_complete
        if head.length is None:
            chunks, done = exchange.body_chunks(rest)
            if not done and ended:
                more, done = exchange.body_chunks(b"")
                chunks += more
            steps.append((chunks, done))
            reusable = reusable and done and exchange.h11_cycle_complete
        else:
            steps.append(rest)
        steps.append(("reusable", reusable))
    except (httpcore2.LocalProtocolError, httpcore2.RemoteProtocolError) as exc:
        steps.append((type(exc).__name__, str(exc)))
    return steps


def test_plain_exchanges_go_as_through_h11s_state_machine(monkeypatch: pytest.MonkeyPatch):
    plain = [_exchange(seed) for seed in range(CASES)]
    monkeypatch.setattr(_http11, "plain_request", lambda *args: None)
    full = [_exchange(seed) for seed in range(CASES)]
    for seed in range(CASES):
        assert plain[seed] == full[seed], seed
    # The cases reach every outcome: refused requests, refused and parsed answers, both reuse
    # decisions, bodies read by h11.
    last = [steps[-1] for steps in plain]
    assert sum(step == ("reusable", True) for step in last) > CASES // 10
    assert sum(step == ("reusable", False) for step in last) > CASES // 10
    assert sum(isinstance(step, tuple) and step[0] == "LocalProtocolError" for step in last) > 50
    assert sum(isinstance(step, tuple) and step[0] == "RemoteProtocolError" for step in last) > 50
    read_by_h11 = [step for steps in plain for step in steps if isinstance(step, tuple)]
    assert sum(isinstance(step[0], list) and step[1] is True for step in read_by_h11) > 50
