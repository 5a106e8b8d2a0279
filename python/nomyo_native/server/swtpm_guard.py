"""Run swtpm as a child and end it when the endpoint that started this guard goes away.

Started by :class:`nomyo_native.server.tpm.SwtpmProcess` as
``python -I -S swtpm_guard.py WATCH_FD REMOVE_DIR -- swtpm ...`` (standard library only, so it
starts fast and never imports the package). ``WATCH_FD`` is the read end of a pipe whose
write end only the endpoint holds: when the endpoint stops, exits or is killed (even with
SIGKILL), the kernel closes that end, the read sees EOF, and the guard stops swtpm and, when
``REMOVE_DIR`` is not ``-``, deletes that temporary state directory.

swtpm additionally gets ``PR_SET_PDEATHSIG`` (Linux): it fires when the *thread* that forked
exits, and the guard's only thread lives exactly as long as the guard, so a SIGKILLed guard
takes swtpm with it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_SECONDS = 5.0


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
    if len(argv) < 5 or argv[3] != "--":
        print("usage: swtpm_guard.py WATCH_FD REMOVE_DIR|- -- COMMAND...", file=sys.stderr)
        return 2
    watch_fd, remove_dir, command = int(argv[1]), argv[2], argv[4:]
    # The endpoint decides when we stop: terminal signals to its process group are not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    child = subprocess.Popen(  # noqa: S603 - argv given by our own endpoint
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        # Safe here: the guard has a single thread.
        preexec_fn=_die_with_guard,
    )
    try:
        poller = select.poll()
        poller.register(watch_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        # Any event on the pipe (EOF when the endpoint is gone) or a SIGTERM ends the wait.
        while child.poll() is None and not stopping and not poller.poll(200):
            pass
        # swtpm ending on its own (a start failure) is reported; being stopped is not.
        failed = child.poll() not in (None, 0)
    finally:
        _stop(child)
        if remove_dir != "-":
            shutil.rmtree(remove_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
