"""benches/report.py: pairs the two clients, computes ratios ours/reference and target verdicts."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPORT_PATH = Path(__file__).resolve().parent.parent / "benches" / "report.py"


@pytest.fixture(scope="module")
def report() -> Any:
    spec = importlib.util.spec_from_file_location("bench_report", REPORT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def e2e(client: str, scenario: str, cpu: float, rps: float) -> dict[str, Any]:
    return {
        "name": f"test_x[{client}]",
        "group": "e2e",
        "stats": {"median": 0.01},
        "extra_info": {
            "e2e_client": client,
            "e2e_scenario": scenario,
            "requests": 10,
            "cpu_per_request_ms": cpu,
            "p50_ms": 10.0,
            "p99_ms": 20.0,
            "requests_per_s": rps,
            "server_cpu_per_request_ms": 3.0,
        },
    }


def primitive(name: str, group: str, median_s: float) -> dict[str, Any]:
    return {"name": name, "group": group, "stats": {"median": median_s}, "extra_info": {}}


BENCHMARKS = [
    e2e("ours", "sequential small requests", cpu=5.0, rps=50.0),
    e2e("reference", "sequential small requests", cpu=50.0, rps=5.0),  # 0.1 <= 1/8: PASS
    e2e("ours", "16 concurrent requests", cpu=6.0, rps=20.0),
    e2e("reference", "16 concurrent requests", cpu=60.0, rps=10.0),  # 2x < 3x: MISS
    e2e("ours", "1 MiB prompts", cpu=15.0, rps=8.0),
    primitive("test_seal_sized_core[1KiB]", "seal-1KiB-cpu", 0.002),
    primitive("test_seal_sized_pyca[1KiB]", "seal-1KiB-cpu", 0.004),
    primitive("test_keygen_4096_core", "keygen-4096", 0.5),
]


def test_ratios_and_verdicts(report):
    result = report.e2e_results(BENCHMARKS)
    ratios = result["scenarios"]["sequential small requests"]["ratios"]
    assert ratios["cpu_per_request_ms"] == pytest.approx(0.1)
    assert ratios["requests_per_s"] == pytest.approx(10.0)
    issue_6 = [t for t in result["targets"] if t["issue"] == 6]
    verdicts = {t["metric"] + "@" + t["scenario"]: t for t in issue_6}
    assert verdicts["cpu_per_request_ms@sequential small requests"]["verdict"] == "PASS"
    concurrent = verdicts["requests_per_s@16 concurrent requests"]
    assert concurrent["ratio"] == pytest.approx(2.0)
    assert concurrent["verdict"] == "MISS"
    # The reference's 1 MiB run is missing: no ratio, and the table says so.
    assert verdicts["cpu_per_request_ms@1 MiB prompts"]["verdict"] == "NOT RUN"


def test_primitives_pair_core_with_pyca(report):
    rows = {row["benchmark"]: row for row in report.primitive_rows(BENCHMARKS)}
    assert rows["seal-1KiB-cpu"]["core_median_ms"] == pytest.approx(2.0)
    assert rows["seal-1KiB-cpu"]["ratio_core_over_pyca"] == pytest.approx(0.5)
    assert rows["keygen-4096"]["pyca_median_ms"] is None
    assert not any("e2e" in name for name in rows)


def test_unpaired_parametrized_benchmarks_keep_a_row_each(report):
    rows = {
        row["benchmark"]: row
        for row in report.primitive_rows(
            [
                primitive("test_quote[ecdsa]", "tpm-quote", 0.003),
                primitive("test_quote[rsassa]", "tpm-quote", 0.040),
            ]
        )
    }
    assert rows["tpm-quote/quote[ecdsa]"]["median_ms"] == pytest.approx(3.0)
    assert rows["tpm-quote/quote[rsassa]"]["median_ms"] == pytest.approx(40.0)


def test_main_prints_the_table_and_writes_the_summary(report, tmp_path, capsys):
    source = tmp_path / "bench.json"
    source.write_text(json.dumps({"benchmarks": BENCHMARKS, "machine_info": {}}))
    output = tmp_path / "report.json"
    assert report.main([str(source), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "requests/s at 16 concurrent" in printed and "MISS" in printed and "PASS" in printed
    summary = json.loads(output.read_text())
    issue_6 = [t["verdict"] for t in summary["e2e"]["targets"] if t["issue"] == 6]
    assert issue_6 == ["PASS", "MISS", "NOT RUN"]


def worker_run(client: str, plan: list[dict[str, Any]]) -> dict[str, Any]:
    """A benchmark entry as test_e2e_bench.py records it: one worker, several scenarios."""
    runs = [{"client": client, "requests": 10, **figures} for figures in plan]
    return {"name": f"test_e2e[{client}]", "group": "e2e", "stats": {"median": 1.0},
            "extra_info": {"e2e_runs": runs}}  # fmt: skip


WORKER_RUNS = [
    worker_run(
        "floor",
        [
            {"scenario": "floor small", "cpu_per_request_ms": 2.0},
            {"scenario": "floor 1 MiB", "cpu_per_request_ms": 4.0},
            {"scenario": "floor 1 MiB non-ASCII", "cpu_per_request_ms": 8.0},
        ],
    ),
    worker_run("core", [{"scenario": "sequential small requests", "cpu_per_request_ms": 1.25}]),
    worker_run(
        "tls-transport",
        [
            {
                "scenario": "sequential small requests",
                "cpu_per_request_ms": 0.5,
                "openssl_cpu_per_request_ms": 0.875,
                "tls_records_ms_per_mib": 0.34,
                "pyca_aes_gcm_ms_per_mib": 0.11,
                "tls_library": "OpenSSL 3.0.99",
            }
        ],
    ),
    worker_run(
        "ours",
        [
            {"scenario": "sequential small requests", "cpu_per_request_ms": 3.0},  # 1.5x: PASS
            {"scenario": "1 MiB prompts", "cpu_per_request_ms": 12.0},  # 3x floor: MISS
            # 4x the ASCII floor (MISS), 2x its own (PASS).
            {"scenario": "1 MiB non-ASCII prompts", "cpu_per_request_ms": 16.0},
            {"scenario": "16 concurrent requests", "requests_per_s": 171.0},  # 0.75x of 228
        ],
    ),
    worker_run("ours", [{"scenario": "soak", "peak_rss_mib": 200.0}]),
    worker_run("reference", [{"scenario": "soak", "peak_rss_mib": 250.0}]),  # 0.8: PASS
    worker_run("ours-sync", [{"scenario": "sequential small requests", "cpu_per_request_ms": 4.5}]),
    worker_run("ours", [{"scenario": "first request", "first_request_ms": 40.0}]),
    worker_run("reference", [{"scenario": "first request", "first_request_ms": 100.0}]),
]


def test_worker_runs_are_paired_with_the_floors_and_the_reference(report):
    result = report.e2e_results(WORKER_RUNS)
    verdicts = {t["description"]: t for t in result["targets"]}
    small = verdicts["CPU per small request / floor"]
    assert (small["ours"], small["theirs"], small["ratio"]) == (3.0, 2.0, pytest.approx(1.5))
    assert small["verdict"] == "PASS"
    mib = verdicts["CPU per 1 MiB request / floor"]
    assert mib["ratio"] == pytest.approx(3.0) and mib["verdict"] == "MISS"
    rss = verdicts["peak RSS, 25 concurrent mixed sizes"]
    assert rss["ratio"] == pytest.approx(0.8) and rss["verdict"] == "PASS"
    # 40 ms against 100 ms: 0.4 > 0.25.
    assert verdicts["first request after start-up"]["verdict"] == "MISS"
    sync = verdicts["sync client CPU per small request / async"]
    assert sync["ratio"] == pytest.approx(1.5) and sync["verdict"] == "MISS"
    assert verdicts["openai SDK CPU per small request / ours"]["verdict"] == "NOT RUN"
    ascii_floor = verdicts["CPU per 1 MiB non-ASCII / floor"]
    assert ascii_floor["ratio"] == pytest.approx(4.0) and ascii_floor["verdict"] == "MISS"
    own_floor = verdicts["CPU per 1 MiB non-ASCII / its own floor"]
    assert own_floor["theirs"] == 8.0 and own_floor["verdict"] == "PASS"
    # Against the figure issue 15 recorded before its work (228 req/s), not another client.
    throughput = verdicts["requests/s at 16 concurrent / before issue 15"]
    assert throughput["theirs"] == 228.0 and throughput["ratio"] == pytest.approx(0.75)
    assert throughput["verdict"] == "MISS"
    soak = result["scenarios"]["soak"]
    assert soak["ratios"]["peak_rss_mib"] == pytest.approx(0.8)
    # Worker-driven entries are end-to-end figures, never primitive rows.
    assert report.primitive_rows(WORKER_RUNS) == []


def test_markdown_table_has_a_row_per_target_with_its_verdict(report, tmp_path, capsys):
    source = tmp_path / "bench.json"
    source.write_text(json.dumps({"benchmarks": WORKER_RUNS, "machine_info": {}}))
    table = tmp_path / "table.md"
    assert report.main([str(source), "--markdown", str(table)]) == 0
    rows = table.read_text().splitlines()
    assert rows[0].startswith("| measure |") and len(rows) == 2 + len(report.E2E_TARGETS)
    small = next(r for r in rows if r.startswith("| CPU per small request / floor |"))
    assert "floor 2.00 ms" in small and "ours 3.00 ms" in small and small.endswith("PASS |")
    rss = next(r for r in rows if r.startswith("| peak RSS"))
    assert "nomyo 0.2.9 250 MiB" in rss and "ours 200 MiB" in rss
    printed = capsys.readouterr().out
    assert "floor small" in printed and "peak RSS MiB" in printed
    # The core's share split off ours' CPU: 3.0 ms in all, 1.25 in the core.
    rest = next(line for line in printed.splitlines() if "ours - core" in line)
    assert rest.split()[-1] == "1.750"


def test_unreadable_input_is_a_clear_error(report, tmp_path, capsys):
    bad = tmp_path / "bench.json"
    bad.write_text("{not json")
    assert report.main([str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err


# ---- the benches' endpoint harness, against the real `nomyo-native serve` ----------------------

BENCHES = REPORT_PATH.parent


@pytest.fixture(scope="module")
def endpoint_harness() -> Any:
    spec = importlib.util.spec_from_file_location("bench_e2e_endpoint", BENCHES / "e2e_endpoint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_startup_lines_are_understood_in_text_and_json(endpoint_harness):
    fp = "sha256:" + "ab" * 32
    text = endpoint_harness.Startup()
    for line in (
        "  listening        https://127.0.0.1:43210",
        f"  server key       {fp}",
        "  TLS CA (trust)   /tmp/nomyo-tls-x/ca.pem",
    ):
        endpoint_harness.parse_startup_line(line, text)
    assert (text.base_url, str(text.ca_path), text.fingerprint) == (
        "https://127.0.0.1:43210",
        "/tmp/nomyo-tls-x/ca.pem",
        fp,
    )
    announced = endpoint_harness.Startup()
    endpoint_harness.parse_startup_line(
        json.dumps({"base_url": "https://127.0.0.1:5/", "ca_path": "/c.pem", "fingerprint": fp}),
        announced,
    )
    assert announced.complete() and announced.base_url == "https://127.0.0.1:5"
    # Port 0 is what was asked for, not where it listens.
    unbound = endpoint_harness.Startup()
    endpoint_harness.parse_startup_line("binding https://127.0.0.1:0", unbound)
    assert unbound.base_url is None


def test_the_real_serve_command_is_started_read_and_stopped(endpoint_harness, tmp_path):
    with endpoint_harness.EndpointProcess() as endpoint:
        # start() already fetched the key over TLS trusting only the announced CA and compared
        # its fingerprint with the announced one.
        assert endpoint.base_url.startswith("https://127.0.0.1:")
        assert endpoint.fingerprint.startswith("sha256:")
        assert endpoint.cpu_seconds() > 0  # the RSA-4096 key was generated in that process
        bundle = endpoint_harness.write_trust_bundle(endpoint.ca_path, tmp_path / "bundle.pem")
        assert bundle.read_bytes().endswith(endpoint.ca_path.read_bytes())
        assert bundle.stat().st_size > 100_000  # certifi's roots are in it too
        process = endpoint._proc
    assert process is not None and process.returncode is not None  # stopped and reaped


def test_repeated_processes_of_a_scenario_count_by_their_median(report):
    # The reference's first request is its key generation: 100 to 900 ms from key to key.
    runs = [
        worker_run(client, [{"scenario": "first request", "first_request_ms": ms}])
        for client, ms in (
            ("reference", 100.0),
            ("ours", 30.0),
            ("reference", 900.0),
            ("ours", 20.0),
            ("reference", 300.0),
            ("ours", 45.0),
        )
    ]
    result = report.e2e_results(runs)
    first = {t["description"]: t for t in result["targets"]}["first request after start-up"]
    assert (first["ours"], first["theirs"]) == (30.0, 300.0)
    assert first["ratio"] == pytest.approx(0.1) and first["verdict"] == "PASS"
    assert result["scenarios"]["first request"]["clients"]["reference"]["processes"] == 3


def test_the_floor_rows_take_each_sides_median_and_say_so(report):
    # Three floor processes and three of ours, each noisy: each side's median, not a pairing
    # of the best of one with the worst of the other.
    runs = [
        worker_run("floor", [{"scenario": "floor 1 MiB", "cpu_per_request_ms": ms}])
        for ms in (2.4, 2.0, 2.2)
    ] + [
        worker_run("ours", [{"scenario": "1 MiB prompts", "cpu_per_request_ms": ms}])
        for ms in (7.0, 5.0, 5.4)
    ]
    result = report.e2e_results(runs)
    mib = {t["description"]: t for t in result["targets"]}["CPU per 1 MiB request / floor"]
    assert (mib["ours"], mib["theirs"]) == (5.4, 2.2)
    assert mib["ratio"] == pytest.approx(5.4 / 2.2) and mib["verdict"] == "PASS"
    assert (mib["ours_processes"], mib["theirs_processes"]) == (3, 3)
    row = next(r for r in report.markdown(result).splitlines() if "1 MiB request / floor" in r)
    assert "floor 2.20 ms (median of 3)" in row and "ours 5.40 ms (median of 3)" in row
    # A figure of one process says nothing more.
    single = report.markdown(report.e2e_results(WORKER_RUNS))
    assert "median of" not in single


def paired_run(scenario: str, cpu: float, beside: dict[str, float]) -> dict[str, Any]:
    return {"scenario": scenario, "cpu_per_request_ms": cpu, "beside": beside}


def test_the_floor_rows_pair_each_process_with_the_floor_it_measured_beside_it(report):
    # The machine drifts: each of ours' processes ran in a minute of its own speed, and measured
    # the floor in that same minute. The floor's own processes ran in faster minutes.
    runs = [
        worker_run("floor", [{"scenario": "floor 1 MiB", "cpu_per_request_ms": ms}])
        for ms in (2.0, 1.9, 2.1)
    ] + [
        worker_run("ours", [paired_run("1 MiB prompts", ms, {"floor/floor 1 MiB": beside})])
        for ms, beside in ((7.0, 2.8), (5.0, 2.0), (5.4, 2.25))
    ]
    result = report.e2e_results(runs)
    mib = {t["description"]: t for t in result["targets"]}["CPU per 1 MiB request / floor"]
    # Per process 2.5, 2.5 and 2.4: their median, not ours' median over another run's floor.
    assert mib["ratio"] == pytest.approx(2.5) and mib["verdict"] == "PASS"
    assert (mib["ours"], mib["theirs"], mib["theirs_processes"]) == (5.4, 2.25, 3)
    assert mib["theirs_alone"] == 2.0 and mib["ratio_alone"] == pytest.approx(2.7)
    row = next(r for r in report.markdown(result).splitlines() if "1 MiB request / floor" in r)
    assert "floor beside ours 2.25 ms (median of 3); alone 2.00 ms (median of 3)" in row
    assert row.endswith("PASS |")
    printed = report.render([], result)
    assert "against its own processes: 2.700" in printed
    # One process far off does not move the median of three.
    runs[-1]["extra_info"]["e2e_runs"][0]["beside"] = {"floor/floor 1 MiB": 1.0}
    again = {t["description"]: t for t in report.e2e_results(runs)["targets"]}
    assert again["CPU per 1 MiB request / floor"]["ratio"] == pytest.approx(2.5)


def test_the_sync_and_openai_rows_pair_each_process_with_ours_beside_it(report):
    ours_alone = [
        worker_run("ours", [{"scenario": "sequential small requests", "cpu_per_request_ms": ms}])
        for ms in (2.0, 2.1, 2.2)
    ]
    others = [
        worker_run(
            client,
            [paired_run("sequential small requests", ms, {"ours/sequential small requests": mine})],
        )
        for client in ("openai", "ours-sync")
        for ms, mine in ((4.0, 2.9), (4.4, 3.0), (3.1, 2.5))
    ]
    verdicts = {t["description"]: t for t in report.e2e_results(ours_alone + others)["targets"]}
    openai = verdicts["openai SDK CPU per small request / ours"]
    # Per process 1.38, 1.47 and 1.24: 1.38 (PASS at 1.5); against ours' own processes 4.0 / 2.1.
    assert openai["ratio"] == pytest.approx(4.0 / 2.9) and openai["verdict"] == "PASS"
    assert openai["ratio_alone"] == pytest.approx(4.0 / 2.1) and openai["theirs"] == 2.9
    sync = verdicts["sync client CPU per small request / async"]
    assert sync["ratio"] == pytest.approx(4.0 / 2.9) and sync["verdict"] == "MISS"  # 1.25
    row = next(
        r
        for r in report.markdown(report.e2e_results(ours_alone + others)).splitlines()
        if r.startswith("| openai SDK")
    )
    assert "ours beside openai 2.90 ms (median of 3); alone 2.10 ms (median of 3)" in row


def test_a_floor_measured_beside_another_scenario_is_not_paired(report):
    # Each process measured only the floors its scenarios are held against: a row whose floor
    # was not measured beside it (the non-ASCII row's own) takes the floors' own processes.
    runs = [
        worker_run(
            "floor",
            [{"scenario": "floor 1 MiB", "cpu_per_request_ms": 4.0},
             {"scenario": "floor 1 MiB non-ASCII", "cpu_per_request_ms": 8.0}],
        ),
        worker_run(
            "ours",
            [paired_run("sequential small requests", 3.0, {"floor/floor small": 2.5}),
             paired_run("1 MiB non-ASCII prompts", 16.0, {"floor/floor 1 MiB": 5.0})],
        ),
    ]  # fmt: skip
    verdicts = {t["description"]: t for t in report.e2e_results(runs)["targets"]}
    assert verdicts["CPU per small request / floor"]["ratio"] == pytest.approx(1.2)
    assert verdicts["CPU per 1 MiB non-ASCII / floor"]["ratio"] == pytest.approx(3.2)
    own = verdicts["CPU per 1 MiB non-ASCII / its own floor"]
    assert own["ratio"] == pytest.approx(2.0) and "theirs_alone" not in own
    assert verdicts["CPU per 1 MiB request / floor"]["verdict"] == "NOT RUN"


def test_the_bench_measures_the_rows_held_to_a_ratio_in_three_processes_each():
    spec = importlib.util.spec_from_file_location("bench_plan", BENCHES / "test_e2e_bench.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(BENCHES))
    try:
        plan = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plan)
    finally:
        sys.path.remove(str(BENCHES))
    floors = [p for c, p in plan.RUNS if c == "floor"]
    assert len(floors) == 3 and all(p == ["floors"] for p in floors)
    for scenario in plan.SINGLE_REQUEST_PLAN:
        assert sum(scenario in p for c, p in plan.RUNS if c == "ours") == 3, scenario
    # The other clients held against ours' small requests: three processes each as well.
    for client in ("ours-sync", "openai"):
        assert sum(plan.SMALL in p for c, p in plan.RUNS if c == client) == 3, client
    # Spread over the run, not back to back: another run between any two floor processes.
    where = [i for i, (c, _) in enumerate(plan.RUNS) if c == "floor"]
    assert all(b - a > 1 for a, b in itertools.pairwise(where))


def test_ours_is_split_into_core_transport_and_the_rest(report):
    # ours 3.0 = core 1.25 + transport 0.5 + 1.25 of HTTP, protocol and hand-offs.
    printed = report.render([], report.e2e_results(WORKER_RUNS))
    lines = printed.splitlines()
    small = lines.index(next(line for line in lines if line.startswith("sequential small")))
    rows = lines[small:]
    rest = next(line for line in rows if "ours - core" in line)
    assert rest.split()[-1] == "1.750"
    after_transport = next(line for line in rows if "- transport" in line)
    assert after_transport.split()[-1] == "1.250"
    assert "tls-transport" in printed.split("ours - core")[0]
    alone = next(line for line in rows if "transport alone" in line)
    assert "core TLS 0.500 ms" in alone and "OpenSSL under asyncio 0.875 ms" in alone
    speed = next(line for line in lines if line.startswith("TLS records per MiB"))
    assert "OpenSSL 3.0.99" in speed and "0.340 ms" in speed and "0.110 ms" in speed


def test_no_transport_line_without_a_transport_run(report):
    runs = [r for r in WORKER_RUNS if "tls-transport" not in r["name"]]
    printed = report.render([], report.e2e_results(runs))
    assert "ours - core" in printed
    assert "- transport" not in printed and "TLS records per MiB" not in printed
