"""Everything that configures one endpoint, in one immutable-ish dataclass."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nomyo_native.server.limits import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INFLIGHT_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    ConnectionLimits,
)
from nomyo_native.server.policy import ApiKeyPolicy, TierPolicy
from nomyo_native.server.tpm import AIK_MODES, supported_quote_schemes

if TYPE_CHECKING:
    from nomyo_native.server.backends import Backend
    from nomyo_native.server.crypto import ServerKey
    from nomyo_native.server.tpm import TpmQuoter

# The largest request plaintext is 10 MiB; its base64 is ~13.4 MiB, plus the envelope framing.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_PORT = 12434


@dataclass
class ServerConfig:
    """Options of :func:`nomyo_native.server.start_server` and ``nomyo-native serve``.

    ``tpm``: ``"none"``, ``"swtpm"`` (start and own a swtpm process) or ``"tcti:<tcti>"``
    (e.g. ``tcti:device:/dev/tpmrm0``). ``quoter`` injects an already open TPM (tests share
    one swtpm); it is then not closed by the server. ``tpm_state`` keeps the owned swtpm's
    state (its persistent keys) in that directory across restarts; it is never deleted.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    backend: str | Backend = "echo"
    backend_api_key: str | None = None
    backend_timeout: float = 300.0
    api_keys: tuple[str, ...] = ()
    tier_policy: TierPolicy = field(default_factory=TierPolicy)
    server_key: ServerKey | None = None
    key_file: Path | None = None
    key_password: bytes | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    tls_dir: Path | None = None
    tpm: str = "none"
    tpm_state: Path | None = None
    # The attestation key: "persistent" (one per TPM, pinnable; quotes also bind the server
    # key) or "per-request" (a fresh AIK per quote, the published protocol).
    aik: str = "persistent"
    # PEM file of the EK certificate's issuers (intermediates, up to the manufacturer's root):
    # served with the TPM's EK certificate for enrollment (attest enroll --ek-ca).
    ek_chain: Path | None = None
    quoter: TpmQuoter | None = None
    tpm_scheme: str = "ecdsa"
    tpm_hash: str = "sha256"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # What slow or idle clients may hold (see nomyo_native.server.limits).
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_inflight_body_bytes: int | None = None  # default: 4 bodies of max_body_bytes
    rate_limit_per_minute: int | None = None
    record_keys: bool = False
    record_keys_path: Path | None = None
    # Serve a non-loopback address without API keys: anyone who reaches it may use the
    # endpoint (and the operator's --backend-api-key). Refused unless asked for explicitly.
    allow_open: bool = False

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if self.tls_self_signed and self.tls_cert is not None:
            raise ValueError("choose either --tls-self-signed or --tls-cert/--tls-key")
        if not (self.tpm in ("none", "swtpm") or self.tpm.startswith("tcti:")):
            raise ValueError("tpm must be 'none', 'swtpm' or 'tcti:<tcti>'")
        if self.tpm.startswith("tcti:") and len(self.tpm) == len("tcti:"):
            raise ValueError("tpm 'tcti:' needs a TCTI, e.g. tcti:device:/dev/tpmrm0")
        if self.tpm_state is not None and self.tpm != "swtpm":
            raise ValueError(
                "--tpm-state keeps the state of an owned swtpm: use it with --tpm swtpm"
            )
        if self.aik not in AIK_MODES:
            raise ValueError(f"aik must be one of {', '.join(AIK_MODES)}, not {self.aik!r}")
        if (self.tpm_scheme, self.tpm_hash) not in supported_quote_schemes():
            raise ValueError(
                f"unsupported TPM quote scheme {self.tpm_scheme}/{self.tpm_hash}; "
                f"supported: {', '.join(f'{s}/{h}' for s, h in supported_quote_schemes())}"
            )
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.max_inflight_body_bytes is None:
            self.max_inflight_body_bytes = max(
                4 * self.max_body_bytes, DEFAULT_MAX_INFLIGHT_BODY_BYTES
            )
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError("max_inflight_body_bytes must be at least max_body_bytes")
        _ = self.limits  # built now, so that a bad limit is a configuration error
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            raise ValueError("rate limit must be at least 1 request per minute")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535 (0 picks a free port)")
        if self.record_keys_path is not None:
            self.record_keys = True
        self.api_keys = tuple(self.api_keys)
        ApiKeyPolicy(self.api_keys)  # a malformed key is a configuration error, found now
        if not self.api_keys and not self.allow_open and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to serve {self.host} (not a loopback address) without API keys: "
                "anyone on the network could use the endpoint"
                + (" and your backend API key" if self.backend_api_key else "")
                + ". Give keys (--api-key-file, NOMYO_SERVER_API_KEYS) or pass --allow-open"
            )

    @property
    def is_open_to_network(self) -> bool:
        """Reachable beyond this machine with no API key required (only with allow_open)."""
        return not self.api_keys and not is_loopback_host(self.host)

    @property
    def limits(self) -> ConnectionLimits:
        assert self.max_inflight_body_bytes is not None
        return ConnectionLimits(
            tls_handshake_timeout=self.tls_handshake_timeout,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            request_timeout=self.request_timeout,
            max_connections=self.max_connections,
            max_inflight_body_bytes=self.max_inflight_body_bytes,
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; wildcards and other names are not."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 (older Pythons call it not loopback)
    return address.is_loopback


def key_password_from_env() -> bytes | None:
    """The server key file password from ``NOMYO_SERVER_KEY_PASSWORD`` (never a CLI flag)."""
    value = os.environ.get("NOMYO_SERVER_KEY_PASSWORD")
    return value.encode("utf-8") if value else None
