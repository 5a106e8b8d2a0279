"""Every wait of an attempt ends by its deadline: the name lookup (a resolver that never
answers) and the wait for a connection of a pool whose connections are all busy, on both
drivers, with the same typed errors; and hung lookups hold a bounded number of threads.

A lookup is made to hang by a stand-in for ``socket.getaddrinfo`` for names under ``.test``
(what both drivers' lookups call, ``_resolver``'s threads as the default executor's did);
numeric lookups and every other name go to the real one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from tests.client.disclosure import everything_said_about

import nomyo_native as nomyo
from nomyo_native import _async_driver, _resolver, _sync_driver
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._sync_driver import SyncDriver

from .hostile_server import Answer, HostileServer, hostile
from .loopback import ECHO_PREFIX, chat_request

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")

API_KEY = "sk-waits-0f4e9a77c2d81b35"
# The longest a stand-in lookup or a stalled answer holds on (released at the test's end).
HANG_BOUND = 30.0
# Generous: the box is shared and noisy; without the fix these waits took HANG_BOUND or more.
MARGIN = 2.0

_real_getaddrinfo = socket.getaddrinfo


class StandInResolver:
    """``socket.getaddrinfo`` for names under ``.test``: each one ``hang``s (until released),
    ``fail``s, or answers ``addresses`` after ``delay`` seconds."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[tuple[str, str]] = []  # (name, thread asking)
        self.answers: dict[str, tuple[float, list[str]]] = {}
        self.failing: set[str] = set()

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        flags = args[3] if len(args) > 3 else kwargs.get("flags", 0)
        if not isinstance(host, str) or not host.endswith(".test") or flags & socket.AI_NUMERICHOST:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        self.calls.append((host, threading.current_thread().name))
        if host in self.failing:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        delay, addresses = self.answers.get(host, (HANG_BOUND, []))
        self.release.wait(delay)
        if not addresses:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        infos: list[Any] = []
        for address in addresses:
            infos += _real_getaddrinfo(address, port, *args, **kwargs)
        return infos


def _resolver_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == _resolver._THREAD_NAME]


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInResolver]:
    stand_in = StandInResolver()
    monkeypatch.setattr(socket, "getaddrinfo", stand_in)
    yield stand_in
    stand_in.release.set()
    for thread in _resolver_threads():
        thread.join(timeout=HANG_BOUND)
    assert not _resolver_threads()


async def _create_fails(chat: Any) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(nomyo.APIConnectionError) as caught:
        await chat.create(**chat_request("waits probe"))
    return caught.value, time.monotonic() - started


# ---- the name lookup -----------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [0.3, 1.0, 2.0])
async def test_a_hung_name_lookup_ends_the_attempt_at_its_deadline(
    names, loopback, chat_to, deadline
):
    chat = chat_to(
        base_url=f"http://api.hang.test:{loopback.port}",
        max_retries=0,
        timeout=HANG_BOUND,
        deadline=deadline,
        api_key=API_KEY,
    )
    error, took = await _create_fails(chat)
    assert "deadline" in str(error)
    assert took < deadline + MARGIN
    assert API_KEY not in everything_said_about(error)
    assert names.calls and loopback.posts == []


@pytest.mark.parametrize("connect", [0.3, 1.0])
async def test_a_name_lookup_is_bound_by_the_connect_timeout_too(names, loopback, chat_to, connect):
    chat = chat_to(
        base_url=f"http://api.hang.test:{loopback.port}",
        max_retries=0,
        timeout=httpx2.Timeout(HANG_BOUND, connect=connect),
        deadline=HANG_BOUND,
        api_key=API_KEY,
    )
    error, took = await _create_fails(chat)
    assert "ConnectTimeout" in str(error)
    assert took < connect + MARGIN
    assert API_KEY not in everything_said_about(error)


async def test_a_failed_name_lookup_is_a_connection_error(names, loopback, chat_to):
    names.failing.add("nx.hang.test")
    chat = chat_to(base_url=f"http://nx.hang.test:{loopback.port}", max_retries=0)
    error, took = await _create_fails(chat)
    assert "ConnectError" in str(error) and "Name or service not known" in str(error)
    assert took < MARGIN


