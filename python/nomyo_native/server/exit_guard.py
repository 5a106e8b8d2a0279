"""A guard process that outlives the endpoint just long enough to clean up after it.

:func:`start_guard` starts ``python -I -S exit_guard.py WATCH_FD [DIR...] [-- COMMAND...]``
(standard library only, so it starts fast and never imports the package). ``WATCH_FD`` is the
read end of a pipe whose write end only the endpoint holds: when the endpoint stops, exits or
is killed (even with SIGKILL), the kernel closes that end, the read sees EOF, and the guard
stops COMMAND (the endpoint's swtpm) and deletes the temporary DIRs. The endpoint stops it
the same way, by closing its end (:meth:`Guard.stop`).

COMMAND additionally gets ``PR_SET_PDEATHSIG`` (Linux): it fires when the *thread* that forked
exits, and the guard's only thread lives exactly as long as the guard, so a SIGKILLed guard
takes its child with it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_SECONDS = 5.0
# Inheriting one pipe end (pass_fds) and new sessions are POSIX; elsewhere the endpoint
# cleans up only on the exit paths it reaches itself.
GUARDS_SUPPORTED = os.name == "posix"


class Guard:
    """The endpoint's side of one guard: the process and the write end of its watch pipe."""

    def __init__(self, process: subprocess.Popen[bytes], watch_fd: int) -> None:
        self.process = process
        self._watch_fd: int | None = watch_fd

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        """Close our end of the watch pipe: the guard stops its child and cleans up."""
        watch_fd, self._watch_fd = self._watch_fd, None
        if watch_fd is not None:
            os.close(watch_fd)

    def stop(self, timeout: float = 15.0) -> None:
        """Let the guard stop its child and clean up, and wait for it (killed after timeout)."""
        self.release()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # the child follows through PR_SET_PDEATHSIG
            self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_guard(
    remove: Sequence[str | os.PathLike[str]] = (), command: Sequence[str] = ()
) -> Guard:
    """A guard that deletes ``remove`` and stops ``command`` (if any) when we go away.

    The guard's stderr is a pipe (``guard.process.stderr``): ``command``'s error output.
    Raises ``OSError`` where guards are not supported (see :data:`GUARDS_SUPPORTED`).
    """
    if not GUARDS_SUPPORTED:
        raise OSError("exit guards need a POSIX system")
    read_fd, write_fd = os.pipe()  # both non-inheritable; the guard gets read_fd only
    argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), str(read_fd)]
    argv += [os.fspath(path) for path in remove]
    if command:
        argv += ["--", *command]
    try:
        process = subprocess.Popen(  # noqa: S603 - argv built here from our own values
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(read_fd,),
            # Out of our process group: a terminal's Ctrl-C is for the endpoint, which then
            # stops the guard itself.
            start_new_session=True,
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return Guard(process, write_fd)


# ---- the guard process ----------------------------------------------------------------


def _die_with_guard() -> None:  # pragma: no cover - runs in the forked child
    guard = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != guard:  # the guard died before prctl took effect
        os._exit(1)


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: exit_guard.py WATCH_FD [DIR...] [-- COMMAND...]", file=sys.stderr)
        return 2
    watch_fd = int(argv[1])
    rest = argv[2:]
    split = rest.index("--") if "--" in rest else len(rest)
    remove, command = rest[:split], rest[split + 1 :]
    # The endpoint decides when we stop: terminal signals to its process group are not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    child = None
    failed = False
    try:
        if command:
            child = subprocess.Popen(  # noqa: S603 - argv given by our own endpoint
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # Safe here: the guard has a single thread.
                preexec_fn=_die_with_guard,
            )
        # The pipe turning readable (EOF when the endpoint is gone) or a SIGTERM ends the wait.
        while (
            (child is None or child.poll() is None)
            and not stopping
            and not select.select([watch_fd], [], [], 0.2)[0]
        ):
            pass
        # The child ending on its own (a start failure) is reported; being stopped is not.
        failed = child is not None and child.poll() not in (None, 0)
    finally:
        if child is not None:
            _stop(child)
        for path in remove:
            shutil.rmtree(path, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
