"""Interim (1xx) responses before the final one, as ``_http11.Exchange`` skips them: up to
their bounds (``_http11_limits``: how many, and how many bytes together) they are skipped on
both parse paths, whatever the reads' sizes; one past either bound refuses the response as
malformed, without quoting what the server sent."""

from __future__ import annotations

import httpcore2
import pytest

from nomyo_native._http11 import Exchange, ResponseHead
from nomyo_native._http11_limits import MAX_HEAD_BYTES, MAX_INTERIM_BYTES, MAX_INTERIM_RESPONSES

# A request of declared length goes h11's checks without its state machine ("plain"); one
# without goes through h11's connection ("h11"): interim heads are skipped by different code.
REQUESTS = {
    "plain": (b"POST", [(b"Host", b"example"), (b"Content-Length", b"0")]),
    "h11": (b"GET", [(b"Host", b"example")]),
}
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SECRET = b"interim-secret-5c1d"
STATUSES = [b"100 Continue", b"102 Processing", b"103 Early Hints"]


def interim(status: bytes, size: int = 0) -> bytes:
    """An interim head with ``status``, padded with a header to ``size`` bytes (if given)."""
    bare = b"HTTP/1.1 " + status + b"\r\nX-Trace: " + SECRET + b"\r\n\r\n"
    if size <= len(bare):
        return bare
    pad = b"X-Pad: " + b"p" * (size - len(bare) - len(b"X-Pad: \r\n")) + b"\r\n"
    head = bare[:-2] + pad + b"\r\n"
    assert len(head) == size
    return head


def exchange(path: str) -> Exchange:
    method, fields = REQUESTS[path]
    sent = Exchange(method, b"/", fields)
    sent.end_of_request()
    return sent


def feed(sent: Exchange, arrivals: list[bytes]) -> ResponseHead | None:
    """``arrivals`` received one after another: the final head once found."""
    pending = b""
    for data in arrivals:
        pending += data
        taken, head = sent.take_head(memoryview(pending))
        pending = pending[taken:]
        if head is not None:
            return head
    return None


def arrivals(wire: bytes, split: str) -> list[bytes]:
    if split == "whole":
        return [wire]
    if split == "per head":
        return [part + b"\r\n\r\n" for part in wire.split(b"\r\n\r\n")[:-1]] + [b"ok"]
    return [wire[i : i + 7] for i in range(0, len(wire), 7)]  # "7 bytes a read"


@pytest.mark.parametrize("path", sorted(REQUESTS))
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("split", ["whole", "per head", "7 bytes a read"])
@pytest.mark.parametrize("count", [1, 2, MAX_INTERIM_RESPONSES])
def test_interim_responses_up_to_the_bound_are_skipped(
    path: str, status: bytes, split: str, count: int
) -> None:
    wire = interim(status) * count + FINAL
    head = feed(exchange(path), arrivals(wire, split))
    assert head is not None and head.status == 200 and head.length == 2


@pytest.mark.parametrize("path", sorted(REQUESTS))
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("split", ["whole", "per head", "7 bytes a read"])
@pytest.mark.parametrize("extra", [1, 2, 1000])
def test_interim_responses_past_the_bound_are_refused(
    path: str, status: bytes, split: str, extra: int
) -> None:
    wire = interim(status) * (MAX_INTERIM_RESPONSES + extra) + FINAL
    with pytest.raises(httpcore2.RemoteProtocolError, match="interim") as caught:
        feed(exchange(path), arrivals(wire, split))
    assert str(MAX_INTERIM_RESPONSES) in str(caught.value)
    assert SECRET.decode() not in str(caught.value)


@pytest.mark.parametrize("path", sorted(REQUESTS))
@pytest.mark.parametrize("heads", [1, 2, 4, MAX_INTERIM_RESPONSES])
def test_interim_heads_up_to_their_byte_bound_together_are_skipped(path: str, heads: int) -> None:
    # Exactly MAX_INTERIM_BYTES in ``heads`` heads (each within one head's bound).
    size, rest = divmod(MAX_INTERIM_BYTES, heads)
    sizes = [size] * (heads - 1) + [size + rest]
    assert sum(sizes) == MAX_INTERIM_BYTES and max(sizes) <= MAX_HEAD_BYTES
    wire = b"".join(interim(b"103 Early Hints", n) for n in sizes) + FINAL
    head = feed(exchange(path), arrivals(wire, "whole"))
    assert head is not None and head.status == 200


@pytest.mark.parametrize("path", sorted(REQUESTS))
@pytest.mark.parametrize("heads", [2, 4, MAX_INTERIM_RESPONSES])
@pytest.mark.parametrize("over", [1, 4096])
def test_interim_heads_past_their_byte_bound_together_are_refused(
    path: str, heads: int, over: int
) -> None:
    size, rest = divmod(MAX_INTERIM_BYTES, heads)
    sizes = [size] * (heads - 1) + [size + rest + over]
    wire = b"".join(interim(b"103 Early Hints", n) for n in sizes) + FINAL
    with pytest.raises(httpcore2.RemoteProtocolError, match="interim") as caught:
        feed(exchange(path), arrivals(wire, "per head"))
    assert str(MAX_INTERIM_BYTES) in str(caught.value)
    assert SECRET.decode() not in str(caught.value)


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_the_bound_is_per_exchange(path: str) -> None:
    # Each request on a connection gets its own allowance: a server that used all of it on one
    # answer does not make the next answer's single 100 Continue fail.
    for _ in range(3):
        wire = interim(b"100 Continue") * MAX_INTERIM_RESPONSES + FINAL
        head = feed(exchange(path), arrivals(wire, "whole"))
        assert head is not None and head.status == 200
