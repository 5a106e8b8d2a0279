"""Run a child under a small RLIMIT_MEMLOCK that binds (issue 10 findings 9 and 10)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import pytest

# Prepended to the child scripts: the process's locked memory and capabilities per the kernel.
PROC = """
import json, os

def proc_status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return line.split()[1]

def vmlck():
    return int(proc_status("VmLck")) * 1024

def cap_ipc_lock():
    return bool(int(proc_status("CapEff"), 16) & (1 << 14))
"""


def limited(memlock: int) -> list[str]:
    """A command prefix: RLIMIT_MEMLOCK at `memlock` bytes and no CAP_IPC_LOCK (which makes
    root ignore the limit; dropping it needs the bounding set too)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is missing")
    prefix = [prlimit, f"--memlock={memlock}:{memlock}"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop CAP_IPC_LOCK")
        prefix = [setpriv, "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", *prefix]
    return prefix


def run(code: str, prefix: list[str] | None = None, *args: str) -> dict[str, Any]:
    """Run `code` (with PROC) in a fresh interpreter; its last stdout line is JSON."""
    result = subprocess.run(
        [*(prefix or []), sys.executable, "-c", PROC + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
