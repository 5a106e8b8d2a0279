"""Build an endpoint from a :class:`ServerConfig` and serve it with uvicorn.

:func:`start_server` runs it in a background thread on a port the OS chose (tests, the demo);
:func:`serve` runs it in the foreground until interrupted (``nomyo-native serve``). Both own
what they create (swtpm process, temporary TLS files, backend connections) and release it on
stop.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import errno
import hashlib
import logging
import re
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn

from nomyo_native.server.app import EndpointState, create_app
from nomyo_native.server.backends import Backend, make_backend
from nomyo_native.server.config import ServerConfig
from nomyo_native.server.crypto import ServerKey
from nomyo_native.server.exit_guard import GUARDS_SUPPORTED, Guard, start_guard
from nomyo_native.server.limits import ConnectionLimits
from nomyo_native.server.policy import ApiKeyPolicy, RateLimiter
from nomyo_native.server.protocol import guarded_protocol
from nomyo_native.server.recording import KeyRecorder, RecordedKeys
from nomyo_native.server.tls import DEFAULT_HOSTS, load_or_create_tls_dir, make_self_signed
from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter

logger = logging.getLogger("nomyo_native.server")

CODE_MEASUREMENT_PCR = 10


@dataclass
class _Resources:
    """What an endpoint owns, released in reverse order by :meth:`close`."""

    state: EndpointState
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Loaded at once for a throwaway key, whose file is then deleted; else at server start.
    ssl_context: ssl.SSLContext | None = None
    ca_path: Path | None = None
    swtpm: SwtpmProcess | None = None
    owns_quoter: bool = False
    code_measurement: bytes | None = None
    tempdirs: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)
    # Delete the temporary directories even if this process is killed (SIGKILL included).
    guards: list[Guard] = field(default_factory=list)

    def close(self) -> None:
        # Each step runs even when an earlier one fails: the temporary TLS key must go.
        try:
            if self.owns_quoter and self.state.quoter is not None:
                self.state.quoter.close()
        finally:
            try:
                if self.swtpm is not None:
                    self.swtpm.stop()
            finally:
                for tempdir in self.tempdirs:
                    tempdir.cleanup()
                self.tempdirs.clear()
                for guard in self.guards:
                    guard.stop()
                self.guards.clear()
                if self.state.recorder is not None:
                    self.state.recorder.close()


def _read_ek_chain(path: Path | None) -> tuple[str, ...]:
    """The PEM certificates of --ek-chain, each block on its own (refused if it holds none)."""
    if path is None:
        return ()
    text = path.read_text(encoding="ascii")
    blocks = re.findall(
        r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----", text
    )
    if not blocks:
        raise ValueError(f"--ek-chain {path} holds no PEM certificate")
    return tuple(block + "\n" for block in blocks)


def _open_tpm(config: ServerConfig, resources: _Resources) -> TpmQuoter | None:
    if config.quoter is not None:
        return config.quoter
    if config.tpm == "none":
        return None
    if config.tpm == "swtpm":
        resources.swtpm = SwtpmProcess(state_dir=config.tpm_state).start()
        resources.owns_quoter = True
        quoter = TpmQuoter(resources.swtpm.tcti, aik=config.aik)
        # Only our own swtpm: on a real TPM, PCR 10 belongs to the kernel's IMA log.
        resources.code_measurement = measure_server_code()
        quoter.pcr_extend(CODE_MEASUREMENT_PCR, resources.code_measurement)
        return quoter
    resources.owns_quoter = True
    return TpmQuoter(config.tpm.removeprefix("tcti:"), aik=config.aik)


def measure_server_code() -> bytes:
    """SHA-256 over this package's source files (path and content digest, sorted by path).

    The owned swtpm starts with every PCR at zero; extending PCR 10 with this measurement
    makes a quote change when the endpoint's code changes, which a client's PCR baseline can
    then detect. It is a self-measurement: as trustworthy as the process that made it.
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        relative = source.relative_to(package).as_posix().encode("utf-8")
        digest.update(relative + b"\0" + hashlib.sha256(source.read_bytes()).digest())
    return digest.digest()


