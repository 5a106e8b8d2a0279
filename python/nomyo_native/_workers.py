"""The threads on which the async client runs the core's blocking calls (seal, open, key
generation and key files).

``asyncio.to_thread`` would run them on the event loop's default executor: up to
``cpu_count + 4`` threads. glibc gives each thread that allocates its own malloc arena, and an
arena keeps what it once held: megabyte envelopes and responses built on six threads left six
arenas of freed memory behind, about 60 MiB of peak RSS under 25 concurrent requests of up to
4 MB. The core releases the GIL while it works, so threads beyond the cores buy no speed: the
library sizes and reuses its own few (as many as the process may use cores, at most
``MAX_WORKERS``) instead of tuning the allocator on its user's behalf (``MALLOC_ARENA_MAX``,
``mallopt`` are process-wide).

A call's result goes back to its event loop in one ``call_soon_threadsafe`` that settles an
asyncio future: ``loop.run_in_executor`` chains a ``concurrent.futures.Future`` to an asyncio one
(``wrap_future``: callbacks both ways, a condition variable, a state copy), about a third of
the CPU a hand-off costs, paid twice per request (seal and open). A call goes to the threads
as one tuple on a ``SimpleQueue`` (:class:`_Pool`), not through ``ThreadPoolExecutor``, whose
``Future``, work item and pure-Python semaphore per call cost another 15 us of CPU.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["MAX_WORKERS", "run_blocking", "worker_count"]

T = TypeVar("T")

MAX_WORKERS = 4
THREAD_NAME_PREFIX = "nomyo-core"

_lock = threading.Lock()
_pool_of_process: _Pool | None = None


# cgroup v2: the process's group (``0::/path``) and where the hierarchy is mounted.
_PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_ROOT = "/sys/fs/cgroup"


def worker_count() -> int:
    """Cores this process may use (its CPU affinity where known, and its cgroup's CPU quota),
    between 1 and MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, min(MAX_WORKERS, cores))


def _cgroup_cpu_quota() -> int | None:
    """CPUs (rounded up) the tightest ``cpu.max`` from the process's cgroup up to the root
    allows; None when none limits it or it cannot be read. A container limited by a quota
    (``docker --cpus``) still sees every core of the host in its affinity."""
    try:
        with open(_PROC_CGROUP, encoding="ascii") as entries:
            path = next((line[3:].strip() for line in entries if line.startswith("0::")), None)
    except (OSError, ValueError):
        return None
    if path is None:
        return None
    root = Path(_CGROUP_ROOT)
    group = root / path.lstrip("/")
    quotas: list[int] = []
    for directory in (group, *group.parents):
        if not directory.is_relative_to(root):
            break
        try:
            limit, period = (directory / "cpu.max").read_text(encoding="ascii").split()
            if limit != "max" and int(period) > 0:
                quotas.append(max(1, -(-int(limit) // int(period))))
        except (OSError, ValueError):
            continue
    return min(quotas, default=None)


# One call: the caller's loop and future, its context, the function and its arguments.
_Call = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[object, ...],
]


class _Pool:
    """Up to ``size`` threads taking calls from one queue, each started when a call finds
    every thread busy (as ``ThreadPoolExecutor`` starts them). At interpreter exit the calls
    already queued run, then the threads end and are joined (as ``concurrent.futures``
    workers do), so no thread is left inside the core while Python finalizes."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._unfinished = 0  # calls queued or running
        self._stopping = False

    def submit(self, call: _Call) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("cannot run a call after the interpreter began to exit")
            started = len(self._threads)
            if self._unfinished >= started and started < self._size:
                # Started before the call is queued or counted, and under the lock: a thread
                # that cannot start fails this call alone (nothing queued for nobody, no
                # thread counted that never runs), and stop() only ever joins started ones.
                name = f"{THREAD_NAME_PREFIX}_{started}"
                thread = threading.Thread(target=self._serve, name=name, daemon=_DAEMON)
                thread.start()
                self._threads.append(thread)
            self._unfinished += 1
            self._calls.put(call)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            self._serve_one(*call)
            del call  # nothing of a finished call stays referenced while the thread waits

    def _serve_one(
        self,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[Any],
        context: contextvars.Context,
        func: Callable[..., Any],
        args: tuple[object, ...],
    ) -> None:
        outcome = _outcome(done, context, func, args)
        # Counted idle before the hand-back wakes the caller: its next call then finds this
        # thread free instead of starting another one.
        with self._lock:
            self._unfinished -= 1
        if outcome is not None:
            _hand_back(loop, done, *outcome)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            thread.join()


# CPython's hook run before it joins the threads at exit (what concurrent.futures uses);
# without it, the threads are daemons.
_register_at_exit: Callable[[Callable[[], None]], None] | None = getattr(
    threading, "_register_atexit", None
)
_DAEMON = _register_at_exit is None
# Registered once per process and inherited by a fork child along with threading's exit hooks.
_exit_hook_registered = False


def _stop_at_exit() -> None:
    # The pool of the exiting process only: a fork child's exit must not touch the parent's
    # pool, whose threads it lacks and whose lock one of them may have held at the fork.
    pool = _pool_of_process
    if pool is not None:
        pool.stop()


def _pool() -> _Pool:
    global _pool_of_process, _exit_hook_registered
    with _lock:
        if _pool_of_process is None:
            if _register_at_exit is not None and not _exit_hook_registered:
                _register_at_exit(_stop_at_exit)
                _exit_hook_registered = True
            _pool_of_process = _Pool(worker_count())
        return _pool_of_process


async def run_blocking(func: Callable[..., T], /, *args: object) -> T:
    """``func(*args)`` on one of the library's worker threads, in the caller's context (as
    ``asyncio.to_thread`` would)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    _pool().submit((loop, done, contextvars.copy_context(), func, args))
    return await done


def _outcome(
    done: asyncio.Future[Any],
    context: contextvars.Context,
    func: Callable[..., Any],
    args: tuple[object, ...],
) -> tuple[Any, BaseException | None] | None:
    """On a worker thread: (result, error) of the call, or None when its caller gave up while
    it was queued (then it never runs: a seal nobody sends, an open nobody reads)."""
    if done.cancelled():
        return None
    try:
        return context.run(func, *args), None
    except StopIteration as exc:
        # A future refuses StopIteration (it would end the awaiting coroutine silently).
        error = RuntimeError("the call raised StopIteration")
        error.__cause__ = exc
        return None, error
    except BaseException as exc:  # every outcome goes to the awaiting task
        return None, exc


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, done, result, error)
    except RuntimeError:
        pass  # the loop was closed meanwhile: nobody is waiting any more


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


def _forget_inherited_pool() -> None:
    # A fork child has none of the parent's threads: a pool it inherited would queue forever.
    global _pool_of_process, _lock
    _lock = threading.Lock()
    _pool_of_process = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_pool)
