"""How an error message names an option: as the Python parameter or as the CLI flag.

A user who typed ``--allow-http`` gains nothing from "pass allow_http=True". Messages that tell
the user which option to change ask :func:`option` for its spelling; the ``nomyo-native``
command switches the spelling for everything it runs with :func:`cli_spelling`. A context
variable carries the choice, so it follows the call into asyncio tasks and worker threads
(``asyncio.to_thread`` copies the context) and concurrent library callers are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["cli_spelling", "option"]

_CLI = ContextVar("nomyo_native_cli_spelling", default=False)

# name -> (Python spelling, CLI spelling); "{}" stands for the value (quoted in Python).
# Secrets never come from the command line: a password's CLI spelling is its variable.
_SPELLINGS: dict[str, tuple[str, str]] = {
    "allow_http": ("allow_http=True", "--allow-http"),
    "base_url": ("base_url={!r}", "--base-url {}"),
    "ca_bundle": ("ca_bundle={!r}", "--ca-bundle {}"),
    "server_key_fingerprint": ("server_key_fingerprint={!r}", "--pin {}"),
    "server_key_pin_file": ("server_key_pin_file={!r}", "--pin-file {}"),
    "key_password": ("key_password= (or NOMYO_KEY_PASSWORD)", "NOMYO_KEY_PASSWORD"),
    "security_tier": ("security_tier={!r}", "--tier {}"),
}


def option(name: str, value: str = "...") -> str:
    """How the user sets option ``name`` (to ``value``) in the interface they are using."""
    python, cli = _SPELLINGS[name]
    template = cli if _CLI.get() else python
    return template.format(value)


@contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block, messages name CLI flags instead of Python parameters."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)
