"""Fork safety after the fork handlers were unified (one pthread_atfork registration for aws-lc's
gate and heap and the LockedBuf pool): a process that forks again and again while its other
threads seal, open, compact SDK bodies, generate keys and allocate big locked buffers (every
path that takes either lock with the GIL released) gets children that neither hang nor inherit a
half-updated heap or pool, and that can fork in turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

FORK_UNDER_LOAD = """
import json, os, threading, time
from nomyo_native import _core

kp = _core.ClientKeyPair.generate(2048)
server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
stop = threading.Event()
SMALL = {"messages": [{"role": "user", "content": "y" * 200}]}
# Past the pool's smallest classes, and past aws-lc's slab blocks when opened.
BIG = {"messages": [{"role": "user", "content": "z" * 700_000}]}
BODY = json.dumps(SMALL, separators=(",", ":")).encode()

def seal_and_open(payload):
    return _core.open_envelope(_core.seal(payload, server), kp)[0] == payload

def body_round_trip():
    return _core.open_envelope(_core.RequestBody(BODY).seal(server), kp)[0] == SMALL

def loop(work):
    while not stop.is_set():
        if not work():
            os._exit(9)  # a wrong answer in the parent fails the run too

def generate():
    _core.ClientKeyPair.generate(2048).wipe()
    return True

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

def child(level):
    # Every path the parent's threads were on works here, alone.
    checks = [seal_and_open(SMALL), seal_and_open(BIG), body_round_trip()]
    status = _core.memory_status()
    checks.append(status["buffers_live"] >= 0)
    if not all(checks):
        return 3
    if level == 0:
        return 0
    pid = os.fork()
    if pid == 0:
        os._exit(child(level - 1))
    return 0 if wait(pid, 60) == 0 else 4

works = [lambda: seal_and_open(SMALL), lambda: seal_and_open(BIG), body_round_trip, generate]
threads = [threading.Thread(target=loop, args=(w,)) for w in works]
for t in threads:
    t.start()
results = []
for i in range(ROUNDS):
    pid = os.fork()
    if pid == 0:
        os._exit(child(1))
    results.append(wait(pid, 120))
stop.set()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def test_forks_while_threads_seal_open_compact_generate_and_allocate() -> None:
    rounds = 24
    result = subprocess.run(
        [sys.executable, "-c", FORK_UNDER_LOAD.replace("ROUNDS", str(rounds))],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [0] * rounds
