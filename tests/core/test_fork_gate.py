"""Issue 10 finding 11: the fork gate. A child forked while other threads enter aws-lc must be
able to fork again (a count inherited from a thread the child does not have made its next fork
wait forever), and so must its children."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

NESTED_FORKS = """
import json, os, threading, time
from nomyo_native import _core

kp = _core.ClientKeyPair.generate(2048)
server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
stop = threading.Event()

def hammer():
    while not stop.is_set():
        _core.open(_core.seal({"x": "y" * 200}, server), kp)

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

def family(level, tag):
    # Use the key, then fork the next generation (which forks again) and wait for it.
    if _core.open(_core.seal({"tag": tag}, server), kp)[0] != {"tag": tag}:
        return 3
    if level == 0:
        return 0
    pid = os.fork()
    if pid == 0:
        os._exit(family(level - 1, tag + 1))
    code = wait(pid, 60)
    return 0 if code == 0 else 4

threads = [threading.Thread(target=hammer) for _ in range(3)]
for t in threads:
    t.start()
results = []
for i in range(ROUNDS):
    pid = os.fork()
    if pid == 0:
        os._exit(family(DEPTH, i))
    results.append(wait(pid, 120))
stop.set()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def test_finding11_forks_from_children_while_threads_use_the_core() -> None:
    code = NESTED_FORKS.replace("ROUNDS", "30").replace("DEPTH", "3")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout)
    assert results == [0] * 30, results