def _certificate_hosts(bind_host: str) -> tuple[str, ...]:
    """Loopback names, plus the bind address when it is a specific one (not a wildcard)."""
    if bind_host in (*DEFAULT_HOSTS, "0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
        return DEFAULT_HOSTS
    return (*DEFAULT_HOSTS, bind_host)


def build_resources(config: ServerConfig) -> _Resources:
    """Keys, TLS files, TPM, backend and policies for one endpoint (raises on bad config)."""
    if config.server_key is not None:
        server_key = config.server_key
    elif config.key_file is not None:
        server_key = ServerKey.load_or_create(config.key_file, config.key_password)
    else:
        server_key = ServerKey.generate()
    backend: Backend = (
        make_backend(config.backend, api_key=config.backend_api_key, timeout=config.backend_timeout)
        if isinstance(config.backend, str)
        else config.backend
    )
    recorder = None
    if config.record_keys:
        recorder = KeyRecorder(config.record_keys_path)
    state = EndpointState(
        server_key=server_key,
        backend=backend,
        api_keys=ApiKeyPolicy(tuple(config.api_keys)),
        tier_policy=config.tier_policy,
        max_body_bytes=config.max_body_bytes,
        tpm_scheme=config.tpm_scheme,
        tpm_hash=config.tpm_hash,
        ek_chain_pem=_read_ek_chain(config.ek_chain),
        recorder=recorder,
        rate_limiter=(
            RateLimiter(config.rate_limit_per_minute) if config.rate_limit_per_minute else None
        ),
        limits=config.limits,
    )
    resources = _Resources(state=state)
    try:
        if config.tls_self_signed:
            hosts = _certificate_hosts(config.host)
            if config.tls_dir is not None:
                files = load_or_create_tls_dir(config.tls_dir, hosts)
            else:
                # mkdtemp makes it 0700; removed on every exit path the process reaches.
                tempdir = tempfile.TemporaryDirectory(prefix="nomyo-tls-")
                resources.tempdirs.append(tempdir)
                if GUARDS_SUPPORTED:
                    resources.guards.append(start_guard(remove=[tempdir.name]))
                files = make_self_signed(Path(tempdir.name), hosts)
                # From here the throwaway key exists only in this process's memory, so not
                # even a SIGKILL leaves it on disk.
                resources.ssl_context = _load_ssl_context(files.cert_path, files.key_path)
                files.key_path.unlink()
            resources.ssl_certfile, resources.ssl_keyfile = files.cert_path, files.key_path
            resources.ca_path = files.ca_path
        elif config.tls_cert is not None:
            resources.ssl_certfile, resources.ssl_keyfile = config.tls_cert, config.tls_key
        state.quoter = _open_tpm(config, resources)
    except BaseException:
        resources.close()
        raise
    return resources


class PortUnavailableError(OSError):
    """The endpoint's address cannot be bound (in use, or a privileged port)."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP; without it Nagle holds the response body behind the headers for a delayed ACK
    # (~40 ms on every keep-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
        # Windows: SO_REUSEADDR there would let us share a port another server listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # A deep backlog: hundreds of clients may connect at once.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailableError(
                exc.errno,
                f"port {port} on {shown} is already in use (another endpoint?): choose another "
                "with --port, or --port 0 to let the system pick a free one",
            ) from None
        if exc.errno == errno.EACCES:
            raise PortUnavailableError(
                exc.errno,
                f"no permission to bind port {port} on {shown} (ports below 1024 need "
                "privileges): use a port above 1023, or --port 0 for a free one",
            ) from None
        raise
    sock.set_inheritable(True)
    return sock


def _load_ssl_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+, no client certificates) for this certificate and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def _server_ssl_context(resources: _Resources) -> ssl.SSLContext | None:
    if resources.ssl_context is not None:
        return resources.ssl_context
    if resources.ssl_certfile is None or resources.ssl_keyfile is None:
        return None  # plain HTTP
    return _load_ssl_context(resources.ssl_certfile, resources.ssl_keyfile)


class _BoundedServer(uvicorn.Server):
    """uvicorn's server with our TLS context and a TLS handshake deadline (uvicorn leaves
    asyncio's 60 s). Only the path this module uses is replaced: serving sockets we bound.
    """

    def __init__(
        self, config: uvicorn.Config, limits: ConnectionLimits, resources: _Resources
    ) -> None:
        super().__init__(config)
        self.limits = limits
        self.resources = resources

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            raise RuntimeError("the endpoint serves sockets it bound itself")
        await self.lifespan.startup()
        config = self.config
        loop = asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        context = _server_ssl_context(self.resources)
        handshake = self.limits.tls_handshake_timeout if context is not None else None
        self.servers = [
            await loop.create_server(
                create_protocol,
                sock=sock,
                ssl=context,
                backlog=config.backlog,
                ssl_handshake_timeout=handshake,
            )
            for sock in sockets
        ]
        self.started = True


def _uvicorn_server(resources: _Resources) -> uvicorn.Server:
    limits = resources.state.limits
    config = uvicorn.Config(
        create_app(resources.state),
        http=guarded_protocol(limits),
        log_config=None,  # leave the host application's logging alone
        access_log=False,  # our handler logs one line per request, without secrets
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return _BoundedServer(config, limits, resources)


async def _serve(server: uvicorn.Server, sock: socket.socket, backend: Backend) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        await backend.aclose()


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class RunningServer:
    """An endpoint serving in a background thread. Stop it with :meth:`stop` or ``with``.

    ``base_url`` is what clients use; ``ca_path`` is the CA to trust for a self-signed
    endpoint (None for HTTP or a given certificate); ``recorded_keys`` lists the recorded AES
    keys when key recording is on (test-only).
    """

    def __init__(self, resources: _Resources, host: str, port: int, tls: bool) -> None:
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
        server = _uvicorn_server(self._resources)
        self._server = server

        def run() -> None:
            try:
                asyncio.run(_serve(server, sock, self._resources.state.backend))
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
    sock = _bind(config.host, config.port)
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
            _thread.interrupt_main()
            return
        raise SystemExit(0)

    for signum in wanted:
        signal.signal(signum, unwind)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve(config: ServerConfig, on_ready: Callable[[RunningServer], None] | None = None) -> None:
    """Serve in the foreground until SIGINT (KeyboardInterrupt), SIGTERM, SIGHUP or SIGQUIT
    (``SystemExit(0)``); every path out releases what the endpoint created."""
    with termination_unwinds():
        # Bound first: a busy port fails at once, before key generation and swtpm.
        sock = _bind(config.host, config.port)
        with contextlib.closing(sock):
            resources = build_resources(config)
            try:
                port = sock.getsockname()[1]
                info = RunningServer(resources, config.host, port, tls=config.uses_tls)
                if on_ready is not None:
                    on_ready(info)
                server = _uvicorn_server(resources)
                asyncio.run(_serve(server, sock, resources.state.backend))
            finally:
                resources.close()
