"""The ``nomyo-native`` command: one module per subcommand.

Each subcommand module has ``add_parser(subparsers)``, which declares its options, and
``run(args) -> int``, which runs it and returns the exit status. ``main`` wires the modules
listed in ``_SUBCOMMANDS``; write a module and list it there to add a subcommand. What several
commands share (option types, the server-extra guard, key passwords, verdict words) is in
``_common``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from nomyo_native._option_hints import cli_spelling
from nomyo_native.cli import attest, chat, demo, keys, pin, serve
from nomyo_native.cli._common import verdict_label
from nomyo_native.cli.serve import config_from_args

__all__ = ["build_parser", "config_from_args", "main", "verdict_label"]

# In the order `nomyo-native --help` lists them.
_SUBCOMMANDS: tuple[ModuleType, ...] = (serve, demo, attest, keys, chat, pin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nomyo-native",
        description="Hardened, native-core client for end-to-end encrypted LLM inference.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _SUBCOMMANDS:
        before = set(subparsers.choices)
        command.add_parser(subparsers)
        for name in set(subparsers.choices) - before:
            subparsers.choices[name].set_defaults(handler=command.run)
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
