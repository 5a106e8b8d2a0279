"""The library's own worker threads for the core's blocking calls: few, reused, fork-safe."""

from __future__ import annotations

import asyncio
import contextvars
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from nomyo_native import _workers

REQUEST = contextvars.ContextVar("REQUEST", default="unset")


async def test_calls_run_on_a_few_reused_library_threads():
    seen: set[str] = set()
    lock = threading.Lock()
    barrier_hits = 0

    def work(i: int) -> int:
        nonlocal barrier_hits
        with lock:
            seen.add(threading.current_thread().name)
            barrier_hits += 1
        return i * i

    results = await asyncio.gather(*(_workers.run_blocking(work, i) for i in range(64)))
    assert results == [i * i for i in range(64)]
    assert barrier_hits == 64
    assert 1 <= len(seen) <= _workers.worker_count() <= _workers.MAX_WORKERS
    assert all(name.startswith(_workers.THREAD_NAME_PREFIX) for name in seen)
    assert threading.current_thread().name not in seen


async def test_the_callers_context_goes_along():
    REQUEST.set("request-7")
    assert await _workers.run_blocking(REQUEST.get) == "request-7"


async def test_exceptions_reach_the_caller():
    def fail() -> None:
        raise ValueError("from the worker")

    with pytest.raises(ValueError, match="from the worker"):
        await _workers.run_blocking(fail)


