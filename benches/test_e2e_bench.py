"""End to end, side by side: ``nomyo_native`` and the reference ``nomyo==0.2.9`` in one run.

Every client runs in a process of its own, under its own venv's interpreter, through the same
worker script (``e2e_worker.py``): ours in the project's venv, the reference in
``.cache/reference-venv`` (``make reference-venv``; its pins conflict with ours). So both are
measured the same way: process CPU over the timed requests, latencies, requests/s, peak RSS.

Both talk to the same local endpoint, a separate process, over HTTPS with a realistic trust
store: certifi's bundle plus the endpoint's throwaway CA (ours through ``ca_bundle=``, the
reference through ``SSL_CERT_FILE``, which its worker first checks httpx honours). Each client
has its RSA-4096 key pair before anything is timed (warm-up), except in the first-request run.

What runs (one worker process per line):
- the floors of issue 15: pyca/OpenSSL doing the request's cryptography and nothing else;
- the core's share: ``_core.seal`` + ``_core.open_envelope`` alone on each single-request
  scenario's payloads and the endpoint's answers (the rest of ours' CPU is HTTP, TLS, asyncio);
- the TLS transport's share: the same scenarios' bytes alone through asyncio's TLS over loopback
  to a bare TLS peer, and the interpreter's TLS record speed beside pyca's AES-GCM;
- ours (async), the reference: small requests (ASCII and non-ASCII), 16 concurrent, 1 MiB
  prompts (ASCII and non-ASCII);
- ours' sync client (issue 12) and the openai SDK on our transport (issue 14, when installed);
- ours on the HTTP library's default TLS transport, 1 MiB only (what ours' transport saves);
- the soak of each: 25 concurrent requests of mixed sizes (10 B to 4 MB), 12 rounds: peak RSS;
- the first request of each, made a while after the client was created at start-up (three
  processes each; the report keeps the median);
- the floors, ours' single-request scenarios and the sync and openai clients' small requests
  in three processes each, spread over the run (the report keeps each one's median: one
  process's figure is noisy on a shared machine).

Nothing here asserts speed (a shared 2-core machine makes figures noisy): ``benches/report.py``
pairs the figures and prints PASS/MISS per target.

Run: ``make bench`` (or ``.venv/bin/python -m pytest benches/test_e2e_bench.py --benchmark-only``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench_floors import FLOOR_SCENARIOS
from e2e_endpoint import EndpointProcess, write_trust_bundle
from e2e_worker import SCENARIOS

BENCHES = Path(__file__).resolve().parent
WORKER = BENCHES / "e2e_worker.py"
REFERENCE_PYTHON_ENV = "NOMYO_BENCH_REFERENCE_PYTHON"
DEFAULT_REFERENCE_PYTHON = BENCHES.parent / ".cache" / "reference-venv" / "bin" / "python"
WORKER_TIMEOUT = 600.0

MAIN_PLAN = list(SCENARIOS)
SMALL, SMALL_NON_ASCII = "sequential small requests", "sequential small non-ASCII"
MIB, MIB_NON_ASCII = "1 MiB prompts", "1 MiB non-ASCII prompts"
SYNC_PLAN = ["sequential small requests", "16 concurrent requests", "1 MiB prompts"]
OPENAI_PLAN = ["sequential small requests", "16 concurrent requests", "1 MiB prompts"]

# (client, plan): one worker process each.
SINGLE_REQUEST_PLAN = [SMALL, SMALL_NON_ASCII, MIB, MIB_NON_ASCII]
FIRST_REQUEST_PROCESSES = 3
# The rows held against the floors and against ours are figures of a few milliseconds on a
# shared 2-core box, where one process's figure moves by a fifth from one minute to the next:
# ours' single-request scenarios, the floors, and the sync and openai clients' small requests
# are each measured in three processes spread over the run, and the report keeps each one's
# median (the same rule for both sides of every ratio).
FLOOR_RUN, OURS_SINGLE_RUN = ("floor", ["floors"]), ("ours", SINGLE_REQUEST_PLAN)
SYNC_SMALL_RUN, OPENAI_SMALL_RUN = ("ours-sync", [SMALL]), ("openai", [SMALL])
RUNS = [
    FLOOR_RUN,
    ("core", SINGLE_REQUEST_PLAN),
    ("tls-transport", SINGLE_REQUEST_PLAN),
    ("ours", MAIN_PLAN),
    ("reference", MAIN_PLAN),
    FLOOR_RUN,
    OURS_SINGLE_RUN,
    SYNC_SMALL_RUN,
    OPENAI_SMALL_RUN,
    ("ours-sync", SYNC_PLAN),
    ("openai", OPENAI_PLAN),
    ("ours-httpx-tls", ["1 MiB prompts"]),
    ("ours", ["soak"]),
    ("reference", ["soak"]),
    FLOOR_RUN,
    OURS_SINGLE_RUN,
    SYNC_SMALL_RUN,
    OPENAI_SMALL_RUN,
    # A process each, three times: the reference's first request is its RSA-4096 key
    # generation, whose time varies several-fold from one key to the next (the report keeps
    # each client's median).
    *[
        (client, ["first request"])
        for _ in range(FIRST_REQUEST_PROCESSES)
        for client in ("ours", "reference")
    ],
]


def reference_python() -> Path:
    return Path(os.environ.get(REFERENCE_PYTHON_ENV) or DEFAULT_REFERENCE_PYTHON)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[EndpointProcess]:
    with EndpointProcess() as running:
        yield running


@pytest.fixture(scope="module")
def trust_bundle(endpoint: EndpointProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trust_bundle(endpoint.ca_path, tmp_path_factory.mktemp("trust") / "bundle.pem")


def interpreter_for(client: str) -> str:
    if client == "reference":
        python = reference_python()
        if not python.exists():
            pytest.fail(f"no reference venv at {python}: run `make reference-venv`")
        return str(python)
    if client == "openai" and importlib.util.find_spec("openai") is None:
        pytest.skip("the openai SDK is not installed in this venv")
    if client == "openai" and importlib.util.find_spec("nomyo_native.openai") is None:
        pytest.skip("nomyo_native.openai is not there yet")
    return sys.executable


def run_worker(python: str, job: dict[str, Any], home: Path) -> list[dict[str, Any]]:
    # A fresh HOME: neither client finds keys or settings a previous run left.
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("SSL_CERT_FILE", None)
    done = subprocess.run(
        [python, str(WORKER), json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=BENCHES,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"worker {job['client']} {job['plan']} failed:\n{done.stderr[-4000:]}")
    results: list[dict[str, Any]] = json.loads(done.stdout)["results"]
    return results


@pytest.mark.parametrize(
    ("client", "plan"), RUNS, ids=[f"{c}-{p[0]}-{i}" for i, (c, p) in enumerate(RUNS)]
)
def test_e2e(
    benchmark: Any,
    client: str,
    plan: list[str],
    endpoint: EndpointProcess,
    trust_bundle: Path,
    tmp_path: Path,
) -> None:
    python = interpreter_for(client)
    job = {
        "client": client,
        "plan": plan,
        "base_url": endpoint.base_url,
        "fingerprint": endpoint.fingerprint,
        "trust_bundle": str(trust_bundle),
        "endpoint_pid": endpoint.pid,
    }
    benchmark.group = f"e2e-{plan[0] if len(plan) == 1 else 'scenarios'}"
    results = benchmark.pedantic(
        run_worker, args=(python, job, tmp_path), rounds=1, iterations=1, warmup_rounds=0
    )
    expected = FLOOR_SCENARIOS if client == "floor" else plan
    assert [r["scenario"] for r in results] == expected
    assert all(r["client"] == client and r["requests"] > 0 for r in results)
    benchmark.extra_info["e2e_runs"] = results
