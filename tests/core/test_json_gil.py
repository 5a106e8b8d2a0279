"""The reader lets the GIL go now and then while it builds an answer's Python objects: another
thread runs during the build of a large answer (a hostile one of a million small values), not
only before and after it. Without that, a worker opening such an answer stopped the event loop
(and every other thread) for a few hundred ms per MiB (review10 F2)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
from collections.abc import Callable

import pytest

from ._probes import probes_module

_testing = probes_module()

VALUES = 1_000_000


def stamps_inside(call: Callable[[], object]) -> int:
    """How many times a ticking thread noted the time within the first half of ``call`` (past
    its first tenth). Not its end: a thread that asked for the GIL during a call that never
    let it go gets it (for CPython's 5 ms switch interval) as soon as the call returns, before
    the caller can note the time."""
    stamps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 100 == 0:
                stamps.append(time.perf_counter())

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        while not stamps:  # the ticker is running
            time.sleep(0.001)
        start = time.perf_counter()
        call()
        end = time.perf_counter()
    finally:
        stop.set()
        ticker.join()
    span = end - start
    return sum(start + span / 10 < stamp < start + span / 2 for stamp in stamps)


# Each takes well over 20 ms to build (10 ms to a half), so that a thread waiting for the GIL
# (which asks for it after 5 ms) would get a turn within the first half.
HOSTILE = {
    "zeros": "[" + "0," * (4 * VALUES - 1) + "0]",
    "empty lists": "[" + "[]," * (VALUES - 1) + "[]]",
    "empty objects in lists": "[" + "[{}]," * (VALUES // 2 - 1) + "[{}]]",
    "members": "{" + ",".join(f'"k{i}":null' for i in range(VALUES // 2)) + "}",
    "short strings": "[" + '"a",' * (4 * VALUES - 1) + '"a"]',
    # Few values, each dear: CPython converts 4000 digits in ~60 us.
    "long integers": "[" + ",".join(["9" * 4000] * 2000) + "]",
}


def test_a_call_that_holds_the_gil_lets_no_tick_in() -> None:
    # The instrument: a C loop that never lets the GIL go leaves the ticker no turn.
    assert stamps_inside(lambda: sum(range(20_000_000))) == 0


@pytest.mark.parametrize("shape", HOSTILE)
def test_another_thread_runs_while_a_large_answer_is_built(shape: str) -> None:
    body = HOSTILE[shape].encode()
    # Up to three tries: a loaded machine may keep the ticker off the CPU through one whole
    # window; a reader that holds the GIL leaves it no turn in any.
    counts = []
    for _ in range(3):
        counts.append(stamps_inside(lambda: _testing.json_loads(body)))
        if counts[-1] >= 3:
            break
    assert counts[-1] >= 3, counts


def longest_loop_gap(call: Callable[[], object]) -> tuple[float, float]:
    """``call``'s span, run on a worker thread, and the longest time within it that an event
    loop went without a turn, less the time CPython's garbage collector ran within that gap:
    the async client's build of an answer on a worker, as far as the reader decides it. (A
    build of a million containers sets off full collections, which hold the GIL for tens of
    ms, and for hundreds on a machine loaded by other work: not the reader's to give back.)"""
    collecting: list[tuple[str, float]] = []

    def note(phase: str, info: dict[str, object]) -> None:
        collecting.append((phase, time.perf_counter()))

    async def main() -> tuple[float, float]:
        turns: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            while not done.is_set():
                turns.append(time.perf_counter())
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, call)
        end = time.perf_counter()
        done.set()
        await ticker
        inside = [start, *(turn for turn in turns if start < turn < end), end]
        collections = list(zip(collecting[::2], collecting[1::2], strict=False))
        assert all(a[0] == "start" and b[0] == "stop" for a, b in collections)

        def collected(a: float, b: float) -> float:
            return sum(
                max(0.0, min(b, stop) - max(a, begin)) for (_, begin), (_, stop) in collections
            )

        return end - start, max(b - a - collected(a, b) for a, b in itertools.pairwise(inside))

    gc.callbacks.append(note)
    try:
        return asyncio.run(main())
    finally:
        gc.callbacks.remove(note)


def test_the_loop_gap_instrument_sees_a_call_that_never_lets_go() -> None:
    # A C loop that holds the GIL throughout (and allocates nothing the collector tracks):
    # the loop's longest gap is nearly the whole call.
    span, gap = longest_loop_gap(lambda: sum(range(20_000_000)))
    assert gap > 0.8 * span, f"{gap * 1000:.0f} ms without a turn in {span * 1000:.0f} ms"


@pytest.mark.parametrize("shape", HOSTILE)
def test_an_event_loop_gets_turns_while_a_worker_builds_a_large_answer(shape: str) -> None:
    # The loop thread runs Python between its waits for the GIL: a parser that only dropped
    # the GIL and took it back at once kept it, unless the loop had asked for a switch just
    # before (measured with long integers: gaps of 38-68 ms in a build of 75 ms; with the
    # parser away for a moment, 6-9 ms). Lists of empty lists still leave gaps of ~50 ms,
    # CPython's garbage collector run within the build, in a build of ~400 ms: the gap is
    # counted without it (see longest_loop_gap).
    body = HOSTILE[shape].encode()
    # Up to three tries: a loaded machine may take the CPU from the worker while it holds the
    # GIL (its pause is then a gap); a reader that keeps the GIL leaves gaps in every try.
    tries = []
    for _ in range(3):
        span, gap = longest_loop_gap(lambda: _testing.json_loads(body))
        tries.append(f"{gap * 1000:.0f} ms without a turn in {span * 1000:.0f} ms")
        if gap < span / 3:
            break
    assert gap < span / 3, tries
