"""The sync driver's direct path to its own transport's pool (``_sync_direct``) against the
path through httpx2's transport and response models: for every answer the async direct path is
compared on (``test_direct_exchange``'s script and ``test_direct_exchange_framings``' scenarios),
both give the same answers and exceptions (with their request), send the same bytes and take
the same connections (a half-read one never carries the next request)."""

from __future__ import annotations

import importlib
import logging
import socket
import socketserver
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from tests.faults.test_direct_exchange import BODY, HEADERS, OK_CAP, PATH, SCRIPT
from tests.faults.test_direct_exchange_framings import NEXT, SCENARIOS, STALL_TIMEOUT, TIMEOUT

import nomyo_native
from nomyo_native import _sync_driver
from nomyo_native._http_body import LIMITS
from nomyo_native._sync_driver import SyncDriver, _DeadlineTransport
from nomyo_native.errors import ClientClosedError, ResponseFormatError

Answers = list[tuple[bytes | None, bool]]


class _Server(socketserver.ThreadingTCPServer):
    """Answers each request with the next of ``answers`` (None: closes without a word; True:
    closes after it), then with :data:`NEXT`; records every request, counts connections."""

    daemon_threads = True

    def __init__(self, answers: Answers) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.connections += 1
        received = b""
        sock: socket.socket = self.request
        while True:
            while b"\r\n\r\n" not in received:
                data = sock.recv(65536)
                if not data:
                    return  # the client dropped the connection
                received += data
            head, received = received.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(received) < length:
                data = sock.recv(65536)
                if not data:
                    return
                received += data
            server.requests.append(head + b"\r\n\r\n" + received[:length])
            received = received[length:]
            answer, close = server.answers.pop(0) if server.answers else (NEXT, False)
            if answer is not None:
                sock.sendall(answer)
            if answer is None or close:
                return


