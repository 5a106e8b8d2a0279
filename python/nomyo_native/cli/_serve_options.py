"""The options of ``nomyo-native serve``, one function per group of its ``--help``.

Plain constants only (no server dependency): ``serve --help`` works without the server extra.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from nomyo_native._constants import SECURITY_TIERS
from nomyo_native.cli._common import positive_float
from nomyo_native.server.limits import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
)

SERVE_EPILOG = textwrap.dedent(
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


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """Every option of ``serve``, in the groups its ``--help`` shows."""
    _add_network_options(parser.add_argument_group("network"))
    _add_limit_options(
        parser.add_argument_group(
            "limits (what slow or idle clients may hold; 408/503 beyond them)"
        )
    )
    _add_tls_options(parser.add_argument_group("TLS (without any, the endpoint speaks plain HTTP)"))
    sec = parser.add_argument_group("keys, access and attestation")
    _add_access_options(sec)
    _add_tpm_options(sec)
    _add_backend_options(parser.add_argument_group("backend"))
    _add_diagnostic_options(parser.add_argument_group("diagnostics"))


def _add_network_options(group: Any) -> None:
    """Where the endpoint listens, and for whom."""
    group.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    group.add_argument("--port", type=int, default=12434, help="port; 0 picks a free one")
    group.add_argument(
        "--allow-open",
        action="store_true",
        help="serve a non-loopback --host without API keys (refused otherwise): anyone who "
        "reaches the address may use the endpoint and its backend",
    )
    group.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="largest request body accepted (default 16 MiB: a 10 MiB plaintext, encrypted)",
    )


def _add_limit_options(group: Any) -> None:
    """What slow or idle clients may hold."""
    group.add_argument(
        "--header-timeout",
        type=positive_float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help=f"seconds for a request's headers to arrive (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    group.add_argument(
        "--body-timeout",
        type=positive_float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="S",
        help="longest pause within a request body, and while a client takes nothing of its "
        f"response (default {DEFAULT_BODY_TIMEOUT:g})",
    )
    group.add_argument(
        "--request-timeout",
        type=positive_float,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="S",
        help="seconds for a whole request body to arrive after its headers "
        f"(default {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    group.add_argument(
        "--tls-handshake-timeout",
        type=positive_float,
        default=DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        metavar="S",
        help=f"seconds for a TLS handshake (default {DEFAULT_TLS_HANDSHAKE_TIMEOUT:g})",
    )
    group.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections held at once; a newcomer beyond them displaces the one waiting "
        "longest for its client, or gets 503 when all are being answered "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    group.add_argument(
        "--max-inflight-body-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help="request-body bytes buffered at once across all requests; more get 503 "
        "(default: 4 x --max-body-bytes, at least 64 MiB)",
    )


def _add_tls_options(group: Any) -> None:
    """The certificate the endpoint serves."""
    group.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) of the server")
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="make a throwaway CA and a certificate for localhost/127.0.0.1; prints the CA path",
    )
    group.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="keep --tls-self-signed's CA, certificate and key in DIR (0700) so a restarted "
        "endpoint keeps its certificate: reused when present (must be yours, mode 0600, not "
        "symlinks), made when absent (default: a temporary directory removed on exit)",
    )


def _add_access_options(group: Any) -> None:
    """The server key, API keys, models per tier and rate limits."""
    group.add_argument(
        "--key-file",
        type=Path,
        help="server RSA key (PKCS#8 PEM, mode 0600); created (4096 bits) if missing. "
        "Default: a fresh key for every start",
    )
    group.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this bearer API key (repeatable; visible in ps: prefer --api-key-file or "
        "NOMYO_SERVER_API_KEYS); without any keys the endpoint is open",
    )
    group.add_argument(
        "--api-key-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="accept the API keys in FILE, one per line (repeatable)",
    )
    group.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="TIER=MODEL[,MODEL]",
        help="models a security tier allows (repeatable); tiers not named allow every model",
    )
    group.add_argument(
        "--rate-limit",
        type=int,
        metavar="N",
        help="at most N requests a minute per API key (or client address without keys); "
        "more get 429 with Retry-After (default: unlimited)",
    )
    group.add_argument(
        "--default-tier",
        default="standard",
        choices=SECURITY_TIERS,
        help="tier for requests without X-Security-Tier (default standard)",
    )


def _add_tpm_options(group: Any) -> None:
    """The TPM that quotes every response, and its attestation key."""
    group.add_argument(
        "--tpm",
        default="none",
        metavar="{none,swtpm,tcti:<TCTI>}",
        help="TPM for quotes in every response: 'swtpm' starts a private software TPM, "
        "'tcti:device:/dev/tpmrm0' uses a real one. Tier 'maximum' needs a TPM (default none)",
    )
    group.add_argument(
        "--tpm-state",
        type=Path,
        metavar="DIR",
        help="with --tpm swtpm: keep the TPM's state (its persistent keys) in DIR across "
        "restarts; created 0700, never deleted (default: a temporary directory removed on exit)",
    )
    group.add_argument(
        "--ek-chain",
        type=Path,
        metavar="PEM",
        help="PEM file of the certificates that issued the TPM's EK certificate (intermediates "
        "up to the manufacturer's root), served with it for 'attest enroll --ek-ca'",
    )
    group.add_argument(
        "--tpm-scheme",
        default="ecdsa",
        choices=("ecdsa", "rsassa", "rsapss"),
        help="signature scheme of the attestation key (default ecdsa)",
    )
    group.add_argument(
        "--aik",
        default="persistent",
        choices=("persistent", "per-request"),
        help="attestation key: 'persistent' (default) is one key per TPM, kept with the TPM's "
        "state (--tpm-state), whose fingerprint is printed at start for clients to pin "
        "(trusted_aik=); its quotes also bind the server key, so a relayed quote fails. "
        "'per-request' makes a fresh AIK for every quote (the published protocol): such "
        "quotes can only ever be bound, never hardware-rooted",
    )


def _add_backend_options(group: Any) -> None:
    """What answers the decrypted requests."""
    group.add_argument(
        "--backend",
        default="echo",
        metavar="{echo,URL}",
        help="'echo' answers with the last user message (no model needed); a URL forwards to "
        "an OpenAI-compatible /v1/chat/completions (default echo)",
    )
    group.add_argument(
        "--backend-api-key",
        metavar="KEY",
        help="bearer key for --backend (visible in ps: prefer --backend-api-key-file or "
        "NOMYO_BACKEND_API_KEY)",
    )
    group.add_argument(
        "--backend-api-key-file", type=Path, metavar="FILE", help="read --backend's key from FILE"
    )
    group.add_argument(
        "--backend-timeout", type=positive_float, default=300.0, help="seconds (default 300)"
    )


def _add_diagnostic_options(group: Any) -> None:
    """Logging, and the test-only key recording."""
    group.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    group.add_argument(
        "--record-keys-insecure",
        type=Path,
        metavar="FILE",
        help="TEST ONLY: append every request's and response's AES key to FILE. Anyone with "
        "the file reads the traffic; never use it with real data",
    )
