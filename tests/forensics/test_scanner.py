"""The scanner itself must find what is there and nothing that is not, or its zeros mean nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from forensics.scanner import Paused, count_in_process, json_string_framings, supported

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
]

# The child derives its pattern from a seed with integer arithmetic, so the pattern is never a
# literal in its argv or source, and no temporary bytes object holds a copy of it.
_HOLDER = textwrap.dedent(
    """
    import json, sys
    seed = int(sys.argv[1])
    secret = bytearray(64)
    x = seed
    for i in range(64):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        secret[i] = x >> 56
    marker = "mk" + str(seed * 7)
    document = json.dumps({"content": marker + "-tail"})
    print("READY", flush=True)
    for command in sys.stdin:
        command = command.strip()
        if command == "wipe":
            for i in range(64):
                secret[i] = 0
        elif command == "drop-json":
            document = None
        print("READY", flush=True)
    """
)


def _pattern(seed: int) -> bytes:
    out = bytearray(64)
    x = seed
    for i in range(64):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out[i] = x >> 56
    return bytes(out)


def test_scanner_finds_live_bytes_and_json_then_nothing_after_wipe() -> None:
    seed = 918273645
    needles = {
        "secret": [_pattern(seed)],
        "json": json_string_framings("content", f"mk{seed * 7}"),
        "absent": [_pattern(seed + 1)],
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "READY"
        with Paused(child.pid):
            live = count_in_process(child.pid, needles)
        assert live.counts["secret"] >= 1, live.where("secret")
        assert live.counts["json"] >= 1
        assert live.counts["absent"] == 0
        assert live.bytes_scanned > 1_000_000
        assert live.regions_scanned > 10

        child.stdin.write("wipe\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "READY"
        with Paused(child.pid):
            wiped = count_in_process(child.pid, needles)
        assert wiped.counts["secret"] == 0, wiped.where("secret")
        # The JSON document is still referenced: wiping one buffer must not blind the scan.
        assert wiped.counts["json"] >= 1
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_needles_split_across_chunk_boundaries_are_found(monkeypatch) -> None:
    # With one-page chunks every page boundary is a chunk boundary: put the needle across one.
    from forensics import scanner

    monkeypatch.setattr(scanner, "_CHUNK", 4096)
    seed = 55
    code = textwrap.dedent(
        f"""
        import mmap, sys
        m = mmap.mmap(-1, 4 * 4096)
        x = {seed}
        for i in range(64):
            x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
            m[2 * 4096 - 32 + i] = x >> 56
        print("READY", flush=True)
        sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "READY"
        with Paused(child.pid):
            result = count_in_process(child.pid, {"n": [_pattern(seed)]})
        assert result.counts["n"] == 1, result.where("n")
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_empty_needle_is_refused() -> None:
    import os

    with pytest.raises(ValueError, match="empty needle"):
        count_in_process(os.getpid(), {"x": [b""]})
