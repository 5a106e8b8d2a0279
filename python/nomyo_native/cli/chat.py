"""``nomyo-native chat``: send one end-to-end encrypted chat completion and print the reply."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomyo_native._constants import (
    ATTESTATION_POLICIES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_ROUTER_URL,
    DEFAULT_TIMEOUT,
    PRIVATE_KEY_FILE,
    SECURITY_TIERS,
)
from nomyo_native.cli._common import new_key_password, positive_float
from nomyo_native.server.interrupts import run_interruptible

if TYPE_CHECKING:
    from nomyo_native.types import ChatCompletion


def add_parser(subparsers: Any) -> None:
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
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT, help="seconds")
    parser.add_argument(
        "--max-retries", type=int, default=DEFAULT_MAX_RETRIES, help="retries on 429/5xx/network"
    )
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON")


async def _chat_once(args: argparse.Namespace, messages: list[dict[str, str]]) -> ChatCompletion:
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


def run(args: argparse.Namespace) -> int:
    import nomyo_native

    if args.key_dir and not (Path(args.key_dir) / PRIVATE_KEY_FILE).exists():
        try:
            new_key_password(args.unencrypted)
        except ValueError as exc:
            print(f"nomyo-native chat: error: --key-dir {args.key_dir}: {exc}", file=sys.stderr)
            return 2
    text = sys.stdin.read() if args.message == "-" else args.message
    messages = [{"role": "user", "content": text}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    try:
        response = run_interruptible(_chat_once(args, messages))
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