@contextmanager
def _serving(answers: Answers) -> Iterator[_Server]:
    server = _Server(answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _driver(direct: bool, read_timeout: float = TIMEOUT) -> SyncDriver:
    timeout = httpx2.Timeout(TIMEOUT, read=read_timeout)
    driver = SyncDriver(timeout=timeout, ssl_context=None, auth=None, transport=None, sleep=None)
    assert driver._sender._direct is not None
    if not direct:
        driver._sender._direct = None  # the path through httpx2's transport and models
    return driver


def _outcome(exc: BaseException) -> tuple[Any, ...]:
    request = getattr(exc, "_request", None)  # httpx2 keeps it here; .request raises if unset
    sent = None if request is None else (request.method, str(request.url), request.content)
    return (type(exc).__name__, str(exc), type(exc.__cause__).__name__, sent)


def _run(answers: Answers, requests: int, direct: bool, read_timeout: float = TIMEOUT) -> Any:
    with _serving(answers) as server:
        port = server.server_address[1]
        driver = _driver(direct, read_timeout)
        url = f"http://127.0.0.1:{port}{PATH}"
        outcomes: list[tuple[Any, ...]] = []
        for _ in range(requests):
            try:
                answer = driver.send("POST", url, HEADERS, BODY, OK_CAP, 10.0)
            except (httpx2.HTTPError, ResponseFormatError) as exc:
                outcomes.append(_outcome(exc))
            else:
                outcomes.append(("answer", answer.status, bytes(answer.body), answer.retry_after))
        driver.close()
        sent = [request.replace(str(port).encode(), b"PORT") for request in server.requests]
        shown = [tuple(str(part).replace(str(port), "PORT") for part in o) for o in outcomes]
        return shown, sent, server.connections


def test_the_direct_path_answers_and_fails_as_the_path_through_httpx2() -> None:
    direct = _run(SCRIPT, len(SCRIPT), direct=True)
    modelled = _run(SCRIPT, len(SCRIPT), direct=False)
    assert direct == modelled
    outcomes, sent, _ = direct
    assert [o[0] for o in outcomes] == [
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
    assert outcomes[0] == ("answer", "200", "b'hello'", "None")
    assert outcomes[1] == ("answer", "503", "b'later'", "2.0")
    assert outcomes[2] == ("answer", "401", "b''", "None")  # an oversized error body
    # A network failure carries the request it was raised for.
    assert outcomes[5][3] == outcomes[6][3] != "None"
    # The cookie the server set went back with the next request, on both paths.
    assert b"route=r7" in sent[8] and b"route=r7" not in sent[7]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_direct_path_frames_and_fails_as_the_path_through_httpx2(name: str) -> None:
    first, close, kind, connections = SCENARIOS[name]
    read_timeout = STALL_TIMEOUT if kind == "ReadTimeout" else TIMEOUT
    direct = _run([(first, close)], 2, True, read_timeout)
    modelled = _run([(first, close)], 2, False, read_timeout)
    assert direct == modelled
    outcomes, _, used = direct
    assert outcomes[0][0] == kind
    assert outcomes[1] == ("answer", "200", "b'next'", "None")
    assert used == connections


def test_only_the_librarys_own_transport_is_reached_directly() -> None:
    def direct_of(transport: httpx2.BaseTransport | None) -> object:
        driver = SyncDriver(
            timeout=5.0, ssl_context=None, auth=None, transport=transport, sleep=None
        )
        direct = driver._sender._direct
        driver.close()
        return direct

    assert direct_of(None) is not None
    for transport in (
        httpx2.MockTransport(lambda request: httpx2.Response(200)),
        type("Subclass", (_DeadlineTransport,), {})(None, LIMITS),
        httpx2.HTTPTransport(),
    ):
        assert direct_of(transport) is None


def test_an_answer_logged_at_info_goes_through_httpx2s_model(caplog: Any) -> None:
    with _serving([]) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}{PATH}"
        driver = _driver(direct=True)
        with caplog.at_level(logging.INFO, logger="httpx2"):
            answer = driver.send("POST", url, HEADERS, BODY, 64, 9)
        driver.close()
    assert (answer.status, bytes(answer.body)) == (200, b"next")
    lines = [record.getMessage() for record in caplog.records if record.name == "httpx2"]
    assert lines == [f'HTTP Request: POST {url} "HTTP/1.1 200 OK"']


@pytest.mark.parametrize("direct", [True, False])
def test_a_closed_client_refuses_on_either_path(direct: bool) -> None:
    driver = _driver(direct)
    driver._http.close()
    with pytest.raises(ClientClosedError):
        driver.send("POST", "http://127.0.0.1:9/x", HEADERS, BODY, 64, 9)


def test_without_httpx2s_private_names_every_request_takes_its_transport(monkeypatch: Any) -> None:
    # A later httpx2 that moved them: the module still imports, with the direct path off.
    monkeypatch.setitem(
        sys.modules, "httpx2._transports.default", types.ModuleType("httpx2._transports.default")
    )
    monkeypatch.setattr(nomyo_native, "_sync_direct", nomyo_native._sync_direct)
    monkeypatch.delitem(sys.modules, "nomyo_native._sync_direct")
    without = importlib.import_module("nomyo_native._sync_direct")
    assert without.AVAILABLE is False
    monkeypatch.setattr(_sync_driver, "_sync_direct", without)
    with _serving([]) as server:
        driver = SyncDriver(timeout=5.0, ssl_context=None, auth=None, transport=None, sleep=None)
        assert driver._sender._direct is None
        url = f"http://127.0.0.1:{server.server_address[1]}{PATH}"
        answer = driver.send("POST", url, HEADERS, BODY, 64, 9)
        driver.close()
    assert (answer.status, bytes(answer.body)) == (200, b"next")
    assert len(server.requests) == 1 and server.requests[0].endswith(BODY)


def test_a_plain_send_answers_and_fails_as_the_pools_modelled_request(monkeypatch: Any) -> None:
    """``send_plain`` (no httpcore2 request or response) against the same attempt through
    httpcore2's models on the same pool (``send_plain`` off, as without its private names)."""
    plain = _run(SCRIPT, len(SCRIPT), direct=True)
    monkeypatch.setattr(nomyo_native._sync_direct, "PLAIN_AVAILABLE", False)
    modelled = _run(SCRIPT, len(SCRIPT), direct=True)
    assert plain == modelled


@pytest.mark.parametrize("traced", [False, True])
def test_an_attempt_skips_httpcore2s_models_unless_its_steps_are_traced(
    traced: bool, caplog: Any, monkeypatch: Any
) -> None:
    pool = nomyo_native._sync_pool.HTTP11ConnectionPool
    calls: list[str] = []
    for name in ("send_plain", "handle_request"):
        original = getattr(pool, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(pool, name, spy)
    with (
        _serving([]) as server,
        caplog.at_level(logging.DEBUG if traced else logging.INFO, logger="httpcore2"),
    ):
        driver = _driver(direct=True)
        answer = driver.send("POST", f"http://127.0.0.1:{server.server_address[1]}{PATH}",
                             HEADERS, BODY, 64, 9)  # fmt: skip
        driver.close()
    assert (answer.status, bytes(answer.body)) == (200, b"next")
    assert calls == (["handle_request"] if traced else ["send_plain"])
    steps = [r.getMessage().split()[0] for r in caplog.records if r.name.startswith("httpcore2")]
    if traced:
        assert "send_request_headers.started" in steps and "response_closed.complete" in steps
    else:
        assert steps == []


def test_plain_sends_from_many_threads_queue_for_a_small_pool() -> None:
    """Eight threads, two connections: every request answered, each on one of the two, and
    nothing left queued or taken in the pool afterwards."""
    with _serving([]) as server:
        driver = _driver(direct=True)
        pool = driver._sender._direct._pool  # type: ignore[union-attr]
        pool._max_connections = 2
        url = f"http://127.0.0.1:{server.server_address[1]}{PATH}"
        answers: list[int] = []

        def run() -> None:
            for _ in range(5):
                answers.append(driver.send("POST", url, HEADERS, BODY, 64, 9).status)

        threads = [threading.Thread(target=run) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200] * 40
        assert server.connections <= 2
        assert pool._requests == []
        assert all(connection.is_idle() for connection in pool.connections)
        driver.close()
