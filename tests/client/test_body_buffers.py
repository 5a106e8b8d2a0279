"""Response body buffers kept and reused (``_body_buffers``): what is taken, what comes back,
what is kept and for how long, and that a body handed on is always exactly its own bytes."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import subprocess
import sys
import threading
from typing import Any

import httpx2
import pytest

from nomyo_native import _body_buffers
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._asyncio_connection import BODY_ROOM
from nomyo_native._body_buffers import (
    MAX_KEPT,
    MAX_KEPT_BUFFER,
    MAX_KEPT_BYTES,
    BodyBuffer,
    hand_on,
    kept_sizes,
    put_front,
    release,
    take,
)
from nomyo_native._http11 import make_room
from nomyo_native._sync_driver import SyncDriver

from . import test_http11_exchange as async_peer
from . import test_sync_http11_exchange as sync_peer

KIB = 1024


def lent(size: int, fill: bytes = b"\0") -> memoryview:
    """A body of ``size`` bytes as the receive path hands it on."""
    buffer = take(size)
    buffer[:] = fill * size
    return hand_on(buffer, size)


# ---- what is kept, what is taken --------------------------------------------------------------


def test_a_released_body_s_buffer_is_taken_again_for_a_body_of_about_its_size(
    free_list: Any,
) -> None:
    body = lent(300 * KIB)
    release(body)
    assert kept_sizes() == [300 * KIB]
    with pytest.raises(ValueError):
        bytes(body)  # the view is released: nothing reads the buffer through it any more
    again = take(200 * KIB)
    assert len(again) == 300 * KIB and kept_sizes() == []
    assert take(200 * KIB) is not again  # taken once only


def test_a_buffer_far_from_the_size_asked_is_left_for_a_body_of_its_own_size(
    free_list: Any,
) -> None:
    release(lent(2000 * KIB))
    release(lent(100 * KIB))
    assert len(take(150 * KIB)) == 100 * KIB  # the nearest, even shorter (grown once)
    assert len(take(150 * KIB)) == 0  # 2000 KiB is more than twice: a fresh one instead
    assert len(take(1500 * KIB)) == 2000 * KIB


def test_what_is_kept_is_bounded_in_count_and_bytes_least_recent_first(free_list: Any) -> None:
    bodies = [lent(size * 100 * KIB) for size in range(1, MAX_KEPT + 3)]  # all at once
    for body in bodies:
        release(body)
    assert kept_sizes() == [size * 100 * KIB for size in range(3, MAX_KEPT + 3)]
    big = MAX_KEPT_BYTES // 3
    bodies = [lent(big) for _ in range(3)]
    for body in bodies:
        release(body)
    assert sum(kept_sizes()) <= MAX_KEPT_BYTES
    assert kept_sizes()[-2:] == [big, big]


def test_a_buffer_too_large_to_keep_is_freed_not_kept(free_list: Any) -> None:
    release(lent(MAX_KEPT_BUFFER + 1))
    assert kept_sizes() == []


def test_a_buffer_still_reachable_otherwise_is_never_kept(free_list: Any) -> None:
    body = lent(100 * KIB)
    part = body[10:20]  # a slice holds the same buffer
    release(body)
    assert kept_sizes() == [] and bytes(part) == bytes(10)

    body = lent(100 * KIB)
    buffer = body.obj  # the buffer itself, taken through the view
    release(body)
    assert kept_sizes() == [] and len(buffer) == 100 * KIB

    body = lent(100 * KIB)
    exported = pickle.PickleBuffer(body)  # an export of the view itself: it cannot be released
    release(body)
    assert kept_sizes() == [] and bytes(body[:3]) == bytes(3)
    del exported


def test_a_buffer_held_elsewhere_is_never_kept_after_an_import_under_a_tracer() -> None:
    # A tracer reading frame locals (a debugger, a coverage tool) adds a reference to each
    # local; one active while the module was imported, and gone later, must not make a
    # buffer still held elsewhere look unshared.
    script = """
import sys

def tracer(frame, event, arg):
    frame.f_locals
    return tracer

sys.settrace(tracer)
from nomyo_native import _body_buffers
sys.settrace(None)
buffer = _body_buffers.take(100_000)
buffer.extend(bytes(100_000))
body = _body_buffers.hand_on(buffer, 100_000)
del buffer
held = body.obj
_body_buffers.release(body)
print(_body_buffers.kept_sizes())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["[]"]


