"""The ``nomyo-native`` command.

Each subcommand is a pair: ``_add_<name>_parser(subparsers)`` declares its options and
``_cmd_<name>(args) -> int`` runs it and returns the exit status. ``main`` wires the pairs
listed in ``_SUBCOMMANDS``; add a pair there to add a subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nomyo_native._constants import (
    ATTESTATION_POLICIES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_ROUTER_URL,
    DEFAULT_TIMEOUT,
    KEY_PASSWORD_ENV,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SECURITY_TIERS,
)
from nomyo_native._hints import cli_spelling
from nomyo_native._urls import redact_url

_SERVE_EPILOG = textwrap.dedent(
    """\
    examples:
      # HTTPS with a throwaway CA, real TPM quotes from a private swtpm, echo answers:
      nomyo-native serve --tls-self-signed --tpm swtpm
      #   then point a client at it with the printed CA file and key fingerprint:
      #   SecureChatCompletion(base_url="https://127.0.0.1:12434",
      #                        ca_bundle="<CA path>", server_key_fingerprint="sha256:...")

      # Put a local model behind it (Ollama, llama.cpp server, vLLM...):
      nomyo-native serve --tls-self-signed --backend http://127.0.0.1:11434

      # Plain HTTP for quick local tests (clients need allow_http=True):
      nomyo-native serve

      # Require API keys and restrict the 'maximum' tier to one model:
      NOMYO_SERVER_API_KEYS=key-one,key-two nomyo-native serve --tls-self-signed \\
          --tpm swtpm --allow-model maximum=llama3.1:8b

    secrets (command-line values are visible to every local user in `ps`; prefer these):
      NOMYO_SERVER_API_KEYS      comma-separated API keys (added to --api-key/--api-key-file)
      --api-key-file FILE        API keys, one per line ('#' comments)
      NOMYO_SERVER_KEY_PASSWORD  password of an encrypted --key-file
      NOMYO_BACKEND_API_KEY      bearer key sent to --backend (when no --backend-api-key[-file])
      --backend-api-key-file FILE  that bearer key, read from FILE

    identity: every start makes a new server key and (with --tls-self-signed) a new CA, so
    clients' pins and trust break on restart, unless --key-file and --tls-dir keep them
    (and --tpm-state keeps the swtpm's keys).
    """
)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


# ---- serve ---------------------------------------------------------------------------------

# Top-level modules of the 'server' extra (pyproject.toml): missing one means the extra is.
# Unix mode bits say who may read a file; on Windows st_mode says 0o666 for any writable file
# and the core checks the file's ACL when it loads a key (rust/src/keys/windows.rs).
MODE_BITS_MEAN_ACCESS = os.name == "posix"

_SERVER_EXTRA_MODULES = frozenset({"starlette", "uvicorn", "cryptography", "h11", "anyio"})
SERVER_EXTRA_HINT = "pip install 'nomyo-native[server]'"


def _server_extra_missing(exc: ImportError) -> str | None:
    """The missing module an ImportError names, when it is not one of this package's own."""
    missing = (exc.name or "").partition(".")[0]
    return missing if missing and missing != "nomyo_native" else None


def _needs_server_extra(
    command: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` once the endpoint and everything it imports can be imported; a module
    that cannot (one of the extra's, or one they depend on, such as click or h11) ends it with
    one line naming the extra to install (exit status 1), not a traceback."""

    def explain(args: argparse.Namespace, missing: str) -> int:
        print(
            f"nomyo-native {args.command}: the local endpoint needs the 'server' extra "
            f"({missing} is not installed): {SERVER_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 1

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            # The endpoint's whole import graph, before anything starts: a missing dependency
            # of a dependency is as fatal as a missing extra, and has the same cure.
            importlib.import_module("nomyo_native.server.runner")
            importlib.import_module("nomyo_native.server.enrollment")
        except ImportError as exc:
            missing = _server_extra_missing(exc)
            if missing is None:
                raise
            return explain(args, missing)
        try:
            return command(args)
        except ImportError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing not in _SERVER_EXTRA_MODULES:
                raise
            return explain(args, missing)

    return run


def _add_serve_parser(subparsers: Any) -> None:
    # Plain constants (no server dependency): --help works without the server extra.
    from nomyo_native.server.limits import (
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_HEADER_TIMEOUT,
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_REQUEST_TIMEOUT,
        DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    )

    parser = subparsers.add_parser(
        "serve",
        help="run a local secure endpoint (protocol peer for nomyo clients)",
        description=(
            "Run a local NOMYO secure-completion endpoint: GET /pki/public_key and "
            "POST /v1/chat/secure_completion. Requests are decrypted here, answered by the "
            "backend, and encrypted back to the client's key. The server key's fingerprint is "
            "printed at start: give it to clients as server_key_fingerprint."
        ),
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    net.add_argument("--port", type=int, default=12434, help="port; 0 picks a free one")
    net.add_argument(
        "--allow-open",
        action="store_true",
        help="serve a non-loopback --host without API keys (refused otherwise): anyone who "
        "reaches the address may use the endpoint and its backend",
    )
    net.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="largest request body accepted (default 16 MiB: a 10 MiB plaintext, encrypted)",
    )
    lim = parser.add_argument_group(
        "limits (what slow or idle clients may hold; 408/503 beyond them)"
    )
    lim.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help=f"seconds for a request's headers to arrive (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    lim.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="S",
        help="longest pause within a request body, and while a client takes nothing of its "
        f"response (default {DEFAULT_BODY_TIMEOUT:g})",
    )
    lim.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="S",
        help="seconds for a whole request body to arrive after its headers "
        f"(default {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    lim.add_argument(
        "--tls-handshake-timeout",
        type=_positive_float,
        default=DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        metavar="S",
        help=f"seconds for a TLS handshake (default {DEFAULT_TLS_HANDSHAKE_TIMEOUT:g})",
    )
    lim.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections held at once; a newcomer beyond them displaces the one waiting "
        "longest for its client, or gets 503 when all are being answered "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    lim.add_argument(
        "--max-inflight-body-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help="request-body bytes buffered at once across all requests; more get 503 "
        "(default: 4 x --max-body-bytes, at least 64 MiB)",
    )
    tls = parser.add_argument_group("TLS (without any, the endpoint speaks plain HTTP)")
    tls.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) of the server")
    tls.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    tls.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="make a throwaway CA and a certificate for localhost/127.0.0.1; prints the CA path",
    )
    tls.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="keep --tls-self-signed's CA, certificate and key in DIR (0700) so a restarted "
        "endpoint keeps its certificate: reused when present (must be yours, mode 0600, not "
        "symlinks), made when absent (default: a temporary directory removed on exit)",
    )
    sec = parser.add_argument_group("keys, access and attestation")
    sec.add_argument(
        "--key-file",
        type=Path,
        help="server RSA key (PKCS#8 PEM, mode 0600); created (4096 bits) if missing. "
        "Default: a fresh key for every start",
    )
    sec.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this bearer API key (repeatable; visible in ps: prefer --api-key-file or "
        "NOMYO_SERVER_API_KEYS); without any keys the endpoint is open",
    )
    sec.add_argument(
        "--api-key-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="accept the API keys in FILE, one per line (repeatable)",
    )
    sec.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="TIER=MODEL[,MODEL]",
        help="models a security tier allows (repeatable); tiers not named allow every model",
    )
    sec.add_argument(
        "--rate-limit",
        type=int,
        metavar="N",
        help="at most N requests a minute per API key (or client address without keys); "
        "more get 429 with Retry-After (default: unlimited)",
    )
    sec.add_argument(
        "--default-tier",
        default="standard",
        choices=SECURITY_TIERS,
        help="tier for requests without X-Security-Tier (default standard)",
    )
    sec.add_argument(
        "--tpm",
        default="none",
        metavar="{none,swtpm,tcti:<TCTI>}",
        help="TPM for quotes in every response: 'swtpm' starts a private software TPM, "
        "'tcti:device:/dev/tpmrm0' uses a real one. Tier 'maximum' needs a TPM (default none)",
    )
    sec.add_argument(
        "--tpm-state",
        type=Path,
        metavar="DIR",
        help="with --tpm swtpm: keep the TPM's state (its persistent keys) in DIR across "
        "restarts; created 0700, never deleted (default: a temporary directory removed on exit)",
    )
    sec.add_argument(
        "--ek-chain",
        type=Path,
        metavar="PEM",
        help="PEM file of the certificates that issued the TPM's EK certificate (intermediates "
        "up to the manufacturer's root), served with it for 'attest enroll --ek-ca'",
    )
    sec.add_argument(
        "--tpm-scheme",
        default="ecdsa",
        choices=("ecdsa", "rsassa", "rsapss"),
        help="signature scheme of the attestation key (default ecdsa)",
    )
    sec.add_argument(
        "--aik",
        default="persistent",
        choices=("persistent", "per-request"),
        help="attestation key: 'persistent' (default) is one key per TPM, kept with the TPM's "
        "state (--tpm-state), whose fingerprint is printed at start for clients to pin "
        "(trusted_aik=); its quotes also bind the server key, so a relayed quote fails. "
        "'per-request' makes a fresh AIK for every quote (the published protocol): such "
        "quotes can only ever be bound, never hardware-rooted",
    )
    back = parser.add_argument_group("backend")
    back.add_argument(
        "--backend",
        default="echo",
        metavar="{echo,URL}",
        help="'echo' answers with the last user message (no model needed); a URL forwards to "
        "an OpenAI-compatible /v1/chat/completions (default echo)",
    )
    back.add_argument(
        "--backend-api-key",
        metavar="KEY",
        help="bearer key for --backend (visible in ps: prefer --backend-api-key-file or "
        "NOMYO_BACKEND_API_KEY)",
    )
    back.add_argument(
        "--backend-api-key-file", type=Path, metavar="FILE", help="read --backend's key from FILE"
    )
    back.add_argument(
        "--backend-timeout", type=_positive_float, default=300.0, help="seconds (default 300)"
    )
    dbg = parser.add_argument_group("diagnostics")
    dbg.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    dbg.add_argument(
        "--record-keys-insecure",
        type=Path,
        metavar="FILE",
        help="TEST ONLY: append every request's and response's AES key to FILE. Anyone with "
        "the file reads the traffic; never use it with real data",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`ServerConfig` that ``serve`` options describe (raises ValueError)."""
    from nomyo_native.server.config import ServerConfig, key_password_from_env
    from nomyo_native.server.policy import (
        TierPolicy,
        api_keys_from_env,
        api_keys_from_file,
        read_secret_text,
    )

    options: dict[str, Any] = {}
    if args.max_body_bytes is not None:
        options["max_body_bytes"] = args.max_body_bytes
    if args.backend_api_key and args.backend_api_key_file:
        raise ValueError("give --backend-api-key or --backend-api-key-file, not both")
    backend_api_key = args.backend_api_key
    if args.backend_api_key_file is not None:
        backend_api_key = read_secret_text(args.backend_api_key_file, "backend key file").strip()
        if not backend_api_key:
            raise ValueError(f"backend key file {args.backend_api_key_file} is empty")
    file_keys = [key for path in args.api_key_file for key in api_keys_from_file(path)]
    return ServerConfig(
        host=args.host,
        port=args.port,
        backend=args.backend,
        backend_api_key=backend_api_key or os.environ.get("NOMYO_BACKEND_API_KEY"),
        backend_timeout=args.backend_timeout,
        api_keys=(*args.api_key, *file_keys, *api_keys_from_env()),
        tier_policy=TierPolicy.from_specs(args.allow_model, default_tier=args.default_tier),
        key_file=args.key_file,
        key_password=key_password_from_env(),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_self_signed=args.tls_self_signed,
        tls_dir=args.tls_dir,
        tpm=args.tpm,
        tpm_state=args.tpm_state,
        ek_chain=args.ek_chain,
        tpm_scheme=args.tpm_scheme,
        aik=args.aik,
        record_keys_path=args.record_keys_insecure,
        rate_limit_per_minute=args.rate_limit,
        allow_open=args.allow_open,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        request_timeout=args.request_timeout,
        tls_handshake_timeout=args.tls_handshake_timeout,
        max_connections=args.max_connections,
        max_inflight_body_bytes=args.max_inflight_body_bytes,
        **options,
    )


def _describe_limits(config: Any) -> str:
    return (
        f"TLS handshake {config.tls_handshake_timeout:g} s, headers {config.header_timeout:g} s, "
        f"body pauses {config.body_timeout:g} s, body {config.request_timeout:g} s (408); "
        f"{config.max_connections} connections, "
        f"{config.max_inflight_body_bytes // (1024 * 1024)} MiB of bodies in transit (503)"
    )


def _open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _describe(endpoint: Any, config: Any) -> list[str]:
    from nomyo_native.server.config import is_loopback_host

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
    lines = [
        "nomyo-native secure endpoint",
        f"  listening        {endpoint.base_url}",
        f"  server key       {endpoint.server_key_fingerprint}",
    ]
    if config.key_file is None and config.server_key is None:
        lines.append(
            "                   new at every start: pins on it break when the endpoint "
            "restarts (keep it with --key-file)"
        )
    if endpoint.ca_path is not None:
        lines.append(f"  TLS CA (trust)   {endpoint.ca_path}")
        if config.tls_dir is None:
            lines.append(
                "                   new at every start and removed on exit: clients must trust "
                "it again after a restart (keep it with --tls-dir)"
            )
    elif not config.uses_tls:
        lines.append("  TLS              off: clients need allow_http=True")
        if not is_loopback_host(config.host):
            lines.append(
                "  !!! plain HTTP on a non-loopback address: anyone on the path can swap the "
                "server key. Use --tls-self-signed or --tls-cert/--tls-key !!!"
            )
    lines.append(f"  TPM attestation  {tpm}")
    if endpoint.aik_fingerprint is not None:
        lines.append(f"  AIK (trust)      {endpoint.aik_fingerprint}")
        if endpoint.tpm_state is None and config.tpm == "swtpm":
            lines.append(
                "                   new at every start: pins on it break when the endpoint "
                "restarts (keep the TPM with --tpm-state)"
            )
    if endpoint.tpm_state is not None:
        lines.append(f"  TPM state        {endpoint.tpm_state} (kept across restarts)")
    lines += [
        f"  backend          {backend}",
        f"  API keys         {len(config.api_keys) or 'none (open endpoint)'}",
        f"  rate limit       {rate}",
        f"  tier policy      {limits or 'every model in every tier'}",
        f"  client limits    {_describe_limits(config)}",
    ]
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


@_needs_server_extra
def _cmd_serve(args: argparse.Namespace) -> int:
    from nomyo_native.server import serve
    from nomyo_native.server.process_info import disable_core_dumps

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"nomyo-native serve: {exc}", file=sys.stderr)
        return 2
    disable_core_dumps()

    def ready(endpoint: Any) -> None:
        print("\n".join(_describe(endpoint, config)), flush=True)

    try:
        serve(config, on_ready=ready)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        # Start-up failures (port in use, swtpm missing, bad key file) end with one clear line.
        print(f"nomyo-native serve: {exc}", file=sys.stderr)
        return 1
    return 0


# ---- demo ----------------------------------------------------------------------------------


def _add_demo_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start a local HTTPS endpoint with TPM attestation and send one encrypted chat",
        description=(
            "Start the secure endpoint in this process on a free loopback port, over HTTPS "
            "with a throwaway CA and (when swtpm is installed) real TPM quotes; send one "
            "encrypted chat completion with the nomyo-native client; verify the attestation; "
            "print the reply, the server key fingerprint, the verdict and the timings."
        ),
    )
    parser.add_argument("--message", default="Hello from nomyo-native!", help="text to send")
    parser.add_argument(
        "--no-tpm", action="store_true", help="skip swtpm even when it is installed"
    )


def _tpm_for_demo(no_tpm: bool) -> tuple[str, str]:
    if no_tpm:
        return "none", "TPM: off (--no-tpm)"
    if shutil.which("swtpm") is None:
        return "none", (
            "TPM: swtpm is not installed, so responses carry no quote "
            "(apt-get install swtpm swtpm-tools to see attestation)"
        )
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        return "none", "TPM: tpm2-pytss is missing (pip install 'nomyo-native[tpm]')"
    return "swtpm", (
        "TPM: private swtpm with a persistent attestation key; the demo started that TPM "
        "itself, so it pins the key (trusted_aik) and its quotes can be verified"
    )


async def _demo_chat(
    endpoint: Any, message: str, tier: str
) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    import nomyo_native

    client = nomyo_native.SecureChatCompletion(
        base_url=endpoint.base_url,
        ca_bundle=str(endpoint.ca_path),
        server_key_fingerprint=endpoint.server_key_fingerprint,
        trusted_aik=endpoint.aik_fingerprint,
    )
    messages = [{"role": "user", "content": message}]
    timings = []
    async with client:
        started = time.perf_counter()
        response = await client.create(model="demo-echo", messages=messages, security_tier=tier)
        timings.append(
            ("first request (client keygen, key fetch+pin)", time.perf_counter() - started)
        )
        started = time.perf_counter()
        await client.create(model="demo-echo", messages=messages, security_tier=tier)
        timings.append(
            ("second request (warm: seal, TLS, quote, open)", time.perf_counter() - started)
        )
    return response, timings


def _attestation_verdict(metadata: dict[str, Any], endpoint: Any) -> str:
    block = metadata.get("tpm_attestation") or {}
    if not block.get("is_available"):
        return "not available (the endpoint has no TPM)"
    try:
        from nomyo_native.attestation import verify_attestation
    except ImportError as exc:
        return f"not checked: attestation verification unavailable ({exc})"
    result = verify_attestation(
        block,
        metadata["payload_id"],
        trusted_aik=endpoint.aik_fingerprint,
        server_key_fingerprint=endpoint.server_key_fingerprint,
    )
    return f"{verdict_label(result)} - {result.summary}"


def verdict_label(result: Any) -> str:
    """The verdict in the words of issue 11: VERIFIED (bound and hardware-rooted), BOUND (not
    hardware-rooted: what any server, TPM or not, can produce), NOT BOUND, or NONE (no TPM)."""
    if result.verified:
        return "VERIFIED (bound, hardware-rooted)"
    if result.bound:
        return "BOUND (not hardware-rooted)"
    return "NOT BOUND" if result.available or result.failed_checks else "NONE (no TPM)"


@_needs_server_extra
def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        return _run_demo(args)
    except KeyboardInterrupt:  # Ctrl-C: everything was released on the way out
        print("demo: interrupted", file=sys.stderr)
        return 130


def _run_demo(args: argparse.Namespace) -> int:
    from nomyo_native.server import ServerConfig, start_server
    from nomyo_native.server.runner import termination_unwinds

    timings: list[tuple[str, float]] = []
    tpm, tpm_note = _tpm_for_demo(args.no_tpm)
    print(tpm_note)
    # The endpoint's own temporary TLS directory (not a kept --tls-dir): guarded, so its key is
    # gone on every exit, SIGKILL included; SIGTERM/SIGHUP/SIGQUIT unwind like Ctrl-C.
    with termination_unwinds(as_interrupt=True):
        started = time.perf_counter()
        try:
            endpoint = start_server(ServerConfig(port=0, tls_self_signed=True, tpm=tpm))
        except Exception as exc:
            print(f"demo: the endpoint did not start: {exc}", file=sys.stderr)
            return 1
        timings.append(("start endpoint (RSA-4096 key, TLS, TPM)", time.perf_counter() - started))
        with endpoint:
            print(f"endpoint          {endpoint.base_url}")
            print(f"server key        {endpoint.server_key_fingerprint}")
            if endpoint.aik_fingerprint is not None:
                print(f"AIK (pinned)      {endpoint.aik_fingerprint}")
            print(f"TLS CA            {endpoint.ca_path}")
            tier = "maximum" if endpoint.tpm_available else "high"
            try:
                response, request_timings = asyncio.run(_demo_chat(endpoint, args.message, tier))
            except Exception as exc:
                print(f"demo: the encrypted request failed: {type(exc).__name__}: {exc}")
                return 1
            timings += request_timings
            metadata = response.get("_metadata", {})
            started = time.perf_counter()
            verdict = _attestation_verdict(metadata, endpoint)
            timings.append(("verify attestation", time.perf_counter() - started))
    reply = response["choices"][0]["message"].get("content")
    print(f"security tier     {metadata.get('security_tier')}")
    print(f"payload id        {metadata.get('payload_id')}")
    print(f"reply             {reply}")
    block = metadata.get("tpm_attestation") or {}
    if block.get("is_available"):
        values = block.get("pcr_values", {}).get("sha256", {})
        shown = ", ".join(f"{index}={value[:16]}..." for index, value in values.items())
        print(f"quoted PCRs       {block.get('pcr_banks')}: {shown}")
        print("                  (PCR 10: the endpoint measured its own code into swtpm at start)")
    print(f"attestation       {verdict}")
    print("timings")
    for label, seconds in timings:
        print(f"  {label:<46} {seconds * 1000:9.1f} ms")
    return 0


# ---- attest --------------------------------------------------------------------------------


def _add_attest_parser(subparsers: Any) -> None:
    attest = subparsers.add_parser(
        "attest",
        help="verify TPM attestation saved from a response, or capture a PCR baseline",
        description=(
            "FILE is a saved response (with _metadata), its _metadata, or the tpm_attestation "
            "block itself, as JSON; '-' reads standard input."
        ),
    )
    actions = attest.add_subparsers(dest="attest_command", metavar="{baseline,verify,enroll}")
    actions.required = True

    enroll = actions.add_parser(
        "enroll",
        help="enroll a server's attestation key (credential activation) and pin it",
        description=(
            "Fetch the server's endorsement key and persistent attestation key, challenge it "
            "with TPM2_MakeCredential (made here) and check its TPM2_ActivateCredential answer: "
            "only the TPM holding both keys can answer. Then pin the attestation key in "
            "--pin-file; clients given aik_pin_file= root quotes in it. With --ek-ca the EK's "
            "certificate chain must lead to that CA; without it the EK is trusted on first "
            "use. Exit status 0 "
            "enrolled, 1 refused (failed challenge, changed key), 2 unreachable or bad options."
        ),
    )
    enroll.add_argument("url", metavar="URL", help="the server's base URL")
    enroll.add_argument("--pin-file", required=True, metavar="FILE", help="AIK pin file")
    enroll.add_argument("--ca-bundle", metavar="PATH", help="CA file to trust for the server")
    enroll.add_argument(
        "--ek-ca",
        metavar="CA.pem",
        help="trusted EK CA certificates: the server's EK certificate chain must lead to one "
        "(the TCG EK profile: empty subject, critical SAN and EKU 2.23.133.8.1 are accepted)",
    )

    baseline = actions.add_parser(
        "baseline",
        help="capture known-good PCR values from a response you trust",
        description=(
            "Check that the quote in FILE is bound (signed by the AIK in it, TPM-generated, PCR "
            "digest consistent; and made for --payload-id when given) and write its PCR values "
            "as a baseline JSON file for 'attest verify --baseline' and the client's "
            "pcr_baseline=. The AIK need not be pinned: capture from a response you trust. Exit "
            "status 2 when the quote is not bound or the input is unreadable."
        ),
    )
    baseline.add_argument("file", metavar="FILE", help="saved response/_metadata JSON, or '-'")
    baseline.add_argument(
        "--payload-id", help="also require the quote to be bound to this request id"
    )
    baseline.add_argument(
        "-o", "--output", metavar="OUT", help="write the baseline here (default: stdout)"
    )

    verify = actions.add_parser(
        "verify",
        help="verify the TPM quote in a saved response",
        description=(
            "Run every check of the quote in FILE and print the verdict: VERIFIED (bound and "
            "hardware-rooted: signed by the --trusted-aik key), BOUND (consistent and made for "
            "this request, but by a key nobody vouches for: a server without a TPM can make "
            "such a quote) or NOT BOUND. Exit status: 0 when the quote is bound and, with "
            "--trusted-aik, verified; 1 otherwise; 2 unreadable input or options."
        ),
    )
    verify.add_argument("file", metavar="FILE", help="saved response/_metadata JSON, or '-'")
    verify.add_argument("--payload-id", required=True, help="the X-Payload-ID of that request")
    verify.add_argument("--baseline", metavar="BASELINE", help="PCR baseline JSON file")
    verify.add_argument(
        "--trusted-aik",
        metavar="AIK",
        help="pinned AIK: 'sha256:<hex>' of its marshalled TPMT_PUBLIC, or a PEM file",
    )
    verify.add_argument(
        "--server-key",
        metavar="FP",
        help="fingerprint 'sha256:<hex>' of the server key the request was encrypted to: checks "
        "the extension's binding (quotes by a persistent AIK bind it, so a relayed one fails)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")


def _cmd_attest(args: argparse.Namespace) -> int:
    from nomyo_native import attestation

    if args.attest_command == "enroll":
        return _cmd_attest_enroll(args)
    try:
        block = _read_attestation_block(args.file)
        if args.attest_command == "baseline":
            baseline = attestation.capture_baseline(block, args.payload_id)
            if args.output:
                attestation.save_baseline(baseline, args.output)
                print(f"baseline of {baseline['pcr_banks']} written to {args.output}")
            else:
                print(json.dumps(baseline, indent=2, sort_keys=True))
            return 0
        trusted_aik = _read_trusted_aik(args.trusted_aik)
        result = attestation.verify_attestation(
            block,
            args.payload_id,
            pcr_baseline=args.baseline,
            trusted_aik=trusted_aik,
            server_key_fingerprint=args.server_key,
        )
    except (OSError, ValueError, TypeError) as exc:
        print(f"nomyo-native attest: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for check in result.checks:
            mark = {True: "ok  ", False: "FAIL", None: "-   "}[check.passed]
            print(f"{mark} {check.name:<16} {check.detail}")
        if result.aik_fingerprint:
            print(f"AIK  {result.aik_fingerprint}")
        print(f"verdict: {verdict_label(result)}")
        print(result.summary)
    return 0 if (result.verified if trusted_aik is not None else result.bound) else 1


def _cmd_attest_enroll(args: argparse.Namespace) -> int:
    import ssl

    import httpx

    from nomyo_native.enrollment import enroll
    from nomyo_native.errors import SecurityError

    try:
        verify = ssl.create_default_context(cafile=args.ca_bundle) if args.ca_bundle else True
        done = enroll(args.url, args.pin_file, verify=verify, ek_ca=args.ek_ca)
    except SecurityError as exc:
        print(f"nomyo-native attest enroll: refused: {exc}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, OSError, ValueError) as exc:
        print(f"nomyo-native attest enroll: error: {exc}", file=sys.stderr)
        return 2
    state = "enrolled" if done.newly_pinned else "already enrolled (unchanged)"
    print(f"{done.origin}: {state}")
    print(f"  AIK   {done.aik_fingerprint}  (pinned in {args.pin_file})")
    how = "certificate chain verified" if done.ek_certificate_verified else "trusted on first use"
    print(f"  EK    {done.ek_fingerprint}  ({how})")
    return 0


def _read_attestation_block(source: str) -> Any:
    """The tpm_attestation block of a saved response, its _metadata, or the block itself."""
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("_metadata"), dict):
        data = data["_metadata"]
    if isinstance(data, dict) and "tpm_attestation" in data:
        return data["tpm_attestation"]
    if isinstance(data, dict) and "is_available" in data:
        return data
    raise ValueError(f"{source} holds no tpm_attestation block")


def _read_trusted_aik(value: str | None) -> str | None:
    """A 'sha256:' fingerprint as is; anything else is the path of a PEM file."""
    if value is None or value.startswith("sha256:"):
        return value
    with open(value, encoding="ascii") as handle:
        return handle.read()


# ---- keys ----------------------------------------------------------------------------------


def _add_keys_parser(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="generate a client key directory, or show the fingerprint of one",
        description=(
            "Client key directories hold private_key.pem (PKCS#8, mode 0600) and public_key.pem "
            "(mode 0644), the layout nomyo 0.2.9 uses. The password comes from "
            "NOMYO_KEY_PASSWORD (never from the command line)."
        ),
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="{generate,show}")
    actions.required = True
    generate = actions.add_parser(
        "generate",
        help="generate a key pair into DIR",
        description=(
            "Generate an RSA key pair in locked memory and save it into DIR, encrypted with "
            "NOMYO_KEY_PASSWORD (at least 8 characters). Without that variable, pass "
            "--unencrypted to save the private key in clear (not recommended)."
        ),
    )
    generate.add_argument("dir", metavar="DIR", help="key directory (created 0700 if missing)")
    generate.add_argument("--bits", type=int, choices=(2048, 3072, 4096), default=4096)
    generate.add_argument(
        "--unencrypted", action="store_true", help="allow saving without a password"
    )
    generate.add_argument(
        "--force", action="store_true", help="replace an existing private_key.pem"
    )
    show = actions.add_parser(
        "show",
        help="show the fingerprint, size and file modes of the key pair in DIR",
        description="Exit status: 0 fine, 1 the private key file is group/other accessible.",
    )
    show.add_argument("dir", metavar="DIR", help="key directory")


def _make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents 0700; return the created ones, outermost first."""
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        current = current.parent
    created = []
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        created.append(directory)
    return created


def _remove_if_empty(created: list[Path]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):  # not empty (someone else's files): keep it
            directory.rmdir()


def _new_key_password(unencrypted: bool) -> str | None:
    """The password a command saving a new private key uses: ``NOMYO_KEY_PASSWORD``, or none
    only when the user passed ``--unencrypted`` (one rule for ``keys generate`` and ``chat
    --key-dir``). Raises ValueError otherwise."""
    password = os.environ.get(KEY_PASSWORD_ENV) or None
    if password is None and not unencrypted:
        raise ValueError(
            "a new private key would be saved without a password: set NOMYO_KEY_PASSWORD "
            "(at least 8 characters), or pass --unencrypted"
        )
    return password


def _cmd_keys(args: argparse.Namespace) -> int:
    from nomyo_native import _core

    key_dir = Path(args.dir)
    private_path, public_path = key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE
    try:
        if args.keys_command == "generate":
            password = _new_key_password(args.unencrypted)
            if private_path.exists() and not args.force:
                raise ValueError(f"{private_path} exists (pass --force to replace it)")
            keypair = _core.ClientKeyPair.generate(args.bits)
            created = _make_private_dirs(key_dir)
            try:
                keypair.save(private_path, public_path, password)
            except BaseException:
                # A refused password (or a failed write) leaves no empty directory behind.
                keypair.wipe()
                _remove_if_empty(created)
                raise
            print(f"key pair          {keypair.bits}-bit RSA")
            print(
                f"private key       {private_path} ({'encrypted' if password else 'UNENCRYPTED'})"
            )
            print(f"public key        {public_path}")
            print(f"fingerprint       {keypair.fingerprint}")
            keypair.wipe()
            return 0
        public = _core.ServerPublicKey.from_pem(public_path.read_bytes())
    except (OSError, ValueError, _core.CoreError) as exc:
        print(f"nomyo-native keys: error: {exc}", file=sys.stderr)
        return 2
    print(f"public key        {public_path}")
    print(f"fingerprint       {public.fingerprint}")
    print(f"size              {public.bits} bits")
    if not private_path.exists():
        print(f"private key       {private_path} is missing")
        return 0
    mode = private_path.stat().st_mode & 0o777
    # Only the PEM header, read unbuffered: the rest of the file (maybe an unencrypted private
    # key) must not become a Python object.
    with open(private_path, "rb", buffering=0) as handle:
        encrypted = b"ENCRYPTED" in handle.read(64)
    access = f"mode {mode:o}" if MODE_BITS_MEAN_ACCESS else "access by ACL, checked on load"
    print(
        f"private key       {private_path} {access}, {'encrypted' if encrypted else 'UNENCRYPTED'}"
    )
    if MODE_BITS_MEAN_ACCESS and mode & 0o077:
        print(
            f"warning: {private_path} is accessible by group or others; "
            f"fix with: chmod 600 {private_path}",
            file=sys.stderr,
        )
        return 1
    return 0


# ---- chat ----------------------------------------------------------------------------------


def _add_chat_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="send one encrypted chat completion and print the reply",
        description=(
            "Send MESSAGE (or standard input with '-') as one end-to-end encrypted chat "
            "completion. The API key comes from NOMYO_API_KEY, a key password from "
            "NOMYO_KEY_PASSWORD (never from the command line). Exit status: 0 answered, "
            "1 refused by the endpoint or a security check, 2 bad input."
        ),
    )
    parser.add_argument("message", metavar="MESSAGE", help="the user message, or '-' for stdin")
    parser.add_argument("--base-url", default=DEFAULT_ROUTER_URL, help="endpoint base URL")
    parser.add_argument("--model", default="Qwen/Qwen3-0.6B", help="model name")
    parser.add_argument("--system", help="an optional system message")
    parser.add_argument("--tier", choices=SECURITY_TIERS, help="security tier")
    parser.add_argument("--ca-bundle", metavar="PATH", help="CA file to trust for the endpoint")
    parser.add_argument(
        "--pin",
        metavar="SHA256",
        help="server key fingerprint 'sha256:<hex>' (get it with: nomyo-native pin URL)",
    )
    parser.add_argument(
        "--pin-file",
        metavar="FILE",
        help="trust on first use: record the server key's fingerprint in FILE, refuse a "
        "different key later",
    )
    parser.add_argument(
        "--key-dir",
        metavar="DIR",
        help="client key directory: loaded, or created with a new key pair encrypted with "
        "NOMYO_KEY_PASSWORD",
    )
    parser.add_argument(
        "--unencrypted",
        action="store_true",
        help="allow --key-dir to save a new private key without a password (not recommended)",
    )
    parser.add_argument(
        "--attestation",
        choices=ATTESTATION_POLICIES,
        default=None,
        help=(
            "TPM attestation policy (default: 'auto', and at tier maximum 'bound'): 'bound' "
            "refuses a reply whose quote is not bound to the request, 'require' one that is not "
            "also signed by a pinned attestation key (needs a trust anchor)"
        ),
    )
    parser.add_argument("--allow-http", action="store_true", help="allow plain http:// (dev)")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT, help="seconds")
    parser.add_argument(
        "--max-retries", type=int, default=DEFAULT_MAX_RETRIES, help="retries on 429/5xx/network"
    )
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON")


async def _chat_once(args: argparse.Namespace, messages: list[dict[str, str]]) -> dict[str, Any]:
    import nomyo_native

    async with nomyo_native.SecureChatCompletion(
        base_url=args.base_url,
        allow_http=args.allow_http,
        key_dir=args.key_dir,
        max_retries=args.max_retries,
        timeout=args.timeout,
        ca_bundle=args.ca_bundle,
        server_key_fingerprint=args.pin,
        server_key_pin_file=args.pin_file,
        attestation=args.attestation,
    ) as client:
        options: dict[str, Any] = {}
        if args.tier:
            options["security_tier"] = args.tier
        return await client.create(model=args.model, messages=messages, **options)


def _cmd_chat(args: argparse.Namespace) -> int:
    import nomyo_native

    if args.key_dir and not (Path(args.key_dir) / PRIVATE_KEY_FILE).exists():
        try:
            _new_key_password(args.unencrypted)
        except ValueError as exc:
            print(f"nomyo-native chat: error: --key-dir {args.key_dir}: {exc}", file=sys.stderr)
            return 2
    text = sys.stdin.read() if args.message == "-" else args.message
    messages = [{"role": "user", "content": text}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    try:
        response = asyncio.run(_chat_once(args, messages))
    except (nomyo_native.APIError, nomyo_native.SecurityError, ConnectionError) as exc:
        print(f"nomyo-native chat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:
        print(f"nomyo-native chat: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(response, indent=2, ensure_ascii=False))
        return 0
    message = response["choices"][0]["message"]
    if message.get("content") is not None:
        print(message["content"])
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        print(f"[tool call] {function.get('name')}({function.get('arguments')})")
    return 0


# ---- pin -----------------------------------------------------------------------------------


def _add_pin_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pin",
        help="fetch a server's public key over verified TLS and print its fingerprint",
        description=(
            "Fetch the public key of the endpoint at URL over verified HTTPS and print its "
            "fingerprint on standard output: give it to clients as server_key_fingerprint= "
            "(or --pin). With --write FILE, also record it in a pin file (trust on first use; "
            "a different key already recorded there is refused). Exit status: 0 printed, "
            "1 the key could not be fetched or was refused, 2 bad input."
        ),
    )
    parser.add_argument("url", metavar="URL", help="endpoint base URL, e.g. https://api.nomyo.ai")
    parser.add_argument("--ca-bundle", metavar="PATH", help="CA file to trust for the endpoint")
    parser.add_argument(
        "--allow-http", action="store_true", help="allow plain http:// (dev; nothing verified)"
    )
    parser.add_argument("--write", metavar="FILE", help="also record the fingerprint in FILE")
    parser.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds")


async def _fetch_fingerprint(args: argparse.Namespace) -> str:
    from nomyo_native.client import SecureCompletionClient

    async with SecureCompletionClient(
        args.url,
        args.allow_http,
        max_retries=1,
        ca_bundle=args.ca_bundle,
        server_key_pin_file=args.write,
        timeout=args.timeout,
    ) as client:
        await client.fetch_server_public_key()
        fingerprint = client.server_key_fingerprint
    assert fingerprint is not None
    return fingerprint


def _cmd_pin(args: argparse.Namespace) -> int:
    import nomyo_native

    try:
        fingerprint = asyncio.run(_fetch_fingerprint(args))
    except (nomyo_native.APIError, nomyo_native.SecurityError, ConnectionError) as exc:
        print(f"nomyo-native pin: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:
        print(f"nomyo-native pin: error: {exc}", file=sys.stderr)
        return 2
    print(fingerprint)
    # user:password in the URL is used, never printed (stderr ends up in logs).
    url = redact_url(args.url.rstrip("/"))
    if url.startswith("http://"):
        print(
            "warning: fetched over plain HTTP: anyone on the path could have swapped this key",
            file=sys.stderr,
        )
    if args.write:
        print(f"recorded for {url} in {args.write}", file=sys.stderr)
    print(
        f"use it: SecureChatCompletion(base_url={url!r}, "
        f"server_key_fingerprint={fingerprint!r})\n"
        f"    or: nomyo-native chat --base-url {url} --pin {fingerprint} MESSAGE",
        file=sys.stderr,
    )
    return 0


# ---- entry point ---------------------------------------------------------------------------

_SUBCOMMANDS: list[tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = [
    (_add_serve_parser, _cmd_serve),
    (_add_demo_parser, _cmd_demo),
    (_add_attest_parser, _cmd_attest),
    (_add_keys_parser, _cmd_keys),
    (_add_chat_parser, _cmd_chat),
    (_add_pin_parser, _cmd_pin),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nomyo-native",
        description="Hardened, native-core client for end-to-end encrypted LLM inference.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser, command in _SUBCOMMANDS:
        before = set(subparsers.choices)
        add_parser(subparsers)
        for name in set(subparsers.choices) - before:
            subparsers.choices[name].set_defaults(handler=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    # Every command's messages name CLI flags (--base-url, --ca-bundle...), not the Python
    # parameters the library's messages name.
    with cli_spelling():
        return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
