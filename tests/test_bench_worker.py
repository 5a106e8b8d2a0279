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


def echo_client(made: list[dict[str, Any]], asked: list[list[str]]) -> Any:
    """A make_client whose clients answer each prompt with itself, as the echo endpoint does."""

    def make(job: dict[str, Any]) -> Any:
        made.append(job)

        def ask(prompts: list[str], latencies: list[float] | None = None) -> list[str]:
            asked.append(prompts)
            if latencies is not None:
                latencies.extend(0.001 for _ in prompts)
            return prompts

        return ask

    return make


def test_yardsticks_are_measured_by_name_with_one_set_of_keys(bench_modules, monkeypatch):
    worker, floors = bench_modules
    monkeypatch.setattr(floors, "Floors", CountingFloors)
    CountingFloors.made = 0
    beside = worker.Yardsticks({"client": "ours"})
    assert beside.wanted("16 concurrent requests") == [] and CountingFloors.made == 0
    wanted = beside.wanted("1 MiB non-ASCII prompts")
    assert wanted == ["floor/floor 1 MiB", "floor/floor 1 MiB non-ASCII"]
    before = {key: beside.measure(key) for key in wanted}  # measurements 1 and 2
    assert before == {"floor/floor 1 MiB": 1.0, "floor/floor 1 MiB non-ASCII": 2.0}
    assert beside.measure("floor/floor small") == 3.0
    assert CountingFloors.made == 1  # one set of keys for the process


def test_a_scenario_carries_the_mean_of_its_yardsticks_before_and_after_it(
    bench_modules, monkeypatch
):
    worker, floors = bench_modules
    monkeypatch.setattr(floors, "Floors", CountingFloors)
    monkeypatch.setattr(worker, "make_client", echo_client([], []))
    plan = ["sequential small requests", "16 concurrent requests", "1 MiB non-ASCII prompts"]
    results = worker.run_scenarios({"client": "ours", "plan": plan})
    # The small floor read 1 before and 2 after its scenario; the 16 concurrent requests are
    # held against no floor; the two 1 MiB floors 3 and 4 before, 5 and 6 after.
    assert results[0]["beside"] == {"floor/floor small": 1.5}
    assert "beside" not in results[1]
    assert results[2]["beside"] == {"floor/floor 1 MiB": 4.0, "floor/floor 1 MiB non-ASCII": 5.0}
    assert [r["scenario"] for r in results] == plan


def test_ours_is_measured_beside_the_clients_held_against_it(bench_modules, monkeypatch):
    worker, _ = bench_modules
    assert worker.Yardsticks({"client": "openai"}).wanted("sequential small requests") == [
        "ours/sequential small requests"
    ]
    assert worker.Yardsticks({"client": "ours-sync"}).wanted("1 MiB prompts") == []
    assert worker.Yardsticks({"client": "reference"}).wanted("sequential small requests") == []
    made: list[dict[str, Any]] = []
    asked: list[list[str]] = []
    monkeypatch.setattr(worker, "make_client", echo_client(made, asked))
    beside = worker.Yardsticks({"client": "openai", "base_url": "https://x"})
    for _ in range(2):
        beside.measure("ours/sequential small requests")
    # One ours client for the process, made from the same job, warmed up, then the scenario.
    assert made == [{"client": "ours", "base_url": "https://x"}]
    scenario = worker.SCENARIOS["sequential small requests"]
    assert len(asked) == worker.WARMUP_REQUESTS + 2 * scenario.requests


def test_every_target_paired_in_the_report_is_measured_beside_its_scenario(bench_modules):
    worker, floors = bench_modules
    report = importlib.import_module("report")
    for target in report.E2E_TARGETS:
        if target.paired:
            key = "/".join(target.yardstick())
            assert key in worker.Yardsticks({"client": target.client}).wanted(target.scenario)
    floor_pairs = {(s, f) for s, names in floors.PAIRED_FLOORS.items() for f in names}
    held = {
        (t.scenario, t.yardstick()[1]) for t in report.E2E_TARGETS if t.yardstick()[0] == "floor"
    }
    assert floor_pairs == held


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_minflt as Linux counts it")
def test_the_meter_counts_the_pages_faulted_in_while_timed(bench_modules):
    import mmap

    e2e_worker, _ = bench_modules
    pages = 1024
    meter = e2e_worker.Meter(None)
    data = b"x" * (pages * mmap.PAGESIZE)  # its own pages faulted in before the timing
    with meter.timed():
        fresh = mmap.mmap(-1, len(data))
        fresh.write(data)  # every page written: each faulted in
    fresh.close()
    with meter.timed():
        pass  # touches nothing new
    meter.latencies.extend([0.001, 0.001])  # two timed "requests"
    faults = meter.summary()["minor_faults_per_request"]
    assert pages / 2 <= faults < pages * 0.6  # the first's pages, spread over both