def test_releasing_twice_or_anything_else_does_nothing(free_list: Any) -> None:
    body = lent(100 * KIB)
    release(body)
    release(body)
    assert kept_sizes() == [100 * KIB]
    for other in (b"x" * 100_000, bytearray(100_000), memoryview(bytearray(100_000)), None):
        release(other)
    assert kept_sizes() == [100 * KIB]


def test_a_buffer_with_a_view_still_exported_grows_into_a_fresh_one() -> None:
    body = bytearray(b"abcdef")
    view = memoryview(body)  # resizing body now raises BufferError
    grown = make_room(body, 6, 1000, 100)
    assert grown is not body and len(grown) == 106 and grown[:6] == b"abcdef"
    assert len(body) == 6 and view[:3] == b"abc"


@pytest.mark.parametrize("size", [0, 3, 6, 10])
def test_put_front_writes_over_the_start_and_grows_a_shorter_buffer(size: int) -> None:
    data = memoryview(b"abcdef")
    body = bytearray(b"0123456789"[:size])
    view = memoryview(body) if size >= len(data) else None  # exported: no resize allowed
    put_front(body, data)
    assert bytes(body) == b"abcdef" + b"0123456789"[6:size]
    if view is not None:
        assert bytes(view[:6]) == b"abcdef"  # written in place, not into a new buffer
    put_front(body, data[:0])
    assert bytes(body[:6]) == b"abcdef"


def test_threads_never_hold_one_buffer_at_once(free_list: Any) -> None:
    held: set[int] = set()
    lock = threading.Lock()
    clashes: list[int] = []

    def use() -> None:
        for _ in range(300):
            buffer = take(100 * KIB)
            with lock:
                if id(buffer) in held:
                    clashes.append(id(buffer))
                held.add(id(buffer))
            if len(buffer) < 100 * KIB:
                buffer += bytes(100 * KIB - len(buffer))
            body = hand_on(buffer, 100 * KIB)
            with lock:
                held.discard(id(buffer))
            del buffer
            release(body)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clashes == []
    assert 1 <= len(kept_sizes()) <= MAX_KEPT


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_and_keeps_nothing_lent_before_the_fork(
    free_list: Any,
) -> None:
    done, in_flight = lent(100 * KIB), lent(200 * KIB)  # the parent still reads in_flight
    release(done)
    assert kept_sizes() == [100 * KIB]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            empty = _body_buffers.kept_sizes() == []
            release(in_flight)
            still_empty = _body_buffers.kept_sizes() == []
            release(lent(300 * KIB))  # the child's own buffers are kept as usual
            code = 0 if empty and still_empty and kept_sizes() == [300 * KIB] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    release(in_flight)
    assert kept_sizes() == [100 * KIB, 200 * KIB]


# ---- through the drivers: exactly the body's bytes ---------------------------------------------


