"""Build an endpoint from a :class:`ServerConfig` and serve it with uvicorn.

:func:`start_server` runs it in a background thread on a port the OS chose (tests, the demo);
:func:`serve` runs it in the foreground until interrupted (``nomyo-native serve``). Both own
what they create (swtpm process, temporary TLS files, backend connections) and release it on
stop.

What an endpoint owns is built in ``resources.py``; the socket, TLS context and uvicorn
server in ``listener.py``.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import uvicorn

from nomyo_native.server.config import ServerConfig
from nomyo_native.server.interrupts import run_interruptible
from nomyo_native.server.listener import bind_socket, serve_socket, uvicorn_server
from nomyo_native.server.recording import KeyRecorder, RecordedKeys
from nomyo_native.server.request_log import RequestLog
from nomyo_native.server.resources import EndpointResources, build_resources
from nomyo_native.server.tpm import TpmQuoter


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class RunningServer:
    """An endpoint serving in a background thread. Stop it with :meth:`stop` or ``with``.

    ``base_url`` is what clients use; ``ca_path`` is the CA to trust for a self-signed
    endpoint (None for HTTP or a given certificate); ``recorded_keys`` lists the recorded AES
    keys when key recording is on (test-only).
    """

    def __init__(self, resources: EndpointResources, host: str, port: int, tls: bool) -> None:
        self._resources = resources
        self.host = host
        self.port = port
        self.base_url = _url("https" if tls else "http", host, port)
        self.ca_path: Path | None = resources.ca_path
        self.server_key_fingerprint: str = resources.state.server_key.fingerprint
        self.public_key_pem: str = resources.state.server_key.public_key_pem
        self.quoter: TpmQuoter | None = resources.state.quoter
        # The persistent AIK's fingerprint for the configured scheme: what clients pin as
        # trusted_aik (None without a TPM or with a fresh AIK per request).
        state = resources.state
        self.aik_fingerprint: str | None = (
            state.quoter.aik_fingerprint(scheme=state.tpm_scheme, hash_alg=state.tpm_hash)
            if state.quoter is not None and state.quoter.persistent
            else None
        )
        # What an owned swtpm's PCR 10 was extended with at start (None otherwise).
        self.code_measurement: bytes | None = resources.code_measurement
        # The owned swtpm's kept state directory (--tpm-state), None when temporary or no swtpm.
        swtpm = resources.swtpm
        self.tpm_state: Path | None = swtpm.state_dir if swtpm and swtpm.persistent else None
        self.recorder: KeyRecorder | None = resources.state.recorder
        # Method and path of every request this endpoint received (bounded, test aid).
        self.request_log: RequestLog = resources.state.request_log
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def tpm_available(self) -> bool:
        return self.quoter is not None

    @property
    def recorded_keys(self) -> list[RecordedKeys]:
        if self.recorder is None:
            raise RuntimeError("key recording is off for this endpoint (record_keys=True)")
        return self.recorder.records

    def _start(self, sock: socket.socket, timeout: float) -> None:
        server = uvicorn_server(self._resources)
        self._server = server

        def run() -> None:
            try:
                asyncio.run(serve_socket(server, sock, self._resources.state.backend))
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"nomyo-endpoint-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if server.started:
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"endpoint did not start: {self._error!r}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._server = None
        self._resources.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(config: ServerConfig | None = None, *, timeout: float = 60.0) -> RunningServer:
    """Start an endpoint in a background thread and return once it accepts connections.

    ``config.port`` 0 lets the OS pick a free port (read it back from ``.port``).
    """
    config = config or ServerConfig(port=0)
    # Bound first: a busy port fails at once, before key generation and swtpm.
    sock = bind_socket(config.host, config.port)
    try:
        resources = build_resources(config)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    running = RunningServer(resources, config.host, port, tls=config.uses_tls)
    running._start(sock, timeout)
    return running


@contextlib.contextmanager
def termination_unwinds(*, as_interrupt: bool = False) -> Iterator[None]:
    """Make SIGTERM, SIGHUP and SIGQUIT end the process through ``finally`` blocks (main
    thread only).

    By default they kill the interpreter on the spot, leaving swtpm and the temporary TLS
    key behind. uvicorn captures SIGTERM while serving and, after its graceful shutdown,
    raises it again with the previous handler restored: ours, which then unwinds the stack.
    A second signal during that cleanup is ignored, so the cleanup itself finishes.

    ``as_interrupt`` makes them act as Ctrl-C instead (``KeyboardInterrupt``), for callers
    inside ``asyncio.run``: asyncio cancels its task for a SIGINT, where an exception raised
    in the middle of a task would be reported as never retrieved.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGHUP and SIGQUIT do not exist on Windows.
    wanted = [signal.SIGTERM] + [
        getattr(signal, name) for name in ("SIGHUP", "SIGQUIT") if hasattr(signal, name)
    ]
    previous = {signum: signal.getsignal(signum) for signum in wanted}

    def unwind(signum: int, _frame: object) -> None:
        for other in wanted:
            signal.signal(other, signal.SIG_IGN)
        if as_interrupt:
            if callable(signal.getsignal(signal.SIGINT)):
                _thread.interrupt_main()
                return
            # SIGINT ignored since start-up (a background job of a script, nohup): simulating
            # it would do nothing, so the stop would be lost; interrupt here instead.
            raise KeyboardInterrupt
        raise SystemExit(0)

    for signum in wanted:
        signal.signal(signum, unwind)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def sigint_interrupts() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt (main thread only) even when the process started
    with it ignored (a script's background job) or at its default (killed on the spot).

    uvicorn takes SIGINT over for the time it serves, whatever the disposition was: without
    this, a SIGINT sent between the start-up banner and uvicorn's start was ignored (serve
    ran on forever) or killed the process before its cleanup. A handler the program installed
    itself is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous not in (signal.SIG_IGN, signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def serve(config: ServerConfig, on_ready: Callable[[RunningServer], None] | None = None) -> None:
    """Serve in the foreground until SIGINT (KeyboardInterrupt), SIGTERM, SIGHUP or SIGQUIT
    (``SystemExit(0)``), whatever dispositions the process inherited for them; every path out
    releases what the endpoint created."""
    with termination_unwinds(), sigint_interrupts():
        # Bound first: a busy port fails at once, before key generation and swtpm.
        sock = bind_socket(config.host, config.port)
        with contextlib.closing(sock):
            resources = build_resources(config)
            try:
                port = sock.getsockname()[1]
                info = RunningServer(resources, config.host, port, tls=config.uses_tls)
                if on_ready is not None:
                    on_ready(info)
                server = uvicorn_server(resources)
                run_interruptible(serve_socket(server, sock, resources.state.backend))
            finally:
                resources.close()
