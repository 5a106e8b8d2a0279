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
the CPU a hand-off costs, paid twice per request (seal and open).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["MAX_WORKERS", "run_blocking", "worker_count"]

T = TypeVar("T")

MAX_WORKERS = 4
THREAD_NAME_PREFIX = "nomyo-core"

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


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


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(worker_count(), thread_name_prefix=THREAD_NAME_PREFIX)
        return _executor


async def run_blocking(func: Callable[..., T], /, *args: object) -> T:
    """``func(*args)`` on one of the library's worker threads, in the caller's context (as
    ``asyncio.to_thread`` would)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    _pool().submit(_run, loop, done, contextvars.copy_context(), func, args)
    return await done


def _run(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    context: contextvars.Context,
    func: Callable[..., Any],
    args: tuple[object, ...],
) -> None:
    """On a worker thread: the call, then its outcome handed to ``loop``."""
    if done.cancelled():  # the caller gave up while the call was queued: skip it
        return
    result: Any = None
    error: BaseException | None = None
    try:
        result = context.run(func, *args)
    except StopIteration as exc:
        # A future refuses StopIteration (it would end the awaiting coroutine silently).
        error = RuntimeError("the call raised StopIteration")
        error.__cause__ = exc
    except BaseException as exc:  # every outcome goes to the awaiting task
        error = exc
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
    global _executor, _lock
    _lock = threading.Lock()
    _executor = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_pool)
