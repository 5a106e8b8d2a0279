"""Run Python in a child process where the first SIGINT handler a program installs is hit by a
SIGINT at once: the moment ``asyncio.run`` forgets the interrupt on CPython 3.11-3.13 (see
``nomyo_native.server.interrupts``). The race it reproduces is otherwise a rare event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

# Prepended to the child's code. The signal is raised right after the handler is in place, so
# Python runs it as soon as ``signal.signal`` returns: before the caller's next statement.
RACE_PRELUDE = """
import signal as _signal
_install = _signal.signal
_fired = False
def _install_then_interrupt(signum, handler):
    global _fired
    previous = _install(signum, handler)
    if (signum == _signal.SIGINT and callable(handler)
            and handler is not _signal.default_int_handler and not _fired):
        _fired = True
        _signal.raise_signal(_signal.SIGINT)
    return previous
_signal.signal = _install_then_interrupt
"""


def run_python(
    code: str,
    *args: str,
    race: bool = False,
    timeout: float = 60,
    sigint: signal.Handlers = signal.SIG_DFL,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``python -c code args`` (after :data:`RACE_PRELUDE` when ``race``), stdout and stderr.

    The child starts with SIGINT's disposition ``sigint`` (default: SIG_DFL) whatever this run
    inherited: a test run started in the background by a script ignores SIGINT, and so would
    its children.
    """
    return subprocess.run(
        [sys.executable, "-c", (RACE_PRELUDE if race else "") + code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


RUN_CLI = "import runpy; runpy.run_module('nomyo_native.cli', run_name='__main__')"
