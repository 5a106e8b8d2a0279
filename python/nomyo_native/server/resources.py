"""What one endpoint owns, built from a :class:`ServerConfig`: the server key, the backend,
the policies, the TLS files and the TPM (an owned swtpm with the endpoint's code measured into
PCR 10, or a given TCTI); released together, in reverse order."""

from __future__ import annotations

import hashlib
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nomyo_native.server.app import EndpointState
from nomyo_native.server.backends import Backend, make_backend
from nomyo_native.server.config import ServerConfig
from nomyo_native.server.crypto import ServerKey
from nomyo_native.server.exit_guard import GUARDS_SUPPORTED, Guard, start_guard
from nomyo_native.server.listener import load_ssl_context
from nomyo_native.server.policy import ApiKeyPolicy, RateLimiter
from nomyo_native.server.recording import KeyRecorder
from nomyo_native.server.swtpm import SwtpmProcess
from nomyo_native.server.tls import DEFAULT_HOSTS, load_or_create_tls_dir, make_self_signed
from nomyo_native.server.tpm import TpmQuoter

CODE_MEASUREMENT_PCR = 10


@dataclass
class EndpointResources:
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


def _open_tpm(config: ServerConfig, resources: EndpointResources) -> TpmQuoter | None:
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


def build_resources(config: ServerConfig) -> EndpointResources:
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
    resources = EndpointResources(state=state)
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
                resources.ssl_context = load_ssl_context(files.cert_path, files.key_path)
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
