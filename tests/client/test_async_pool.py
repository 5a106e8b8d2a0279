"""The async driver's connection pool (``_async_pool``): httpcore2's limits and rules, waiting
on asyncio alone; against raw loopback servers (``test_http11_exchange.serving``)."""

from __future__ import annotations

import asyncio
import sys
from types import FrameType
from typing import Any

import httpx2
import pytest

from nomyo_native._async_pool import HTTP11ConnectionPool
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport

from .test_http11_exchange import get_body, ok, serving

GUARD = 10.0  # seconds: only a hang takes this long


def transport(max_connections: int, max_keepalive: int | None = None) -> AsyncioTLSTransport:
    return AsyncioTLSTransport(
        None,
        httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive
            if max_keepalive is not None
            else max_connections,
        ),
    )


def held_until(release: asyncio.Event, body: bytes = b"held") -> Any:
    """A reply written once ``release`` is set."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(ok(body))
        await writer.drain()

    return reply


async def test_requests_beyond_max_connections_wait_their_turn_and_all_complete() -> None:
    release = asyncio.Event()
    async with serving(lambda n: held_until(release, b"%d" % n)) as server:
        pooled = transport(max_connections=2)
        async with httpx2.AsyncClient(transport=pooled) as http:
            requests = [asyncio.create_task(get_body(http, server.url)) for _ in range(5)]
            while len(server.requests) < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert server.accepted == 2 and len(server.requests) == 2  # the others wait
            assert len(pooled._pool._waiting) == 3
            assert repr(pooled._pool) == (
                "<HTTP11ConnectionPool [Requests: 2 active, 3 queued"
                " | Connections: 2 active, 0 idle]>"
            )
            release.set()
            answers = await asyncio.wait_for(asyncio.gather(*requests), GUARD)
            assert sorted(b"".join(chunks) for chunks, _ in answers) == [
                b"0", b"1", b"2", b"3", b"4",
            ]  # fmt: skip
            assert len(pooled._pool.connections) == 2
            assert not pooled._pool._waiting
            assert repr(pooled._pool) == (
                "<HTTP11ConnectionPool [Requests: 0 active, 0 queued"
                " | Connections: 0 active, 2 idle]>"
            )
    assert server.accepted == 2


async def test_a_request_waiting_past_the_pool_timeout_is_a_pool_timeout() -> None:
    release = asyncio.Event()
    async with serving(lambda n: held_until(release)) as server:
        pooled = transport(max_connections=1)
        async with httpx2.AsyncClient(
            transport=pooled, timeout=httpx2.Timeout(GUARD, pool=0.1)
        ) as http:
            first = asyncio.create_task(get_body(http, server.url))
            while not server.requests:
                await asyncio.sleep(0.01)
            with pytest.raises(httpx2.PoolTimeout):
                await asyncio.wait_for(get_body(http, server.url), GUARD)
            assert not pooled._pool._waiting
            release.set()
            assert b"".join((await asyncio.wait_for(first, GUARD))[0]) == b"held"
            # The slot the timed-out request never took is still there for the next one.
            assert b"".join((await asyncio.wait_for(get_body(http, server.url), GUARD))[0])
    assert server.accepted == 1


async def test_a_failed_exchange_frees_its_slot_for_the_request_waiting() -> None:
    release = asyncio.Event()

    async def close_unanswered(writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    replies = [close_unanswered, ok(b"second")]
    async with serving(lambda n: replies[n]) as server:
        pooled = transport(max_connections=1)
        async with httpx2.AsyncClient(transport=pooled) as http:
            failing = asyncio.create_task(get_body(http, server.url))
            while not server.requests:
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(get_body(http, server.url))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            release.set()
            with pytest.raises(httpx2.RemoteProtocolError):
                await asyncio.wait_for(failing, GUARD)
            assert b"".join((await asyncio.wait_for(waiting, GUARD))[0]) == b"second"
            assert len(pooled._pool.connections) == 1
    assert server.accepted == 2


async def test_idle_connections_beyond_max_keepalive_are_closed() -> None:
    release = asyncio.Event()
    async with serving(lambda n: held_until(release)) as server:
        pooled = transport(max_connections=4, max_keepalive=1)
        async with httpx2.AsyncClient(transport=pooled) as http:
            requests = [asyncio.create_task(get_body(http, server.url)) for _ in range(3)]
            while len(server.requests) < 3:
                await asyncio.sleep(0.01)
            release.set()
            await asyncio.wait_for(asyncio.gather(*requests), GUARD)
            (kept,) = pooled._pool.connections
            assert kept.is_idle()
            assert b"".join((await asyncio.wait_for(get_body(http, server.url), GUARD))[0])
    assert server.accepted == 3


class _IdleConnection:
    """Enough of a connection for the pool's release: idle until closed."""

    def __init__(self) -> None:
        self.closed = False

    def is_idle(self) -> bool:
        return not self.closed

    def is_closed(self) -> bool:
        return self.closed

    async def aclose(self) -> None:
        self.closed = True