def _cut(body: bytes, sent: int) -> Any:
    """A reply declaring ``body`` whole, sending its first ``sent`` bytes, then closing."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(head + body[:sent])
        await writer.drain()
        writer.close()

    def send(conn: socket.socket) -> None:
        conn.sendall(head + body[:sent])
        conn.shutdown(socket.SHUT_RDWR)

    return write, send


LONG, SHORT, CUT, OTHER = (b"L" * 300_000, b"S" * 200_000, b"C" * 250_000, b"O" * 180_000)


def _replies(kind: str) -> list[Any]:
    write, send = _cut(CUT, 150_000)
    return [
        async_peer.ok(LONG) if kind == "async" else sync_peer.ok(LONG),
        async_peer.ok(SHORT) if kind == "async" else sync_peer.ok(SHORT),
        write if kind == "async" else send,
        async_peer.ok(OTHER) if kind == "async" else sync_peer.ok(OTHER),
    ]


def _check_no_stale_bytes(answers: list[Any], cut: BaseException) -> None:
    long, (short, buffer), other = answers
    assert bytes(long) == LONG
    # The short answer went into the long one's buffer: the long one's bytes are still past
    # its end, and not part of the body.
    assert len(buffer) >= len(LONG) and buffer[len(SHORT) : len(LONG)] == LONG[len(SHORT) :]
    assert len(short) == len(SHORT) and bytes(short) == SHORT
    assert isinstance(cut, httpx2.RemoteProtocolError)
    assert len(other) == len(OTHER) and bytes(other) == OTHER


async def test_async_long_short_cut_and_another_connection_each_get_only_their_bytes(
    free_list: Any,
) -> None:
    replies = _replies("async")
    async with async_peer.serving(lambda n: replies[n]) as server:
        driver = AsyncDriver(timeout=5, ssl_context=None, auth=None, transport=None, sleep=None)
        try:
            long = await driver.send("POST", server.url, {}, b"a", 1 << 20, 10)
            kept = bytes(long.body)
            release(long.body)
            short = await driver.send("POST", server.url, {}, b"b", 1 << 20, 10)
            buffer = short.body.obj
            short_seen = (bytes(short.body), buffer)
            with pytest.raises(httpx2.RemoteProtocolError) as cut:
                await driver.send("POST", server.url, {}, b"c", 1 << 20, 10)
            other = await driver.send("POST", server.url, {}, b"d", 1 << 20, 10)
        finally:
            await driver.aclose()
    _check_no_stale_bytes([kept, short_seen, other.body], cut.value)
    assert server.accepted == 2  # the cut answer's connection is not reused


def test_sync_long_short_cut_and_another_connection_each_get_only_their_bytes(
    free_list: Any,
) -> None:
    replies = _replies("sync")
    with sync_peer.serving(lambda n: replies[n]) as server:
        driver = SyncDriver(timeout=5, ssl_context=None, auth=None, transport=None, sleep=None)
        try:
            long = driver.send("POST", server.url, {}, b"a", 1 << 20, 10)
            kept = bytes(long.body)
            release(long.body)
            short = driver.send("POST", server.url, {}, b"b", 1 << 20, 10)
            short_seen = (bytes(short.body), short.body.obj)
            with pytest.raises(httpx2.RemoteProtocolError) as cut:
                driver.send("POST", server.url, {}, b"c", 1 << 20, 10)
            other = driver.send("POST", server.url, {}, b"d", 1 << 20, 10)
        finally:
            driver.close()
    _check_no_stale_bytes([kept, short_seen, other.body], cut.value)
    assert server.accepted == 2


class _TakeSpy:
    """Records every buffer the receive paths take."""

    def __init__(self) -> None:
        self.taken: list[BodyBuffer] = []

    def __call__(self, length: int) -> BodyBuffer:
        buffer = take(length)
        self.taken.append(buffer)
        return buffer


DECLARED, SENT = 10 * 1024 * 1024, 150_000


async def test_async_a_body_buffer_grows_with_what_arrives_not_with_what_is_declared(
    free_list: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release(lent(300 * KIB))  # kept, but too short to be taken for 10 MiB
    spy = _TakeSpy()
    monkeypatch.setattr(_body_buffers, "take", spy)
    write, _ = _cut(b"D" * DECLARED, SENT)
    async with async_peer.serving(lambda n: write) as server:
        driver = AsyncDriver(timeout=5, ssl_context=None, auth=None, transport=None, sleep=None)
        try:
            with pytest.raises(httpx2.RemoteProtocolError):
                await driver.send("POST", server.url, {}, b"a", 1 << 30, 10)
        finally:
            await driver.aclose()
    [buffer] = spy.taken
    assert len(buffer) <= max(2 * SENT, SENT + BODY_ROOM)
    assert kept_sizes() == [300 * KIB]  # a failed body's buffer is not taken back


def test_sync_a_body_buffer_grows_with_what_arrives_not_with_what_is_declared(
    free_list: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release(lent(300 * KIB))
    spy = _TakeSpy()
    monkeypatch.setattr(_body_buffers, "take", spy)
    _, send = _cut(b"D" * DECLARED, SENT)
    with sync_peer.serving(lambda n: send) as server:
        driver = SyncDriver(timeout=5, ssl_context=None, auth=None, transport=None, sleep=None)
        try:
            with pytest.raises(httpx2.RemoteProtocolError):
                driver.send("POST", server.url, {}, b"a", 1 << 30, 10)
        finally:
            driver.close()
    [buffer] = spy.taken
    assert len(buffer) <= max(2 * SENT, SENT + 256 * KIB)
    assert kept_sizes() == [300 * KIB]
