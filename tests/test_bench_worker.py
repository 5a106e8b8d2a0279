"""benches/e2e_worker.py's measurements that the report's verdicts rest on."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

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


@pytest.fixture
def bench_modules(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    monkeypatch.syspath_prepend(str(BENCHES))
    return importlib.import_module("e2e_worker"), importlib.import_module("bench_floors")


class CountingFloors:
    """Floors whose n-th measurement of any floor reads n ms."""

    made = 0

    def __init__(self) -> None:
        CountingFloors.made += 1
        self.calls: list[str] = []

    def measure(self, name: str) -> float:
        self.calls.append(name)
        return float(len(self.calls))


def test_paired_floors_are_the_mean_of_before_and_after_the_scenario(bench_modules, monkeypatch):
    worker, floors = bench_modules
    monkeypatch.setattr(floors, "Floors", CountingFloors)
    CountingFloors.made = 0
    paired = worker.PairedFloors()
    paired.before("16 concurrent requests")  # held against no floor: nothing measured
    assert paired.after("16 concurrent requests") == {} and CountingFloors.made == 0
    paired.before("1 MiB non-ASCII prompts")  # measurements 1 and 2
    figures = paired.after("1 MiB non-ASCII prompts")  # 3 and 4
    assert figures == {"paired_floors": {"floor 1 MiB": 2.0, "floor 1 MiB non-ASCII": 3.0}}
    paired.before("sequential small requests")  # 5
    assert paired.after("sequential small requests") == {"paired_floors": {"floor small": 5.5}}
    assert CountingFloors.made == 1  # one set of keys for the process


def test_every_scenario_held_against_a_floor_measures_it_beside_itself(bench_modules):
    worker, floors = bench_modules
    report = importlib.import_module("report")
    held = {(t.scenario, t.yardstick()[1]) for t in report.E2E_TARGETS if t.paired}
    measured = {(s, f) for s, names in floors.PAIRED_FLOORS.items() for f in names}
    assert held == measured
    assert all(s in worker.SCENARIOS for s, _ in held)
    assert {f for _, f in held} <= set(floors.FLOOR_SCENARIOS)


def test_the_floors_measure_each_floor_by_name(bench_modules):
    _, floors = bench_modules
    measured = floors.Floors()
    for name in floors.FLOOR_SCENARIOS:
        assert measured.measure(name) > 0  # CPU of this thread, ms per request (not timed here)
    with pytest.raises(KeyError):
        measured.measure("floor 2 MiB")
    # The non-ASCII row's answer is the endpoint's ASCII escapes: larger than its request.
    request_bytes, response_bytes = floors._non_ascii_plaintexts()
    assert request_bytes > floors.MIB and response_bytes > 1.5 * request_bytes
