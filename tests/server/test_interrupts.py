"""``run_interruptible``: every Ctrl-C ends as KeyboardInterrupt after the task unwound, a
second one at once, and a cancellation of the program's own stays a CancelledError. Each case
runs in a child process: a SIGINT that went astray here would stop the whole test run."""

from __future__ import annotations

import textwrap

import pytest
from tests.sigint_race import run_python

# The child's verdict: the outcome of run_interruptible(main()), then what main() printed.
HARNESS = """
import asyncio, os, signal, sys, threading, _thread
from nomyo_native.server.interrupts import run_interruptible
{main}
try:
    print("returned", run_interruptible(main()))
except KeyboardInterrupt:
    print("KeyboardInterrupt")
except asyncio.CancelledError:
    print("CancelledError")
print("handler restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def outcome(main: str, *, race: bool = False) -> list[str]:
    result = run_python(HARNESS.format(main=textwrap.dedent(main)), race=race)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_a_result_comes_back_and_the_default_handler_is_restored():
    lines = outcome(
        """
        async def main():
            print("own handler", signal.getsignal(signal.SIGINT) is not signal.default_int_handler)
            await asyncio.sleep(0)
            return 42
        """
    )
    assert lines == ["own handler True", "returned 42", "handler restored True"]


@pytest.mark.parametrize("started", [False, True])
def test_sigint_right_after_the_handler_is_installed_is_an_interrupt(started):
    # The window asyncio.run loses (CPython 3.11-3.13): the SIGINT lands before the task's
    # first step (the prelude), or as that first step runs.
    main = """
        async def main():
            {interrupt}
            try:
                await asyncio.sleep(30)
            finally:
                print("unwound")
        """.format(interrupt="signal.raise_signal(signal.SIGINT)" if started else "pass")
    lines = outcome(main, race=not started)
    expected = ["unwound"] if started else []
    assert lines == [*expected, "KeyboardInterrupt", "handler restored True"]


def test_sigint_from_another_thread_wakes_a_sleeping_loop_and_unwinds_the_task():
    lines = outcome(
        """
        async def main():
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = asyncio.get_running_loop().time()
            try:
                await asyncio.sleep(30)
            finally:
                print("unwound within", asyncio.get_running_loop().time() - started < 10)
        """
    )
    assert lines == ["unwound within True", "KeyboardInterrupt", "handler restored True"]


def test_a_simulated_sigint_is_an_interrupt_too():
    # How the demo turns SIGTERM, SIGHUP and SIGQUIT into Ctrl-C (server.runner).
    lines = outcome(
        """
        signal.signal(signal.SIGTERM, lambda *_: _thread.interrupt_main())
        async def main():
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            try:
                await asyncio.sleep(30)
            finally:
                print("unwound")
        """
    )
    assert lines == ["unwound", "KeyboardInterrupt", "handler restored True"]


def test_a_second_sigint_while_unwinding_interrupts_at_once():
    lines = outcome(
        """
        async def main():
            signal.raise_signal(signal.SIGINT)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                print("cancelled")
                signal.raise_signal(signal.SIGINT)
                await asyncio.sleep(30)  # a cleanup that would hang
                print("cleanup finished")
        """
    )
    assert lines == ["cancelled", "KeyboardInterrupt", "handler restored True"]


def test_a_task_that_absorbs_the_interrupt_returns_its_result():
    # As asyncio.run: the task decided to finish anyway; a later SIGINT is no longer its.
    lines = outcome(
        """
        async def main():
            signal.raise_signal(signal.SIGINT)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()
            return "kept"
        """
    )
    assert lines == ["returned kept", "handler restored True"]


def test_a_cancellation_of_the_programs_own_stays_a_cancelled_error():
    lines = outcome(
        """
        async def main():
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
        """
    )
    assert lines == ["CancelledError", "handler restored True"]


def test_a_cancellation_during_an_interrupt_is_not_taken_for_it():
    # Interrupted, then cancelled again by the program: two requests, one absorbed by the
    # interrupt, so the cancellation that is left is the program's own (as asyncio.run).
    lines = outcome(
        """
        async def main():
            signal.raise_signal(signal.SIGINT)
            asyncio.current_task().cancel()
            await asyncio.sleep(30)
        """
    )
    assert lines == ["CancelledError", "handler restored True"]


def test_off_the_main_thread_it_leaves_sigint_alone():
    lines = outcome(
        """
        async def main():
            return signal.getsignal(signal.SIGINT) is signal.default_int_handler
        results = []
        thread = threading.Thread(target=lambda: results.append(run_interruptible(main())))
        thread.start()
        thread.join()
        print("untouched in thread", results)
        """
    )
    assert lines[0] == "untouched in thread [True]"


def test_with_sigint_ignored_it_stays_ignored():
    lines = run_python(
        HARNESS.format(
            main=textwrap.dedent(
                """
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                async def main():
                    signal.raise_signal(signal.SIGINT)
                    await asyncio.sleep(0.05)
                    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN
                """
            )
        )
    ).stdout.splitlines()
    assert lines == ["returned True", "handler restored False"]