@pytest.mark.parametrize("label", ["a" * 64, "b" * 200])
async def test_a_name_the_lookup_cannot_encode_is_a_connection_error(loopback, chat_to, label):
    # getaddrinfo refuses it before asking anyone (IDNA: a label over 63 characters), with a
    # UnicodeError that reached the async driver's caller as it was.
    chat = chat_to(base_url=f"http://{label}.example:{loopback.port}", max_retries=0)
    error, took = await _create_fails(chat)
    assert "ConnectError" in str(error) and "idna" in str(error)
    assert took < MARGIN


@pytest.mark.parametrize("delay", [0.0, 0.3])
@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["::1", "127.0.0.1"], ["127.0.0.1", "::1"]],
    ids=["one", "a refusing one first", "a refusing one after"],
)
async def test_a_name_answered_within_the_deadline_connects(
    names, loopback, chat_to, delay, addresses
):
    # The peer listens on 127.0.0.1 only: ::1 refuses (or has no route), and the connect goes
    # on to the next address as socket.create_connection and loop.create_connection do.
    names.answers["peer.ok.test"] = (delay, addresses)
    chat = chat_to(base_url=f"http://peer.ok.test:{loopback.port}", max_retries=0, deadline=10)
    answer = await chat.create(**chat_request("by name"))
    assert answer["choices"][0]["message"]["content"] == f"{ECHO_PREFIX}by name>"
    assert len(loopback.posts) == 1


@pytest.mark.parametrize("retries", [0, 3])
async def test_timed_out_lookups_hold_a_bounded_number_of_threads(
    names, loopback, chat_to, driver, retries
):
    # More names than resolver threads, each tried again and again, every lookup hung: a
    # lookup is asked once and joined by the next attempt for its name, one waiting for a
    # thread is dropped when its caller leaves, and no thread is left behind in the default
    # executor of the loop.
    hosts = [f"h{i}.hang.test" for i in range(2 * _resolver.MAX_THREADS + 1)]
    for host in hosts:
        chat = chat_to(base_url=f"http://{host}:{loopback.port}", max_retries=retries, deadline=0.2)
        await _create_fails(chat)
        assert len(_resolver_threads()) <= _resolver.MAX_THREADS
    assert len(names.calls) <= _resolver.MAX_THREADS
    assert {thread for _, thread in names.calls} == {_resolver._THREAD_NAME}
    names.release.set()
    for thread in _resolver_threads():
        thread.join(timeout=HANG_BOUND)
    assert not _resolver_threads()


def test_asyncio_run_returns_without_waiting_for_a_hung_lookup(names, loopback):
    # The deadline cancelled loop.getaddrinfo's wait, but its executor thread stayed stuck,
    # and asyncio.run waited for it when shutting the default executor down.
    async def main() -> BaseException:
        chat = nomyo.SecureChatCompletion(
            base_url=f"http://run.hang.test:{loopback.port}",
            allow_http=True,
            key_size=2048,
            max_retries=0,
            deadline=0.3,
        )
        try:
            error, _ = await _create_fails(chat)
        finally:
            await chat.aclose()
        return error

    started = time.monotonic()
    error = asyncio.run(main())
    assert "deadline" in str(error)
    assert time.monotonic() - started < 0.3 + MARGIN


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_lookups_hang_resolves_on_threads_of_its_own(names):
    # The parent's resolver threads are all stuck (one on the name the child asks for too): the
    # child has none of them, and must neither wait for a thread nor join a lookup that no
    # thread of its own will ever finish.
    hung = [f"f{i}.hang.test" for i in range(_resolver.MAX_THREADS - 1)] + ["both.ok.test"]
    names.answers["both.ok.test"] = (HANG_BOUND, ["127.0.0.1"])
    for host in hung:
        with pytest.raises(TimeoutError):
            _resolver.resolve(host, 443, 0.05)
    assert len(_resolver_threads()) == _resolver.MAX_THREADS
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            names.answers["both.ok.test"] = (0.0, ["127.0.0.1"])
            infos = _resolver.resolve("both.ok.test", 443, 5.0)
            code = 0 if infos[0][4][:2] == ("127.0.0.1", 443) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# ---- the wait for a pooled connection --------------------------------------------------------

