"""Review of the reader's scratch for non-ASCII strings (``json_wide``): the decoded text of a
response string never stays behind in the form only the core's scratch buffers hold.

A non-ASCII string with escapes is decoded into the parser's ``wide`` buffer as ``wchar_t``s,
code points (UCS-4) on Linux (grown into a bigger buffer when the room estimate falls short),
and narrowed there in place to Latin-1 when every character is, before CPython builds the
``str``. Each buffer is locked memory that must be wiped when it is dropped. The texts here are
chosen so that the finished ``str`` has another form (Latin-1, or UCS-2 for text within the
BMP, lone surrogates included), so a UCS-4 copy can only come from a scratch buffer: after
opening responses of each kind, including bodies the decoder reads most of before the reader
refuses them, the child's whole memory holds none. (Text beyond the BMP is UCS-4 in its
``str`` too, so it cannot be told apart, and is not among them.) A bytes object in the same
form, deliberately kept, is found.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives import serialization
from tests.forensics.scanner import Paused, count_in_process, supported
from tests.pyca_envelope import seal_json

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
]

EACH = 30

# The child never sees the texts: it prints its public key, opens the sealed responses the
# parent made, keeps the control's UCS-4 bytes alive and reports only what happened.
_CHILD = textwrap.dedent(
    """
    import gc, json, sys
    from nomyo_native import _core

    kp = _core.ClientKeyPair.generate(2048)
    print(json.dumps(kp.public_key_pem), flush=True)
    control_text, bodies = json.loads(sys.stdin.readline())
    control = control_text.encode("utf-32-le")
    del control_text
    outcomes = {}
    for body in bodies:
        try:
            _core.open_envelope(body.encode(), kp)
        except Exception as exc:
            key = type(exc).__name__
        else:
            key = "opened"
        outcomes[key] = outcomes.get(key, 0) + 1
    del bodies, body
    gc.collect()
    print(json.dumps(outcomes), flush=True)
    sys.stdin.readline()
    print(len(control))
    """
)


def _payloads(token: str) -> tuple[list[bytes], dict[str, list[bytes]]]:
    """The response plaintexts (JSON as the endpoint writes it: every non-ASCII character
    escaped) and the needles for each kind of text."""
    kinds = {
        # Latin-1 text: the str is one byte a character, the scratch four (then narrowed).
        "latin1": lambda i: f"{token}-L-{i}-déjà vu " * (1 + i * 40),
        # A lone surrogate in Latin-1 text: the str is UCS-2.
        "lone": lambda i: f"{token}-S-{i}-é\ud800 " * (1 + i * 40),
        # Text within the BMP: the str is UCS-2.
        "bmp": lambda i: f"{token}-B-{i}-Ελλάδα 漢字 " * (1 + i * 40),
        # Escaped backslashes before a `u` make the room estimate short: the decoder goes on in
        # a bigger buffer and the first one is dropped.
        "regrown": lambda i: f"{token}-G-{i}-é" + "\\u" * (50 + i * 200),
    }
    payloads = []
    for i in range(EACH):
        for make in kinds.values():
            payloads.append(json.dumps({"choices": [{"message": {"content": make(i)}}]}))
        # Decoded most of the way, then refused at a bad escape: read again the old way.
        refused = json.dumps({"content": f"{token}-R-{i}-déjà " * (1 + i * 40)})
        payloads.append(refused[:-2] + '\\x"}')
    needles = {
        kind: [f"{token}-{letter}-".encode("utf-32-le")]
        for kind, letter in (
            ("latin1", "L"),
            ("lone", "S"),
            ("bmp", "B"),
            ("regrown", "G"),
            ("refused", "R"),
        )
    }
    return [p.encode() for p in payloads], needles


def test_no_scratch_form_of_a_decoded_string_is_left_in_memory() -> None:
    token = "w7" + secrets.token_hex(8)
    control_token = "c7" + secrets.token_hex(8)
    payloads, needles = _payloads(token)
    needles["control"] = [control_token.encode("utf-32-le")]
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
        bodies = [seal_json(public_key, p)[0].decode() for p in payloads]
        child.stdin.write(json.dumps([control_token, bodies]) + "\n")
        child.stdin.flush()
        outcomes = json.loads(child.stdout.readline())
        with Paused(child.pid):
            scan = count_in_process(child.pid, needles)
    finally:
        child.stdin.close()
        child.wait(timeout=60)

    assert outcomes == {"opened": 4 * EACH, "EnvelopeError": EACH}, outcomes
    assert scan.bytes_scanned > 1_000_000
    # The instrument finds the form it looks for where it is.
    assert scan.counts["control"] >= 1
    left = {kind: scan.counts[kind] for kind in needles if kind != "control"}
    assert left == dict.fromkeys(left, 0), {kind: scan.where(kind) for kind in left}
