"""An owned software TPM: ``swtpm socket --tpm2`` on loopback ports, under a guard process
that stops it (and removes its temporary state) whenever this process goes away."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from nomyo_native.server.exit_guard import GUARDS_SUPPORTED, Guard, start_guard
from nomyo_native.server.private_files import UnsafePathError, ensure_private_dir
from nomyo_native.server.tss import TpmError


class SwtpmNotFoundError(TpmError):
    """The ``swtpm`` binary is not installed."""


def _consecutive_free_ports() -> int:
    """A port p with p and p+1 free on 127.0.0.1 (the swtpm TCTI uses p+1 for control)."""
    for _ in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise TpmError("no pair of consecutive free loopback ports for swtpm")


class SwtpmProcess:
    """An owned ``swtpm socket --tpm2`` on loopback ports.

    ``state_dir`` keeps the TPM's state (persistent keys, NV) across restarts: it is created
    0700 or must already be private, and it is never deleted. Without it the state lives in a
    temporary ``nomyo-swtpm-*`` directory that is removed when swtpm stops.

    swtpm runs under a small guard process (``exit_guard.py``) that stops it, and removes a
    temporary state directory, as soon as this process goes away by any path, SIGKILL
    included. Use as a context manager, or call :meth:`start` and :meth:`stop`. ``tcti`` is
    the string to give :class:`TpmQuoter`.
    """

    def __init__(
        self,
        binary: str = "swtpm",
        *,
        state_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.binary = binary
        self.start_timeout = start_timeout
        self.persistent = state_dir is not None
        self._requested_state_dir = Path(state_dir) if state_dir is not None else None
        self.state_dir: Path | None = None
        self.port: int | None = None
        # swtpm's guard: releasing it (or our death) stops swtpm.
        self._guard: Guard | None = None

    @property
    def running(self) -> bool:
        return self._guard is not None and self._guard.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The guard's process id (swtpm is its only child)."""
        return self._guard.pid if self._guard is not None else None

    @property
    def tcti(self) -> str:
        if self.port is None or not self.running:
            raise TpmError("swtpm is not running")
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> SwtpmProcess:
        if self.running:
            return self
        executable = shutil.which(self.binary)
        if executable is None:
            raise SwtpmNotFoundError(
                f"'{self.binary}' not found on PATH: install the Debian packages swtpm and "
                "swtpm-tools (apt-get install swtpm swtpm-tools), or run with --tpm none"
            )
        if not GUARDS_SUPPORTED:
            raise TpmError("an owned swtpm needs a POSIX system (use --tpm tcti:...)")
        if self._requested_state_dir is not None:
            try:
                self.state_dir = ensure_private_dir(self._requested_state_dir, "--tpm-state")
            except (OSError, UnsafePathError) as exc:
                raise TpmError(str(exc)) from None
        last_error = "unknown"
        try:
            # A port can be taken between probing and swtpm's bind: retry with fresh ports.
            for _ in range(5):
                if not self.persistent:
                    # A failed attempt's guard deleted its temporary state directory: each
                    # attempt gets a fresh one (mkdtemp makes it 0700).
                    self.state_dir = Path(tempfile.mkdtemp(prefix="nomyo-swtpm-"))
                port = _consecutive_free_ports()
                guard = self._spawn(executable, port)
                if self._wait_ready(guard.process, (port + 1, port)):
                    self._guard, self.port = guard, port
                    return self
                last_error = self._reap(guard)
        except BaseException:
            self._cleanup_dir()
            raise
        self._cleanup_dir()
        if self.persistent:
            last_error += " (is another endpoint using this --tpm-state directory?)"
        raise TpmError(f"swtpm did not start: {last_error}")

    def _spawn(self, executable: str, port: int) -> Guard:
        assert self.state_dir is not None
        swtpm = [
            executable,
            "socket",
            "--tpm2",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--tpmstate",
            f"dir={self.state_dir},mode=0600",
            "--flags",
            "not-need-init,startup-clear",
        ]
        # The guard deletes only the temporary default, never a kept --tpm-state.
        return start_guard(remove=() if self.persistent else (self.state_dir,), command=swtpm)

    def _wait_ready(self, process: subprocess.Popen[bytes], ports: tuple[int, ...]) -> bool:
        """Whether swtpm came up listening on every one of ``ports``.

        Both, not just the control port: swtpm binds them one after the other, and a client
        that connects to the TPM port in between (or after another process took it) fails.
        """
        deadline = time.monotonic() + self.start_timeout
        waiting = list(ports)
        while waiting and time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=1.0).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.02)
        return not waiting and process.poll() is None

    @staticmethod
    def _reap(guard: Guard) -> str:
        """Stop a guard whose swtpm did not come up; swtpm's last error line."""
        guard.release()
        process = guard.process
        try:
            _, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=10)
        text = err.decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else f"exit status {process.returncode}"

    def stop(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.stop()
        self.port = None
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        # Only the temporary default: state the user asked to keep is never deleted.
        if self.state_dir is not None and not self.persistent:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir = None

    def __enter__(self) -> SwtpmProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