ONE_CONNECTION = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
BODY = b'{"probe": 1}'
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


def _stall_first(stalling: threading.Event) -> Answer:
    """The first request is held unanswered until ``stalling`` is cleared; each is answered."""
    seen = 0

    def answer(sock: socket.socket, head: bytes, stopping: threading.Event) -> bool:
        nonlocal seen
        seen += 1
        if seen == 1:
            deadline = time.monotonic() + HANG_BOUND
            while stalling.is_set() and not stopping.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
        return True

    return answer


class Drivers:
    """One driver of either kind, on a pool of a single connection, sending from threads (sync)
    or tasks (async): ``send`` returns the answer's status and body or raises."""

    def __init__(self, kind: str, timeout: httpx2.Timeout) -> None:
        self.kind = kind
        options: dict[str, Any] = {
            "timeout": timeout,
            "ssl_context": None,
            "auth": None,
            "transport": None,
            "sleep": None,
        }
        self.driver: Any = SyncDriver(**options) if kind == "sync" else AsyncDriver(**options)

    async def send(self, method: str, url: str, deadline: float | None) -> tuple[int, bytes]:
        content = BODY if method == "POST" else None
        call = (method, url, HEADERS, content, 1024, deadline)
        if self.kind == "sync":
            answer = await asyncio.to_thread(self.driver.send, *call)
        else:
            answer = await self.driver.send(*call)
        return answer.status, bytes(answer.body)

    async def close(self) -> None:
        if self.kind == "sync":
            self.driver.close()
        else:
            await self.driver.aclose()


@pytest.fixture
def one_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sync_driver, "LIMITS", ONE_CONNECTION)
    monkeypatch.setattr(_async_driver, "LIMITS", ONE_CONNECTION)


async def _hold_the_connection(
    drivers: Drivers, server: HostileServer
) -> asyncio.Task[tuple[int, bytes]]:
    holder = asyncio.ensure_future(drivers.send("POST", server.url + "/hold", None))
    for _ in range(int(HANG_BOUND / 0.01)):
        if server.requests:
            return holder
        await asyncio.sleep(0.01)
    raise AssertionError("the first request never reached the server")


# "POST": the drivers' direct path (``send_plain``); "GET": through httpx2's transport and
# the pool's ``handle_request``.
@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("deadline", [0.3, 1.0])
async def test_a_wait_for_a_busy_pool_ends_at_the_deadline(
    one_connection, driver, method, deadline
):
    stalling = threading.Event()
    stalling.set()
    with hostile(_stall_first(stalling)) as server:
        drivers = Drivers(driver, httpx2.Timeout(HANG_BOUND))
        try:
            holder = await _hold_the_connection(drivers, server)
            started = time.monotonic()
            with pytest.raises(TimeoutError) as caught:  # the drivers' deadline error, alike
                await drivers.send(method, server.url + "/waits", deadline)
            assert time.monotonic() - started < deadline + MARGIN
            assert len(server.requests) == 1  # it never got the connection
            assert API_KEY not in everything_said_about(caught.value)
            stalling.clear()
            assert await holder == (200, b"fine")
            # Nothing of the attempt that gave up is left in the pool's queue.
            assert await drivers.send(method, server.url + "/after", 10.0) == (200, b"fine")
        finally:
            stalling.clear()
            await drivers.close()


@pytest.mark.parametrize("pool", [0.3, 1.0])
async def test_the_pool_timeout_holds_within_a_longer_deadline(one_connection, driver, pool):
    stalling = threading.Event()
    stalling.set()
    with hostile(_stall_first(stalling)) as server:
        drivers = Drivers(driver, httpx2.Timeout(HANG_BOUND, pool=pool))
        try:
            holder = await _hold_the_connection(drivers, server)
            started = time.monotonic()
            with pytest.raises(httpx2.PoolTimeout):
                await drivers.send("POST", server.url + "/waits", HANG_BOUND)
            assert time.monotonic() - started < pool + MARGIN
            stalling.clear()
            assert await holder == (200, b"fine")
        finally:
            stalling.clear()
            await drivers.close()
