"""What ``nomyo-native serve`` prints once the endpoint listens: where it is, what to trust,
what it enforces, and loud warnings for the settings that expose it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nomyo_native.server.config import ServerConfig
    from nomyo_native.server.runner import RunningServer

# Continuation lines line up under the values above them.
_INDENT = " " * 19


def describe(endpoint: RunningServer, config: ServerConfig) -> list[str]:
    """The start-up banner, one line per entry."""
    return [
        "nomyo-native secure endpoint",
        f"  listening        {endpoint.base_url}",
        *_trust_lines(endpoint, config),
        *_tpm_lines(endpoint, config),
        *_policy_lines(config),
        *_warning_lines(config),
    ]


def _trust_lines(endpoint: RunningServer, config: ServerConfig) -> list[str]:
    """The server key and the TLS CA clients pin, and whether they survive a restart."""
    from nomyo_native.server.config import is_loopback_host

    lines = [f"  server key       {endpoint.server_key_fingerprint}"]
    if config.key_file is None and config.server_key is None:
        lines.append(
            f"{_INDENT}new at every start: pins on it break when the endpoint "
            "restarts (keep it with --key-file)"
        )
    if endpoint.ca_path is not None:
        lines.append(f"  TLS CA (trust)   {endpoint.ca_path}")
        if config.tls_dir is None:
            lines.append(
                f"{_INDENT}new at every start and removed on exit: clients must trust "
                "it again after a restart (keep it with --tls-dir)"
            )
    elif not config.uses_tls:
        lines.append("  TLS              off: clients need allow_http=True")
        if not is_loopback_host(config.host):
            lines.append(
                "  !!! plain HTTP on a non-loopback address: anyone on the path can swap the "
                "server key. Use --tls-self-signed or --tls-cert/--tls-key !!!"
            )
    return lines


def _tpm_lines(endpoint: RunningServer, config: ServerConfig) -> list[str]:
    """What the TPM quotes, the attestation key clients pin, and where the TPM's state is."""
    tpm = "off (tier 'maximum' is refused with 503)"
    if endpoint.tpm_available:
        aik = (
            "fresh AIK per request"
            if endpoint.aik_fingerprint is None
            else "persistent AIK, quotes bind the server key"
        )
        tpm = f"{config.tpm} ({config.tpm_scheme} quotes of sha256:0,7,10, {aik})"
        if endpoint.code_measurement is not None:
            measured = endpoint.code_measurement.hex()[:16]
            tpm += f"\n  PCR 10           extended with the endpoint code's SHA-256 {measured}..."
    lines = [f"  TPM attestation  {tpm}"]
    if endpoint.aik_fingerprint is not None:
        lines.append(f"  AIK (trust)      {endpoint.aik_fingerprint}")
        if endpoint.tpm_state is None and config.tpm == "swtpm":
            lines.append(
                f"{_INDENT}new at every start: pins on it break when the endpoint "
                "restarts (keep the TPM with --tpm-state)"
            )
    if endpoint.tpm_state is not None:
        lines.append(f"  TPM state        {endpoint.tpm_state} (kept across restarts)")
    return lines


def _policy_lines(config: ServerConfig) -> list[str]:
    """The backend, who may call, and the limits every client is held to."""
    backend = config.backend if isinstance(config.backend, str) else type(config.backend).__name__
    limits = ", ".join(
        f"{tier}: {', '.join(sorted(models))}"
        for tier, models in sorted(config.tier_policy.allowed_models.items())
    )
    rate = (
        f"{config.rate_limit_per_minute}/minute per caller"
        if config.rate_limit_per_minute
        else "none"
    )
    return [
        f"  backend          {backend}",
        f"  API keys         {len(config.api_keys) or 'none (open endpoint)'}",
        f"  rate limit       {rate}",
        f"  tier policy      {limits or 'every model in every tier'}",
        f"  client limits    {_describe_limits(config)}",
    ]


def _warning_lines(config: ServerConfig) -> list[str]:
    """Settings that can fail clients or expose the endpoint, in capitals."""
    lines = []
    open_files = _open_file_limit()
    if open_files is not None and config.max_connections + 64 > open_files:
        lines.append(
            f"  !!! --max-connections {config.max_connections} is close to or above the "
            f"open-file limit {open_files} (ulimit -n): new connections may fail instead of "
            "getting 503 !!!"
        )
    if config.is_open_to_network:
        lines.append(
            f"  !!! OPEN ENDPOINT (--allow-open): anyone who reaches {config.host} may use it"
            + (", on your backend API key" if config.backend_api_key else "")
            + " !!!"
        )
    if config.record_keys:
        lines.append("  !!! KEY RECORDING IS ON (test only): traffic keys are written to disk !!!")
    return lines


def _describe_limits(config: ServerConfig) -> str:
    return (
        f"TLS handshake {config.tls_handshake_timeout:g} s, headers {config.header_timeout:g} s, "
        f"body pauses {config.body_timeout:g} s, body {config.request_timeout:g} s (408); "
        f"{config.max_connections} connections, "
        f"{config.limits.max_inflight_body_bytes // (1024 * 1024)} MiB of bodies in transit (503)"
    )


def _open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft
