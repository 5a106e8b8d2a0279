"""``nomyo-native pin``: fetch a server's public key over verified TLS and print its
fingerprint (and, with --write, record it in a pin file)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nomyo_native._urls import redact_url
from nomyo_native.cli._common import positive_float
from nomyo_native.server.interrupts import run_interruptible


def add_parser(subparsers: Any) -> None:
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
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="seconds")


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


def run(args: argparse.Namespace) -> int:
    import nomyo_native

    try:
        fingerprint = run_interruptible(_fetch_fingerprint(args))
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
