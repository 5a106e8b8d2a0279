"""Run a client in a child process, then count what it left behind in its memory."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.reference import reference_python

from .scanner import Paused, ScanResult, count_in_process

CHILD = Path(__file__).with_name("child.py")
CATEGORIES = ("aes_keys", "request_json", "response_json", "any_content_json")


@dataclass
class Examination:
    client: str
    outcome: dict[str, Any]
    keys_hunted: int
    scan: ScanResult

    def row(self) -> str:
        counts = "  ".join(f"{c}={self.scan.counts[c]:<4}" for c in CATEGORIES)
        return (
            f"{self.client:<10} ok={self.outcome['ok']:<3} errors={len(self.outcome['errors']):<3}"
            f" keys_hunted={self.keys_hunted:<4} {counts}"
            f" ({self.scan.bytes_scanned / 2**20:.0f} MiB scanned)"
        )


def new_token() -> str:
    return "fx" + secrets.token_hex(8)


def needles(token: str, keys: Sequence[bytes], reply_prefix: str = "") -> dict[str, list[bytes]]:
    """What betrays a secret: the raw AES keys, and JSON-framed copies of the messages. The
    framing (``"role": "user", "content": "``) is what only serialized JSON has; the caller's
    own Python strings are the bare text."""

    def both_styles(role: str, prefix: str) -> list[bytes]:
        return [
            f'"role":"{role}","content":"{prefix}{token}-'.encode(),
            f'"role": "{role}", "content": "{prefix}{token}-'.encode(),
        ]

    any_content = [f'"content":"{token}-'.encode(), f'"content": "{token}-'.encode()]
    if reply_prefix:
        any_content += [
            f'"content":"{reply_prefix}{token}-'.encode(),
            f'"content": "{reply_prefix}{token}-'.encode(),
        ]
    return {
        "aes_keys": list(keys),
        "request_json": both_styles("user", ""),
        "response_json": both_styles("assistant", reply_prefix),
        "any_content_json": any_content,
    }


def examine(
    client: str,
    url: str,
    keys_for: Callable[[dict[str, Any]], list[bytes]],
    *,
    requests: int,
    ca: str | None = None,
    reply_prefix: str = "",
    extra_args: Sequence[str] = (),
    timeout: float = 240.0,
    label: str | None = None,
    extra_needles: dict[str, list[bytes]] | None = None,
) -> Examination:
    """Run ``requests`` chats in a child with ``client`` (``ours`` / ``reference``), pause it,
    and count every needle in its whole readable memory."""
    token = new_token()
    # The reference runs under its own venv's interpreter (its pins conflict with ours).
    python = str(reference_python()) if client == "reference" else sys.executable
    argv = [python, str(CHILD), "--client", client, "--url", url]
    argv += ["--requests", str(requests), "--token", token, *extra_args]
    if ca:
        argv += ["--ca", ca]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    # stderr goes to a file: a pipe nobody reads could fill up and block the child.
    errors = tempfile.TemporaryFile()
    child = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        line = child.stdout.readline()
        if not line:
            child.wait(timeout=timeout)
            errors.seek(0)
            raise AssertionError(f"child failed: {errors.read().decode()[-4000:]}")
        outcome = json.loads(line)
        assert child.stdout.readline().strip() == b"READY"
        keys = keys_for(outcome)
        with Paused(child.pid):
            wanted = needles(token, keys, reply_prefix)
            wanted.update(extra_needles or {})
            scan = count_in_process(child.pid, wanted)
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()
        errors.close()
    return Examination(label or client, outcome, len(keys), scan)
