"""A server holding a request with interim (1xx) responses, on both drivers against a real
loopback server: endless ones are refused as a malformed response once past their bound (the
same error an oversized head gets), without any deadline to end them; ones trickling in a byte
at a time are ended by the attempt's deadline; up to the bound, the final answer is read."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx2
import pytest
from tests.client.disclosure import everything_said_about

import nomyo_native as nomyo
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._http11_limits import MAX_HEAD_BYTES, MAX_INTERIM_RESPONSES
from nomyo_native._sync_driver import SyncDriver

from .hostile_server import Answer, hostile
from .loopback import chat_request

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")

API_KEY = "sk-interim-7d0c3b51e96a2f48"
SECRET = "interim-header-9b27e4"
# How long a hostile answer goes on before it gives up (the test fails well before a client
# without the bound would be done).
GIVE_UP = 20.0
MARGIN = 2.0


def interim(status: bytes, pad: int = 0) -> bytes:
    fields = b"X-Trace: " + SECRET.encode() + b"\r\n"
    if pad:
        fields += b"X-Pad: " + b"p" * pad + b"\r\n"
    return b"HTTP/1.1 " + status + b"\r\n" + fields + b"\r\n"


def endless(head: bytes, pace: float) -> Answer:
    """``head`` again and again (``pace`` seconds apart), never a final answer."""

    def answer(sock: socket.socket, request: bytes, stopping: threading.Event) -> bool:
        ends = time.monotonic() + GIVE_UP
        while not stopping.is_set() and time.monotonic() < ends:
            sock.sendall(head)
            if pace:
                time.sleep(pace)
        return False

    return answer


def trickled(head: bytes, every: float) -> Answer:
    """``head`` again and again, one byte every ``every`` seconds."""

    def answer(sock: socket.socket, request: bytes, stopping: threading.Event) -> bool:
        ends = time.monotonic() + GIVE_UP
        while not stopping.is_set() and time.monotonic() < ends:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(every)
        return False

    return answer


def then_final(heads: list[bytes]) -> Answer:
    def answer(sock: socket.socket, request: bytes, stopping: threading.Event) -> bool:
        sock.sendall(b"".join(heads) + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        return True

    return answer


async def _fails(chat: Any) -> tuple[nomyo.APIConnectionError, float]:
    started = time.monotonic()
    with pytest.raises(nomyo.APIConnectionError) as caught:
        await chat.create(**chat_request("interim probe"))
    return caught.value, time.monotonic() - started


ENDLESS = {
    "100 Continue": (interim(b"100 Continue"), 0.0),
    "102 Processing, paced": (interim(b"102 Processing"), 0.005),
    "103 Early Hints, 12 KiB each": (interim(b"103 Early Hints", 12 * 1024), 0.0),
    "103 Early Hints, 60 KiB each": (interim(b"103 Early Hints", 60 * 1024), 0.0),
}


@pytest.mark.parametrize("case", sorted(ENDLESS))
async def test_endless_interim_responses_are_refused_without_a_deadline(loopback, chat_to, case):
    # No deadline and no read timeout: only the bound on interim responses ends it.
    head, pace = ENDLESS[case]
    with hostile(endless(head, pace)) as server:
        chat = chat_to(
            base_url=server.url, max_retries=0, timeout=None, deadline=None, api_key=API_KEY
        )
        error, took = await _fails(chat)
    assert "RemoteProtocolError" in str(error) and "interim (1xx)" in str(error)
    assert took < MARGIN + 10 * 0.005 * MAX_INTERIM_RESPONSES
    said = everything_said_about(error)
    assert SECRET not in said and API_KEY not in said
    assert len(server.requests) == 1


async def test_refused_interim_responses_fail_as_an_oversized_head(loopback, chat_to):
    oversized = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * MAX_HEAD_BYTES + b"\r\n\r\n"

    def once(head: bytes) -> Answer:
        def answer(sock: socket.socket, request: bytes, stopping: threading.Event) -> bool:
            sock.sendall(head)
            return False

        return answer

    errors = []
    for answer in (once(oversized), once(interim(b"100 Continue") * (MAX_INTERIM_RESPONSES + 1))):
        with hostile(answer) as server:
            errors.append((await _fails(chat_to(base_url=server.url, max_retries=0)))[0])
    assert type(errors[0]) is type(errors[1])
    assert ": RemoteProtocolError: response head larger than" in str(errors[0])
    assert ": RemoteProtocolError: more than" in str(errors[1])
    assert [type(error.__cause__) for error in errors] == [httpx2.RemoteProtocolError] * 2


@pytest.mark.parametrize("deadline", [0.5, 1.5])
@pytest.mark.parametrize("status", [b"100 Continue", b"103 Early Hints"])
async def test_interim_responses_trickling_in_are_ended_by_the_deadline(
    loopback, chat_to, deadline, status
):
    # Each byte well within any read timeout, and too slow to reach the bound before the
    # deadline: the deadline ends it.
    with hostile(trickled(interim(status), 0.02)) as server:
        chat = chat_to(
            base_url=server.url,
            max_retries=0,
            timeout=httpx2.Timeout(GIVE_UP),
            deadline=deadline,
            api_key=API_KEY,
        )
        error, took = await _fails(chat)
    assert "deadline" in str(error)
    assert took < deadline + MARGIN
    said = everything_said_about(error)
    assert SECRET not in said and API_KEY not in said


async def _send(kind: str, url: str, method: str) -> tuple[int, bytes]:
    options: dict[str, Any] = {
        "timeout": 10.0,
        "ssl_context": None,
        "auth": None,
        "transport": None,
        "sleep": None,
    }
    content = b"{}" if method == "POST" else None
    call = (method, url, {"Content-Type": "application/json"}, content, 1024, 10.0)
    if kind == "sync":
        sync = SyncDriver(**options)
        try:
            answer = await asyncio.to_thread(sync.send, *call)
        finally:
            sync.close()
    else:
        driver = AsyncDriver(**options)
        try:
            answer = await driver.send(*call)
        finally:
            await driver.aclose()
    return answer.status, bytes(answer.body)


# "POST": the drivers' direct path, its head read without h11's state machine; "GET": through
# httpx2's transport, the head read by h11.
@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("count", [1, 3, MAX_INTERIM_RESPONSES])
async def test_interim_responses_within_the_bound_reach_the_final_answer(driver, method, count):
    heads = [interim(b"103 Early Hints", 100)] * count
    with hostile(then_final(heads)) as server:
        assert await _send(driver, server.url + "/p", method) == (200, b"final")


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("extra", [1, 50])
async def test_interim_responses_past_the_bound_are_a_protocol_error(driver, method, extra):
    heads = [interim(b"100 Continue")] * (MAX_INTERIM_RESPONSES + extra)
    with hostile(then_final(heads)) as server:
        with pytest.raises(httpx2.RemoteProtocolError, match="interim") as caught:
            await _send(driver, server.url + "/p", method)
    assert SECRET not in everything_said_about(caught.value)
