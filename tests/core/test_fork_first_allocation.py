"""Issue 12 item 7 (review finding): a fork from another thread during the very first
locked-buffer allocation left the child waiting forever on memsec's one-time setup and the
canary's. Importing ``_core`` now does that setup, before any thread can allocate."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ._probes import probes_module

probes_module()

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

IMPORT_ALONE = """
from nomyo_native._core import _testing
print(_testing.locked_memory_initialised())
"""

# Fork at once after import while another thread makes the process's first allocations; the
# child must allocate too and exit. A hang is killed by the parent (and the subprocess by
# the test's timeout).
FORK_DURING_FIRST_ALLOCATION = """
import os, threading, time
from nomyo_native._core import _testing

def allocate():
    for i in range(200):
        _testing.LockedProbe(64 + i, i).release()

def wait(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

results = []
for round in range(ROUNDS):
    thread = threading.Thread(target=allocate)
    thread.start()
    pid = os.fork()
    if pid == 0:
        probe = _testing.LockedProbe(4096, 7)
        os._exit(0 if probe.size == 4096 else 3)
    results.append(wait(pid, 50))
    thread.join()
print(results)
"""


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_import_alone_does_the_one_time_setup() -> None:
    assert run(IMPORT_ALONE) == "True"


def test_child_forked_while_a_thread_allocates_first_can_allocate() -> None:
    rounds = 5
    results = run(FORK_DURING_FIRST_ALLOCATION.replace("ROUNDS", str(rounds)))
    assert results == str([0] * rounds)
