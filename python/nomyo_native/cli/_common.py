"""What several commands share: option types, the server-extra guard, the rule for new key
passwords and the words of an attestation verdict."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from nomyo_native._constants import KEY_PASSWORD_ENV

if TYPE_CHECKING:
    from nomyo_native.attestation import AttestationResult

Command = Callable[[argparse.Namespace], int]

# Top-level modules of the 'server' extra (pyproject.toml): missing one means the extra is.
_SERVER_EXTRA_MODULES = frozenset({"starlette", "uvicorn", "cryptography", "h11", "anyio"})
SERVER_EXTRA_HINT = "pip install 'nomyo-native[server]'"


def positive_float(text: str) -> float:
    """An argparse type: a number above zero (seconds)."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _server_extra_missing(exc: ImportError) -> str | None:
    """The missing module an ImportError names, when it is not one of this package's own."""
    missing = (exc.name or "").partition(".")[0]
    return missing if missing and missing != "nomyo_native" else None


def needs_server_extra(command: Command) -> Command:
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


def new_key_password(unencrypted: bool) -> str | None:
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


def verdict_label(result: AttestationResult) -> str:
    """The verdict in the words of issue 11: VERIFIED (bound and hardware-rooted), BOUND (not
    hardware-rooted: what any server, TPM or not, can produce), NOT BOUND, or NONE (no TPM)."""
    if result.verified:
        return "VERIFIED (bound, hardware-rooted)"
    if result.bound:
        return "BOUND (not hardware-rooted)"
    return "NOT BOUND" if result.available or result.failed_checks else "NONE (no TPM)"
