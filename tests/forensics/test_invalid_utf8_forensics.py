"""Issue 10 finding 3: a decrypted response whose JSON holds invalid UTF-8 must not leave a copy
of its plaintext in the Python heap. CPython's decoder, handed the raw bytes, raised a
UnicodeDecodeError holding a ``bytes`` copy of the whole string, freed without wiping; the core
now validates in Rust before any Python string exists, and its error names the JSON path only.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives import serialization
from tests.pyca_envelope import seal_json

from forensics.scanner import Paused, count_in_process, supported

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
]

FAILURES = 200

# The child never sees the plaintext: it prints its public key, reads sealed responses (built by
# this process), opens each with the core and records only the error type and message.
_CHILD = textwrap.dedent(
    """
    import gc, json, sys
    from nomyo_native import _core

    kp = _core.ClientKeyPair.generate(2048)
    print(json.dumps(kp.public_key_pem), flush=True)
    bodies = json.loads(sys.stdin.readline())
    errors = {}
    for body in bodies:
        try:
            _core.open(body.encode(), kp)
        except Exception as exc:
            key = f"{type(exc).__name__}: {exc}"
            errors[key] = errors.get(key, 0) + 1
        else:
            errors["opened"] = errors.get("opened", 0) + 1
    del bodies, body
    gc.collect()
    print(json.dumps(errors), flush=True)
    sys.stdin.readline()
    """
)


def _plaintexts(marker: str) -> list[bytes]:
    """Response payloads whose strings hold invalid UTF-8 in several places and spellings."""
    bad = [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]
    out = []
    for i in range(FAILURES):
        text = f"{marker}-{i:03d}-".encode() + b"x" * (i % 7 * 40)
        invalid = bad[i % len(bad)]
        if i % 3 == 0:  # in a message's content, after valid text
            body = b'{"choices":[{"message":{"content":"' + text + invalid + b'"}}]}'
        elif i % 3 == 1:  # with escapes before it (the unescaping path)
            body = b'{"content":"\\n' + text + b"\\t" + invalid + b'tail"}'
        else:  # in a key
            body = b'{"ok":1,"' + text + invalid + b'":2}'
        out.append(body)
    return out


def test_finding3_invalid_utf8_leaves_no_copy() -> None:
    marker = "u8" + secrets.token_hex(8)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        public_pem = json.loads(child.stdout.readline())
        public_key = serialization.load_pem_public_key(public_pem.encode())
        bodies = [seal_json(public_key, p)[0].decode() for p in _plaintexts(marker)]
        child.stdin.write(json.dumps(bodies) + "\n")
        child.stdin.flush()
        errors = json.loads(child.stdout.readline())
        with Paused(child.pid):
            scan = count_in_process(child.pid, {"plaintext": [marker.encode()]})
    finally:
        child.stdin.close()
        child.wait(timeout=60)

    # Every response was refused with the typed error, naming the path, never the content.
    assert sum(errors.values()) == FAILURES
    assert all(k.startswith("EnvelopeError: ") for k in errors), errors
    assert all("invalid UTF-8" in k and "(path $" in k for k in errors), errors
    assert not any(marker in k for k in errors), errors
    assert any("$.choices[0].message.content" in k for k in errors), errors
    # And no copy of any of the 200 plaintexts is left anywhere in the child's memory.
    assert scan.bytes_scanned > 1_000_000
    assert scan.counts["plaintext"] == 0, scan.where("plaintext")
