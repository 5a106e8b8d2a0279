"""The async driver's direct path to its own transport's pool (``_async_direct``) against the
path through httpx2's transport and response models: the same bytes on the wire, the same
answers, the same exceptions, for every kind of answer a raw loopback server gives."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

import nomyo_native
from nomyo_native import _async_driver
from nomyo_native._async_direct import DirectExchange
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport
from nomyo_native._http_body import LIMITS
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES
from nomyo_native.errors import ResponseFormatError

PATH = "/v1/chat/secure_completion"
HEADERS = {
    "X-Payload-ID": "p-1",
    "X-Public-Key": "-----BEGIN%20PUBLIC%20KEY-----",
    "Content-Type": "application/octet-stream",
    "Accept-Encoding": "identity",
}
BODY = b'{"version": "1.0"}'
OK_CAP = 4096


def _answer(status: int, body: bytes = b"", *fields: str, length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    head = [f"HTTP/1.1 {status} X", f"content-length: {declared}", *fields]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# What the server does with each request, in order: the raw bytes it answers, and whether it
# then closes the connection (None: it closes it without a word).
SCRIPT: list[tuple[bytes | None, bool]] = [
    (_answer(200, b"hello"), False),
    (_answer(503, b"later", "Retry-After: 2"), False),
    (_answer(401, b"x" * 10, length=MAX_ERROR_BODY_BYTES + 1), False),
    (_answer(200, b"x" * 10, length=OK_CAP + 1), False),
    (_answer(200, b"zz", "Content-Encoding: gzip"), False),
    (_answer(200, b"ha", length=8), True),
    (None, True),
    # Last: once the jar holds a cookie, every request goes through httpx2's models.
    (_answer(401, b"", "Set-Cookie: route=r7; Path=/"), False),
    (_answer(200, b"with the cookie"), False),
]


class RawServer:
    """Answers each request with the next scripted bytes, recording every request as sent."""

    def __init__(self, script: list[tuple[bytes | None, bool]]) -> None:
        self.requests: list[bytes] = []
        self.script = list(script)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:] if line]
                length = int(dict((n.lower(), v) for n, v in fields)[b"content-length"])
                self.requests.append(head + await reader.readexactly(length))
                answer, close = self.script.pop(0)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if close:
                    return
        except asyncio.IncompleteReadError:
            return  # the client dropped the connection (an answer it refused unread)
        finally:
            writer.close()


Outcome = tuple[str, Any]


async def _run(direct: bool) -> tuple[list[Outcome], list[bytes]]:
    server = RawServer(SCRIPT)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    driver = AsyncDriver(timeout=5.0, ssl_context=None, auth=None, transport=None, sleep=None)
    sender = driver.state().sender
    assert sender._direct is not None
    if not direct:
        sender._direct = None  # the path through httpx2's transport and models
    outcomes: list[Outcome] = []
    url = f"http://127.0.0.1:{port}{PATH}"
    for _ in SCRIPT:
        try:
            answer = await driver.send("POST", url, HEADERS, BODY, OK_CAP, 10.0)
        except (httpx2.HTTPError, ResponseFormatError) as exc:
            try:
                request: httpx2.Request | None = exc.request  # type: ignore[union-attr]
            except (AttributeError, RuntimeError):
                request = None
            where = None if request is None else (request.method, str(request.url) == url)
            outcomes.append((type(exc).__name__, (str(exc), where)))
        else:
            outcomes.append(("answer", (answer.status, bytes(answer.body), answer.retry_after)))
    await driver.aclose()
    listener.close()
    await listener.wait_closed()
    return outcomes, [r.replace(str(port).encode(), b"PORT") for r in server.requests]


async def test_the_direct_path_answers_and_fails_as_the_path_through_httpx2():
    direct, direct_sent = await _run(direct=True)
    modelled, modelled_sent = await _run(direct=False)
    assert direct == modelled
    assert direct_sent == modelled_sent  # byte for byte, the port aside
    assert [kind for kind, _ in direct] == [
        "answer",
        "answer",
        "answer",
        "ResponseFormatError",
        "UnsupportedContentEncodingError",
        "RemoteProtocolError",
        "RemoteProtocolError",
        "answer",
        "answer",
    ]
    assert direct[0][1] == (200, b"hello", None)
    assert direct[1][1] == (503, b"later", 2.0)
    assert direct[2][1] == (401, b"", None)  # an oversized error body: dropped unread
    # A network failure carries the request it was raised for, as httpx2's client attaches it.
    assert direct[5][1][1] == direct[6][1][1] == ("POST", True)
    assert "expected 8" in direct[5][1][0]
    # The cookie the server set went back with the next request, on both paths.
    assert b"route=r7" in direct_sent[8] and b"route=r7" not in direct_sent[7]


def test_only_the_librarys_own_transport_is_reached_directly():
    made: list[Callable[[], httpx2.AsyncBaseTransport]] = [
        lambda: httpx2.MockTransport(lambda request: httpx2.Response(200)),
        lambda: type("Subclass", (AsyncioTLSTransport,), {})(None, LIMITS),
        lambda: httpx2.AsyncHTTPTransport(),
    ]

    async def direct_of(transport: httpx2.AsyncBaseTransport | None) -> DirectExchange | None:
        driver = AsyncDriver(
            timeout=5.0, ssl_context=None, auth=None, transport=transport, sleep=None
        )
        direct = driver.state().sender._direct
        await driver.aclose()
        return direct

    assert asyncio.run(direct_of(None)) is not None
    for make in made:
        assert asyncio.run(direct_of(make())) is None


async def test_an_answer_logged_at_info_goes_through_httpx2s_model(caplog):
    server = RawServer([(_answer(200, b"hello"), False)])
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    driver = AsyncDriver(timeout=5.0, ssl_context=None, auth=None, transport=None, sleep=None)
    with caplog.at_level(logging.INFO, logger="httpx2"):
        answer = await driver.send("POST", f"http://127.0.0.1:{port}{PATH}", HEADERS, BODY, 64, 9)
    await driver.aclose()
    listener.close()
    await listener.wait_closed()
    assert (answer.status, bytes(answer.body)) == (200, b"hello")
    lines = [record.getMessage() for record in caplog.records if record.name == "httpx2"]
    assert lines == [f'HTTP Request: POST http://127.0.0.1:{port}{PATH} "HTTP/1.1 200 X"']


@pytest.mark.parametrize("direct", [True, False])
async def test_a_closed_client_refuses_on_either_path(direct):
    from nomyo_native.errors import ClientClosedError

    driver = AsyncDriver(timeout=5.0, ssl_context=None, auth=None, transport=None, sleep=None)
    state = driver.state()
    if not direct:
        state.sender._direct = None
    await state.http.aclose()
    with pytest.raises(ClientClosedError):
        await driver.send("POST", "http://127.0.0.1:9/x", HEADERS, BODY, 64, 9)


async def test_without_httpx2s_private_names_every_request_takes_its_transport(monkeypatch):
    # A later httpx2 that moved them: the module still imports, with the direct path off.
    monkeypatch.setitem(
        sys.modules, "httpx2._transports.default", types.ModuleType("httpx2._transports.default")
    )
    monkeypatch.setattr(nomyo_native, "_async_direct", nomyo_native._async_direct)
    monkeypatch.delitem(sys.modules, "nomyo_native._async_direct")
    without = importlib.import_module("nomyo_native._async_direct")
    assert without.AVAILABLE is False
    monkeypatch.setattr(_async_driver, "_async_direct", without)

    server = RawServer([(_answer(200, b"hello"), False)])
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    driver = AsyncDriver(timeout=5.0, ssl_context=None, auth=None, transport=None, sleep=None)
    assert driver.state().sender._direct is None
    answer = await driver.send("POST", f"http://127.0.0.1:{port}{PATH}", HEADERS, BODY, 64, 9)
    await driver.aclose()
    listener.close()
    await listener.wait_closed()
    assert (answer.status, bytes(answer.body)) == (200, b"hello")
    assert len(server.requests) == 1 and server.requests[0].endswith(BODY)


@pytest.mark.parametrize("traced", [False, True])
async def test_an_attempt_skips_httpcore2s_models_unless_its_steps_are_traced(
    traced: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untraced, the pool gets the head and the body bytes (no httpcore2 request); with
    httpcore2's DEBUG lines wanted, it gets the request they name, and logs its steps."""
    server = RawServer([(_answer(200, b"hello"), False)])
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    driver = AsyncDriver(timeout=5.0, ssl_context=None, auth=None, transport=None, sleep=None)
    pool = type(driver.state().sender._direct._pool)  # type: ignore[union-attr]
    calls: list[str] = []
    for name in ("send_plain", "handle_async_request"):
        original = getattr(pool, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(pool, name, spy)
    with caplog.at_level(logging.DEBUG if traced else logging.INFO, logger="httpcore2"):
        answer = await driver.send("POST", f"http://127.0.0.1:{port}{PATH}", HEADERS, BODY, 64, 9)
    await driver.aclose()
    listener.close()
    await listener.wait_closed()
    assert (answer.status, bytes(answer.body)) == (200, b"hello")
    assert calls == (["handle_async_request"] if traced else ["send_plain"])
    steps = [r.getMessage().split()[0] for r in caplog.records if r.name.startswith("httpcore2")]
    if traced:
        assert "send_request_headers.started" in steps and "response_closed.complete" in steps
    else:
        assert steps == []
