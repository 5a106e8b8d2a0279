"""The async driver's direct path (``_async_direct``) against the path through httpx2's
transport and models, for the framings and failures ``test_direct_exchange`` does not script:
chunked and close-delimited bodies, bodies growing past their cap, interim (1xx) answers, a
stalled server, a cancellation mid-body. Each answer is followed by a plain one: both paths
must give the same answers and exceptions, send the same bytes, and use the same number of
connections (a connection left half-read must never carry the next request)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from nomyo_native._async_driver import AsyncDriver
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES
from nomyo_native.errors import ResponseFormatError

PATH = "/v1/chat/secure_completion?tier=standard"
HEADERS = {"X-Payload-ID": "p-1", "Content-Type": "application/octet-stream"}
BODY = b'{"version": "1.0"}'
OK_CAP = 4096
# A stalled server is waited for this long (a read timeout, not a measurement); any other
# scenario gets a read timeout no loaded machine reaches.
STALL_TIMEOUT = 0.5
TIMEOUT = 10.0
NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"


def _chunked(status: int, *chunks: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return b"HTTP/1.1 %d X\r\ntransfer-encoding: chunked\r\n\r\n%s%s" % (status, body, end)


# Name: (the first answer's bytes, whether the server then closes, the expected outcome kind,
# the connections both requests took: 1 when the first was read to its end and reused).
SCENARIOS: dict[str, tuple[bytes, bool, str, int]] = {
    "chunked": (_chunked(200, b"he", b"llo"), False, "answer", 1),
    "chunked error body": (_chunked(500, b"<html>", b"oops"), False, "answer", 1),
    "chunked 200 growing past its cap": (
        _chunked(200, b"x" * 3000, b"y" * 3000),
        False,
        "ResponseFormatError",
        2,
    ),
    # An error body is capped by the error bodies' cap, not by the 200's.
    "chunked error body above the 200's cap": (
        _chunked(503, b"x" * OK_CAP, b"y"),
        False,
        "answer",
        1,
    ),
    # Dropped unread (the status says enough): the connection goes with it.
    "chunked error growing past its cap": (
        _chunked(401, b"x" * MAX_ERROR_BODY_BYTES, b"y"),
        False,
        "answer",
        2,
    ),
    "close-delimited": (b"HTTP/1.1 200 X\r\nconnection: close\r\n\r\nhello", True, "answer", 2),
    "close-delimited HTTP/1.0": (b"HTTP/1.0 200 X\r\n\r\nhello", True, "answer", 2),
    "close-delimited growing past its cap": (
        b"HTTP/1.1 200 X\r\n\r\n" + b"x" * (OK_CAP + 1),
        True,
        "ResponseFormatError",
        2,
    ),
    "interim answers first": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        b"HTTP/1.1 200 X\r\ncontent-length: 2\r\n\r\nhi",
        False,
        "answer",
        1,
    ),
    "chunked cut mid-body": (_chunked(200, b"hel", end=b"5\r\nhe"), True, "RemoteProtocolError", 2),
    "a broken chunk size": (_chunked(200, b"hel", end=b"zz\r\n"), False, "RemoteProtocolError", 2),
    "bytes after the body": (
        b"HTTP/1.1 200 X\r\ncontent-length: 2\r\n\r\nhiJUNK",
        False,
        "answer",
        2,
    ),
    "a bodyless status": (b"HTTP/1.1 204 X\r\n\r\n", False, "answer", 1),
    "stalled mid-body": (
        b"HTTP/1.1 200 X\r\ncontent-length: 10\r\n\r\nab",
        False,
        "ReadTimeout",
        2,
    ),
    "stalled mid-chunk": (_chunked(200, b"ab", end=b"9\r\nab"), False, "ReadTimeout", 2),
}


class Server:
    """Answers the first request with ``first`` (then closes if ``close``), any later one with
    :data:`NEXT`; records every request and counts connections."""

    def __init__(self, first: bytes, close: bool) -> None:
        self.first: bytes | None = first
        self.close = close
        self.requests: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                answer, self.first = (self.first or NEXT), None
                writer.write(answer)
                await writer.drain()
                if self.close and answer is not NEXT:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client dropped the connection
        finally:
            writer.close()


def _outcome(exc: BaseException) -> tuple[Any, ...]:
    request = getattr(exc, "_request", None)  # httpx2 keeps it here; .request raises if unset
    sent = None if request is None else (request.method, str(request.url), request.content)
    return (type(exc).__name__, str(exc), type(exc.__cause__).__name__, sent)


async def _run(
    first: bytes, close: bool, direct: bool, cancel: bool, read_timeout: float = TIMEOUT
) -> dict[str, Any]:
    server = Server(first, close)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    driver = AsyncDriver(
        timeout=httpx2.Timeout(TIMEOUT, read=read_timeout),
        ssl_context=None,
        auth=None,
        transport=None,
        sleep=None,
    )
    sender = driver.state().sender
    assert sender._direct is not None
    if not direct:
        sender._direct = None  # the path through httpx2's transport and models
    url = f"http://127.0.0.1:{port}{PATH}"
    outcomes: list[tuple[Any, ...]] = []
    for attempt in range(2):
        sending = asyncio.ensure_future(driver.send("POST", url, HEADERS, BODY, OK_CAP, 10.0))
        if cancel and attempt == 0:
            while not server.requests:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the head and what came of the body read
            sending.cancel()
        try:
            answer = await sending
        except asyncio.CancelledError:
            outcomes.append(("cancelled",))
        except (httpx2.HTTPError, ResponseFormatError) as exc:
            outcomes.append(_outcome(exc))
        else:
            outcomes.append(("answer", answer.status, bytes(answer.body), answer.retry_after))
    await driver.aclose()
    listener.close()
    await listener.wait_closed()
    sent = [request.replace(str(port).encode(), b"PORT") for request in server.requests]
    shown = [tuple(str(part).replace(str(port), "PORT") for part in o) for o in outcomes]
    return {"outcomes": shown, "sent": sent, "connections": server.connections}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_the_direct_path_frames_and_fails_as_the_path_through_httpx2(name: str) -> None:
    first, close, kind, connections = SCENARIOS[name]
    read_timeout = STALL_TIMEOUT if kind == "ReadTimeout" else TIMEOUT
    direct = await _run(first, close, True, False, read_timeout)
    modelled = await _run(first, close, False, False, read_timeout)
    assert direct == modelled
    assert direct["outcomes"][0][0] == kind
    assert direct["outcomes"][1] == ("answer", "200", "b'next'", "None")
    assert direct["connections"] == connections


@pytest.mark.parametrize(
    "first",
    [
        b"HTTP/1.1 200 X\r\ncontent-length: 10\r\n\r\nab",
        _chunked(200, b"ab", end=b"9\r\nab"),
        b"HTTP/1.1 200 X\r\n\r\nab",
    ],
    ids=["content-length", "chunked", "close-delimited"],
)
async def test_a_cancellation_mid_body_never_leaves_the_connection_for_the_next(
    first: bytes,
) -> None:
    direct = await _run(first, False, direct=True, cancel=True)
    modelled = await _run(first, False, direct=False, cancel=True)
    assert direct == modelled
    assert direct["outcomes"] == [("cancelled",), ("answer", "200", "b'next'", "None")]
    assert direct["connections"] == 2