async def test_the_oldest_idle_connections_beyond_max_keepalive_are_the_ones_closed() -> None:
    pool = HTTP11ConnectionPool(max_connections=4, max_keepalive_connections=1)
    oldest, older, newest = _IdleConnection(), _IdleConnection(), _IdleConnection()
    pool._connections = [oldest, older, newest]  # type: ignore[list-item]
    await pool._release(newest)  # type: ignore[arg-type]
    assert pool._connections == [newest]  # the one just used stays warm, as in httpcore2
    assert oldest.closed and older.closed and not newest.closed


async def test_a_request_woken_then_cancelled_passes_its_turn_to_the_next() -> None:
    pool = HTTP11ConnectionPool(max_connections=1)
    first = asyncio.create_task(pool._wait_turn(None))
    second = asyncio.create_task(pool._wait_turn(None))
    await asyncio.sleep(0)
    assert len(pool._waiting) == 2
    pool._wake_next()  # a connection freed: the first in line is woken...
    first.cancel()  # ...and cancelled before it could look
    await asyncio.wait_for(second, GUARD)  # the turn went on to the next
    assert first.cancelled()
    assert not pool._waiting


async def test_a_request_cancelled_while_waiting_leaves_the_line() -> None:
    pool = HTTP11ConnectionPool(max_connections=1)
    waiting = asyncio.create_task(pool._wait_turn(None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not pool._waiting


async def test_a_request_through_the_pool_makes_no_anyio_or_sniffio_call() -> None:
    called: set[str] = set()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.split(".")[0] in ("anyio", "sniffio"):
                called.add(f"{module}.{frame.f_code.co_name}")

    async with serving(lambda n: ok(b"body")) as server:
        async with httpx2.AsyncClient(transport=transport(max_connections=2)) as http:
            await get_body(http, server.url)  # the connection is made
            sys.setprofile(profile)
            try:
                chunks, status = await get_body(http, server.url)
            finally:
                sys.setprofile(None)
    assert status == 200 and b"".join(chunks) == b"body"
    assert not called


class _Held:
    """A connection as the pool sees it, without I/O: taken (active) until given back idle."""

    def __init__(self, origin: Any) -> None:
        self._origin = origin
        self.active = True

    def can_handle_request(self, origin: Any) -> bool:
        return bool(origin == self._origin)

    def is_available(self) -> bool:
        return not self.active

    def is_idle(self) -> bool:
        return not self.active

    def is_closed(self) -> bool:
        return False

    def has_expired(self) -> bool:
        return False


class _HeldPool(HTTP11ConnectionPool):
    def create_connection(self, origin: Any) -> Any:
        return _Held(origin)


async def test_slots_freed_together_serve_a_request_that_arrives_behind_one_woken() -> None:
    pool = _HeldPool(max_connections=2)
    origin = b"origin"

    async def take() -> Any:
        connection = await pool._acquire(origin, None)  # type: ignore[arg-type]
        connection.active = True  # as the exchange takes it, with no await in between
        return connection

    first, second = await take(), await take()
    woken = asyncio.create_task(take())
    await asyncio.sleep(0)
    assert len(pool._waiting) == 1  # the pool is full: it waits

    async def both_end_then_ask_again() -> Any:
        # Both exchanges end in the same turn of the loop: the one waiting is woken once, and
        # this task's next request comes before it has looked.
        first.active = second.active = False
        await pool._release(first)
        await pool._release(second)
        return await take()

    late = asyncio.create_task(both_end_then_ask_again())
    for _ in range(20):  # a few turns of the loop: no timer is involved
        await asyncio.sleep(0)
    assert woken.done() and late.done()  # the second free slot did not wait for a third release
    assert {await woken, await late} == {first, second}
    assert not pool._waiting


async def test_a_request_arriving_behind_a_cancelled_one_is_served_by_the_next_release() -> None:
    pool = _HeldPool(max_connections=1)
    origin = b"origin"

    async def take() -> Any:
        connection = await pool._acquire(origin, None)  # type: ignore[arg-type]
        connection.active = True
        return connection

    held = await take()
    cancelled = asyncio.create_task(take())
    await asyncio.sleep(0)
    assert len(pool._waiting) == 1

    async def give_up_and_release_then_ask_again() -> Any:
        # In one turn of the loop: the request waiting is cancelled, the connection released
        # (nobody left to wake: the cancelled request has not yet left the line), and this
        # task's next request arrives.
        cancelled.cancel()
        held.active = False
        await pool._release(held)
        return await take()

    late = asyncio.create_task(give_up_and_release_then_ask_again())
    for _ in range(20):  # a few turns of the loop: no timer is involved
        await asyncio.sleep(0)
    assert cancelled.cancelled()
    assert late.done()  # not left waiting for a release that nothing in flight will make
    assert await late is held
    assert not pool._waiting
