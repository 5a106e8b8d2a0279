"""benches/e2e_worker.py's measurements that the report's verdicts rest on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"
MIB = 1024 * 1024

PEAK_OF_A_CHILD = f"""
import sys
sys.path.insert(0, {str(BENCHES)!r})
from e2e_worker import peak_rss_mib
before = peak_rss_mib()
held = b"x" * ({{grow}} * {MIB})
print(before, peak_rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_rss_is_the_workers_own_not_its_parents():
    # Linux carries a parent's peak into ru_maxrss across fork and exec: a worker started by a
    # large bench process would report the parent's size, whatever the client it measures.
    parent = b"p" * (400 * MIB)
    small, grown = (
        [float(v) for v in subprocess.run(
            [sys.executable, "-c", PEAK_OF_A_CHILD.format(grow=grow)],
            capture_output=True, text=True, check=True,
        ).stdout.split()]
        for grow in (0, 300)
    )  # fmt: skip
    del parent
    assert small[0] < 200 and small[1] < 200  # a bare interpreter, not the parent's 400 MiB
    assert grown[1] - grown[0] >= 290  # and what the worker itself holds is counted
