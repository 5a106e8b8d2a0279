"""``nomyo-native serve``: run the local secure endpoint in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from nomyo_native.cli._common import needs_server_extra
from nomyo_native.cli._serve_banner import describe
from nomyo_native.cli._serve_options import SERVE_EPILOG, add_serve_options

if TYPE_CHECKING:
    from nomyo_native.server.config import ServerConfig


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a local secure endpoint (protocol peer for nomyo clients)",
        description=(
            "Run a local NOMYO secure-completion endpoint: GET /pki/public_key and "
            "POST /v1/chat/secure_completion. Requests are decrypted here, answered by the "
            "backend, and encrypted back to the client's key. The server key's fingerprint is "
            "printed at start: give it to clients as server_key_fingerprint."
        ),
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_options(parser)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
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


@needs_server_extra
def run(args: argparse.Namespace) -> int:
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
        print("\n".join(describe(endpoint, config)), flush=True)

    try:
        serve(config, on_ready=ready)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        # Start-up failures (port in use, swtpm missing, bad key file) end with one clear line.
        print(f"nomyo-native serve: {exc}", file=sys.stderr)
        return 1
    return 0