def test_worker_count_follows_the_cores_the_process_may_use(monkeypatch, tmp_path):
    # No cgroup quota (the machine running the tests may have one).
    monkeypatch.setattr(_workers, "_PROC_CGROUP", str(tmp_path / "absent"), raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert _workers.worker_count() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert _workers.worker_count() == _workers.MAX_WORKERS


FORK_CHILD = textwrap.dedent(
    """
    import asyncio, os
    from nomyo_native import _workers

    async def square(n):
        return await _workers.run_blocking(pow, n, 2)

    assert asyncio.run(square(3)) == 9  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:
        # The inherited pool's threads are not in the child: it must get a pool of its own.
        os._exit(0 if asyncio.run(square(4)) == 16 else 1)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), asyncio.run(square(5)))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_child_gets_a_pool_of_its_own():
    done = subprocess.run(
        [sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "25"]


FORK_WHILE_THE_POOL_IS_BUSY = textwrap.dedent(
    """
    import asyncio, os, sys, threading, time
    from nomyo_native import _workers

    assert asyncio.run(_workers.run_blocking(pow, 3, 2)) == 9  # the parent's pool exists now
    # Another thread of the parent is inside the pool's bookkeeping (a worker counting itself
    # free) at the moment of the fork: the child inherits that lock held.
    pool = _workers._pool_of_process
    held, release = threading.Event(), threading.Event()

    def worker_inside_the_pool():
        with pool._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=worker_inside_the_pool)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        # A pool of the child's own, then the interpreter's normal exit (which stops it).
        sys.exit(0 if asyncio.run(_workers.run_blocking(pow, 4, 2)) == 16 else 1)
    release.set()
    holder.join()
    for _ in range(600):
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            print("exited", os.waitstatus_to_exitcode(status))
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("hung")
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_child_exits_without_touching_the_parents_pool():
    # The parent's pool is stopped at the parent's exit; a fork child inherits the exit hooks,
    # but not the pool's threads, and the pool's lock may have been held by one of them at the
    # fork: the child's exit stops the child's own pool and must not wait on the parent's (as
    # concurrent.futures' exit hook).
    done = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_THE_POOL_IS_BUSY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exited", "0"]


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("50000 100000", 1), ("150000 100000", 2), ("max 100000", 4), ("garbage", 4)],
)
def test_worker_count_follows_a_cgroup_cpu_quota(monkeypatch, tmp_path, cpu_max, expected):
    # A container limited to 1.5 CPUs by its cgroup (docker --cpus) sees every core of the host
    # in its affinity; threads beyond the quota only add malloc arenas.
    (tmp_path / "proc_cgroup").write_text("0::/app/worker\n")
    (tmp_path / "app" / "worker").mkdir(parents=True)
    (tmp_path / "app" / "worker" / "cpu.max").write_text(cpu_max + "\n")
    (tmp_path / "app" / "cpu.max").write_text("max 100000\n")
    monkeypatch.setattr(_workers, "_PROC_CGROUP", str(tmp_path / "proc_cgroup"), raising=False)
    monkeypatch.setattr(_workers, "_CGROUP_ROOT", str(tmp_path), raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert _workers.worker_count() == expected


def test_a_parent_cgroup_quota_limits_too(monkeypatch, tmp_path):
    (tmp_path / "proc_cgroup").write_text("0::/app/worker\n")
    (tmp_path / "app" / "worker").mkdir(parents=True)
    (tmp_path / "app" / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setattr(_workers, "_PROC_CGROUP", str(tmp_path / "proc_cgroup"), raising=False)
    monkeypatch.setattr(_workers, "_CGROUP_ROOT", str(tmp_path), raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert _workers.worker_count() == 1


async def test_a_call_cancelled_while_queued_never_runs():
    # Every worker busy, one more call queued; its caller gives up: it must not run later
    # (a seal nobody sends, an open nobody reads).
    release = threading.Event()
    ran: list[str] = []
    busy = [
        asyncio.ensure_future(_workers.run_blocking(release.wait))
        for _ in range(_workers.worker_count())
    ]
    queued = asyncio.ensure_future(_workers.run_blocking(ran.append, "queued"))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    assert await asyncio.gather(*busy) == [True] * len(busy)
    assert await _workers.run_blocking(ran.append, "after") is None  # behind the skipped one
    assert ran == ["after"]


async def test_stop_iteration_from_a_call_is_an_error_not_a_hang():
    # A future cannot hold StopIteration: handed over as is, the awaiting task never wakes.
    def exhausted() -> object:
        return next(iter(()))

    with pytest.raises(RuntimeError, match="StopIteration") as caught:
        await asyncio.wait_for(_workers.run_blocking(exhausted), 30)
    assert isinstance(caught.value.__cause__, StopIteration)


def test_a_result_for_a_closed_loop_is_dropped_and_the_workers_carry_on():
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait()
        return "late"

    loop = asyncio.new_event_loop()
    pending = loop.create_task(_workers.run_blocking(slow))
    loop.run_until_complete(asyncio.sleep(0))
    assert started.wait(30)
    pending.cancel()
    loop.run_until_complete(asyncio.gather(pending, return_exceptions=True))
    loop.close()
    release.set()  # the worker now finishes for a closed loop
    assert asyncio.run(_workers.run_blocking(pow, 3, 2)) == 9


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
async def test_a_base_exception_in_a_call_reaches_its_caller_once_and_the_workers_carry_on(error):
    # As run_in_executor did: the awaiting task gets it (it is not lost, nor raised on the
    # worker thread, which would end that thread and leave the pool a worker short).
    def interrupted() -> None:
        raise error()

    for _ in range(_workers.worker_count() + 1):
        with pytest.raises(error):  # awaited as is: a task would re-raise it out of the loop
            await _workers.run_blocking(interrupted)
    assert await _workers.run_blocking(pow, 2, 5) == 32


async def test_a_result_its_caller_gave_up_on_while_it_ran_is_dropped_not_kept():
    # A caller cancelled while its call runs (a deadline, a closed app): what the call returns
    # (a response opened for nobody) must not stay referenced by the hand-off.
    import gc
    import weakref

    class Opened:
        pass

    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    kept: list[weakref.ref[Opened]] = []

    def opening() -> Opened:
        started.set()
        release.wait()
        result = Opened()
        kept.append(weakref.ref(result))
        finished.set()
        return result

    call = asyncio.ensure_future(_workers.run_blocking(opening))
    assert await asyncio.to_thread(started.wait, 30)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    assert await asyncio.to_thread(finished.wait, 30)
    assert await _workers.run_blocking(pow, 2, 3) == 8  # the hand-off of the result is past
    await asyncio.sleep(0)
    gc.collect()
    assert kept and kept[0]() is None, "the result outlived its cancelled call"


ONE_AT_A_TIME = textwrap.dedent(
    """
    import asyncio, threading
    from nomyo_native import _workers

    async def main():
        for _ in range(50):
            await _workers.run_blocking(pow, 2, 10)

    asyncio.run(main())
    names = [t.name for t in threading.enumerate()]
    print(sum(name.startswith(_workers.THREAD_NAME_PREFIX) for name in names))
    """
)


def test_calls_one_at_a_time_keep_to_one_thread():
    # A thread is started only when a call finds every started one busy, and a thread counts
    # as free before its caller wakes: a client sending one request at a time keeps to one
    # thread (each thread that allocates costs a malloc arena).
    done = subprocess.run(
        [sys.executable, "-c", ONE_AT_A_TIME], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]


EXIT_WHILE_A_CALL_RUNS = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    from nomyo_native import _workers

    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.3)
        sys.stdout.write("finished\\n")
        sys.stdout.flush()

    async def main():
        asyncio.ensure_future(_workers.run_blocking(slow))
        await asyncio.to_thread(started.wait, 30)

    asyncio.new_event_loop().run_until_complete(main())
    print("exiting", flush=True)  # the call is still running: the interpreter waits for it
    """
)


def test_the_interpreter_waits_for_a_running_call_at_exit():
    # As concurrent.futures' workers: a thread inside the core is joined, never abandoned
    # while Python finalizes (it would wake in a finalized interpreter).
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_A_CALL_RUNS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exiting", "finished"]


A_THREAD_THAT_WOULD_NOT_START = textwrap.dedent(
    """
    import asyncio, os, threading
    os.sched_getaffinity = lambda pid: {0}  # one worker: the pool's only thread
    from nomyo_native import _workers
    _workers._PROC_CGROUP = "/nonexistent"

    real_start = threading.Thread.start
    refusals = [RuntimeError("can't start new thread")]  # out of threads for a moment

    def start(self):
        if refusals:
            raise refusals.pop()
        real_start(self)

    threading.Thread.start = start
    ran = []

    async def main():
        try:
            await _workers.run_blocking(ran.append, "refused")
        except RuntimeError as exc:
            print("refused:", exc)
        print("next:", await asyncio.wait_for(_workers.run_blocking(pow, 2, 5), 60))

    asyncio.run(main())
    print("ran:", *ran)
    """
)


def test_a_thread_that_would_not_start_fails_its_call_and_no_other():
    # Starting a thread can fail (the process is out of threads or memory for a moment): the
    # call that needed it gets the error and never runs later (its caller was told it failed),
    # the next call gets a thread, and the exit joins only threads that started.
    done = subprocess.run(
        [sys.executable, "-c", A_THREAD_THAT_WOULD_NOT_START],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["refused: can't start new thread", "next: 32", "ran:"]
    assert done.stderr == ""
