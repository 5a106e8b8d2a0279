"""One client under test in a process of its own: ``python e2e_worker.py '<job JSON>'``.

Run by each client's own interpreter (``nomyo_native`` in the project's venv, ``nomyo==0.2.9``
in the reference venv), so both are measured the same way, like for like: the process's CPU
(``getrusage``, every thread) over the timed requests only, per-request latencies, requests/s,
the endpoint's CPU (from /proc) and this process's peak RSS. Prints one JSON document.

The job names a client (``ours``, ``ours-sync``, ``ours-httpx-tls``, ``openai``,
``reference``, ``floor`` for the pyca floors, ``core`` for the core's seal + open alone, or
``tls-transport`` for each scenario's bytes alone through the core's TLS under asyncio),
the endpoint, and a plan: scenario names, each measured in turn after an untimed warm-up;
``soak`` and ``first`` want a process each (peak RSS and first-request latency are per process).
A scenario held against a yardstick of another process's kind (ours against the pyca floors, the
sync and openai clients against ours) also carries that yardstick measured in the same process
just before and after it (``beside``).

Only the standard library is imported at module level: each venv brings its own client.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_floors import Floors

MODEL = "bench-model"
MIB = 1024 * 1024
WARMUP_REQUESTS = 3
# First request: the application creates its client at start-up, does other things for a
# while, then sends its first prompt.
FIRST_REQUEST_IDLE_S = 3.0
SOAK_CONCURRENCY = 25
SOAK_ROUNDS = 12
SOAK_SMALLEST, SOAK_LARGEST = 10, 4_000_000


@dataclass(frozen=True)
class Scenario:
    name: str  # as the report names it
    prompt: Callable[[int], str]
    requests: int
    concurrency: int = 1


def small_prompt(i: int) -> str:
    return f"What is the capital of France? (request {i})"


def small_non_ascii_prompt(i: int) -> str:
    return f"Quelle est la capitale de la Grèce, Ελλάδα? 首都は? 🔐 (request {i})"


def sized_prompt(i: int, size: int, non_ascii: bool = False) -> str:
    """A prompt of ``size`` UTF-8 bytes of prose-like text, unique per request where it fits."""
    head = f"request {i}: summarise the following text. "
    if size <= len(head):
        return head[:size]
    unit = "héllo wörld Ελλάδα 漢字 🔐 " if non_ascii else "the quick brown fox jumps over "
    room = size - len(head)
    body = unit * (room // len(unit.encode()))
    return head + body + "a" * (room - len(body.encode()))


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("sequential small requests", small_prompt, 60),
        Scenario("sequential small non-ASCII", small_non_ascii_prompt, 60),
        Scenario("16 concurrent requests", small_prompt, 16 * 8, concurrency=16),
        Scenario("1 MiB prompts", lambda i: sized_prompt(i, MIB), 20),
        Scenario("1 MiB non-ASCII prompts", lambda i: sized_prompt(i, MIB, True), 20),
    )
}


def soak_sizes() -> list[int]:
    """SOAK_CONCURRENCY sizes spread geometrically from SOAK_SMALLEST to SOAK_LARGEST bytes."""
    steps = SOAK_CONCURRENCY - 1
    ratio = (SOAK_LARGEST / SOAK_SMALLEST) ** (1 / steps)
    return [round(SOAK_SMALLEST * ratio**k) for k in range(SOAK_CONCURRENCY)]


# ---- measuring ------------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def minor_faults() -> int:
    """Pages this process has faulted in so far (fresh memory the kernel mapped and cleared)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_rss_mib() -> float:
    """This process's own peak RSS: ``VmHWM``, the high-water mark of its memory since exec.

    Not ``ru_maxrss``: Linux carries the parent's peak over into a child's across fork and
    exec, so a worker started by a large bench process reported the parent's size, the same
    for every client (ours and the reference's soak both read the bench's 183 MiB once).
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (the endpoint), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


@dataclass
class Meter:
    """CPU, wall time and latencies over the timed requests only."""

    endpoint_pid: int | None

    def __post_init__(self) -> None:
        self.latencies: list[float] = []
        self.cpu = self.wall = self.server_cpu = 0.0
        self.faults = 0

    @contextmanager
    def timed(self) -> Iterator[None]:
        server0 = process_cpu_seconds(self.endpoint_pid) if self.endpoint_pid else 0.0
        cpu0, wall0, faults0 = cpu_seconds(), time.perf_counter(), minor_faults()
        yield
        self.wall += time.perf_counter() - wall0
        self.cpu += cpu_seconds() - cpu0
        self.faults += minor_faults() - faults0
        if self.endpoint_pid:
            self.server_cpu += process_cpu_seconds(self.endpoint_pid) - server0

    def summary(self) -> dict[str, Any]:
        n = len(self.latencies)
        ordered = sorted(self.latencies)
        result = {
            "requests": n,
            "cpu_per_request_ms": 1000 * self.cpu / n,
            "p50_ms": 1000 * percentile(ordered, 50),
            "p99_ms": 1000 * percentile(ordered, 99),
            "requests_per_s": n / self.wall,
            "minor_faults_per_request": self.faults / n,
        }
        if self.endpoint_pid:
            result["server_cpu_per_request_ms"] = 1000 * self.server_cpu / n
        return result


# ---- the clients: each a blocking ``ask(prompts) -> replies`` that sends them at once ------

Ask = Callable[[list[str]], list[str]]


def content_of(response: Any) -> str:
    if isinstance(response, dict):
        content = response["choices"][0]["message"]["content"]
    else:  # an openai SDK ChatCompletion
        content = response.choices[0].message.content
    assert isinstance(content, str)
    return content


class AsyncDriver:
    """An async client's ``create`` on one loop for the process (pooled connections persist)."""

    def __init__(self, create: Callable[..., Awaitable[Any]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.create = create

    def __call__(self, prompts: list[str], latencies: list[float] | None = None) -> list[str]:
        async def one(prompt: str) -> str:
            started = time.perf_counter()
            reply = await self.create(MODEL, [{"role": "user", "content": prompt}])
            if latencies is not None:
                latencies.append(time.perf_counter() - started)
            return content_of(reply)

        async def all_of() -> list[str]:
            return list(await asyncio.gather(*(one(p) for p in prompts)))

        if len(prompts) == 1:
            # One request awaited as an application awaits it: gather's task and callbacks
            # would be the harness's CPU, counted as the client's (as SyncDriver calls directly).
            return [self.loop.run_until_complete(one(prompts[0]))]
        return self.loop.run_until_complete(all_of())


class SyncDriver:
    """A blocking client's ``create`` from as many threads as there are prompts at once."""

    def __init__(self, create: Callable[..., Any]) -> None:
        self.create = create
        self.pool: ThreadPoolExecutor | None = None
        self.pool_size = 0

    def __call__(self, prompts: list[str], latencies: list[float] | None = None) -> list[str]:
        def one(prompt: str) -> str:
            started = time.perf_counter()
            reply = self.create(MODEL, [{"role": "user", "content": prompt}])
            if latencies is not None:
                latencies.append(time.perf_counter() - started)
            return content_of(reply)

        if len(prompts) == 1:
            return [one(prompts[0])]
        if self.pool is None or self.pool_size < len(prompts):
            self.pool_size = len(prompts)
            self.pool = ThreadPoolExecutor(self.pool_size, thread_name_prefix="bench")
        return list(self.pool.map(one, prompts))


def our_options(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "base_url": job["base_url"],
        "ca_bundle": job["trust_bundle"],
        "server_key_fingerprint": job["fingerprint"],
    }


def make_client(job: dict[str, Any]) -> AsyncDriver | SyncDriver:
    kind = job["client"]
    if kind == "reference":
        import nomyo  # the reference venv's

        os.environ["SSL_CERT_FILE"] = job["trust_bundle"]
        ref = nomyo.SecureChatCompletion(base_url=job["base_url"])
        return AsyncDriver(lambda model, messages: ref.create(model, messages))
    if kind == "openai":
        from nomyo_native import openai as nomyo_openai

        sdk = nomyo_openai.OpenAI(
            base_url=job["base_url"],
            api_key="bench",
            ca_bundle=job["trust_bundle"],
            server_key_fingerprint=job["fingerprint"],
        )
        return SyncDriver(
            lambda model, messages: sdk.chat.completions.create(model=model, messages=messages)
        )
    import nomyo_native

    if kind == "ours-sync":
        sync = nomyo_native.SyncSecureChatCompletion(**our_options(job))
        return SyncDriver(lambda model, messages: sync.create(model, messages))
    options = our_options(job)
    if kind == "ours-httpx-tls":
        options["transport"] = httpx_default_transport(job["trust_bundle"])
    elif kind != "ours":
        raise SystemExit(f"unknown client {kind!r}")
    ours = nomyo_native.SecureChatCompletion(**options)
    return AsyncDriver(lambda model, messages: ours.create(model, messages))


def httpx_default_transport(trust_bundle: str) -> Any:
    """The HTTP library's own transport (TLS in anyio's memory BIO): shows what ours saves."""
    import ssl

    import httpx2

    return httpx2.AsyncHTTPTransport(
        verify=ssl.create_default_context(cafile=trust_bundle),
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=32),
    )


def check_reference_trust(job: dict[str, Any]) -> None:
    """The reference trusts the endpoint through ``SSL_CERT_FILE`` only: checked both ways."""
    import certifi
    import httpx

    def trusted() -> bool:
        try:
            response = httpx.get(f"{job['base_url']}/pki/public_key", timeout=30)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                return False
            raise
        return response.status_code == 200

    os.environ["SSL_CERT_FILE"] = certifi.where()
    assert not trusted(), "the endpoint is trusted without its CA"
    os.environ["SSL_CERT_FILE"] = job["trust_bundle"]
    assert trusted(), "httpx ignored SSL_CERT_FILE"


def check_replies(prompts: list[str], replies: list[str]) -> None:
    for prompt, reply in zip(prompts, replies, strict=True):
        # The echo backend answers with the last user message.
        if reply != prompt:
            raise AssertionError("the endpoint answered another request's prompt")


def warm_up(ask: AsyncDriver | SyncDriver) -> None:
    """Key generation, server key fetch and first connection happen here, untimed."""
    for i in range(WARMUP_REQUESTS):
        prompts = [f"warm-up {i}"]
        check_replies(prompts, ask(prompts))


# ---- plans ----------------------------------------------------------------------------------


def run_timed(ask: AsyncDriver | SyncDriver, scenario: Scenario, meter: Meter) -> None:
    """The scenario's requests, ``concurrency`` at a time, each batch timed by ``meter``."""
    prompts = [scenario.prompt(i) for i in range(scenario.requests)]
    for start in range(0, len(prompts), scenario.concurrency):
        batch = prompts[start : start + scenario.concurrency]
        with meter.timed():
            replies = ask(batch, meter.latencies)
        check_replies(batch, replies)  # outside the timed span


def run_scenarios(job: dict[str, Any]) -> list[dict[str, Any]]:
    ask = make_client(job)
    warm_up(ask)
    yardsticks = Yardsticks(job)
    results = []
    for name in job["plan"]:
        wanted = yardsticks.wanted(name)
        before = {key: yardsticks.measure(key) for key in wanted}
        meter = Meter(job.get("endpoint_pid"))
        run_timed(ask, SCENARIOS[name], meter)
        result = {"scenario": name, **meter.summary()}
        if wanted:
            result["beside"] = {
                key: (ms + yardsticks.measure(key)) / 2 for key, ms in before.items()
            }
        results.append(result)
    return results


# The clients held against ours' figures of a scenario (issues 12 and 14): ours is measured in
# their processes too.
BESIDE_OURS = {
    "ours-sync": ("sequential small requests",),
    "openai": ("sequential small requests",),
}


class Yardsticks:
    """What a scenario of this client is held against, measured in this process just before and
    just after it (the mean of the two), so that a ratio compares figures of the same minute of
    a drifting machine: the pyca floors beside ours (bench_floors.PAIRED_FLOORS), ours beside
    the sync and openai clients. Named ``client/scenario``, as report.py's targets name them."""

    def __init__(self, job: dict[str, Any]) -> None:
        self._job = job
        self._floors: Floors | None = None  # its RSA keys made at the first paired scenario
        self._ours: AsyncDriver | SyncDriver | None = None

    def wanted(self, scenario: str) -> list[str]:
        client = self._job["client"]
        if client == "ours":
            from bench_floors import PAIRED_FLOORS

            return [f"floor/{floor}" for floor in PAIRED_FLOORS.get(scenario, ())]
        return [f"ours/{scenario}"] if scenario in BESIDE_OURS.get(client, ()) else []

    def measure(self, key: str) -> float:
        """CPU per request in ms of the yardstick ``key``, now."""
        client, name = key.split("/", 1)
        if client == "floor":
            if self._floors is None:
                from bench_floors import Floors

                self._floors = Floors()
            return self._floors.measure(name)
        if self._ours is None:
            self._ours = make_client({**self._job, "client": client})
            warm_up(self._ours)
        meter = Meter(None)
        run_timed(self._ours, SCENARIOS[name], meter)
        return float(meter.summary()["cpu_per_request_ms"])


def run_soak(job: dict[str, Any]) -> list[dict[str, Any]]:
    """SOAK_ROUNDS rounds of SOAK_CONCURRENCY concurrent requests of mixed sizes: peak RSS."""
    ask = make_client(job)
    warm_up(ask)
    settled = peak_rss_mib()
    meter = Meter(job.get("endpoint_pid"))
    sizes = soak_sizes()
    for round_ in range(SOAK_ROUNDS):
        # Sizes in a different order each round, so that large and small requests overlap.
        order = sizes[round_ % len(sizes) :] + sizes[: round_ % len(sizes)]
        prompts = [sized_prompt(round_ * 100 + i, size) for i, size in enumerate(order)]
        with meter.timed():
            replies = ask(prompts, meter.latencies)
        check_replies(prompts, replies)
        del prompts, replies
    return [
        {
            "scenario": "soak",
            **meter.summary(),
            "peak_rss_mib": peak_rss_mib(),
            "rss_before_soak_mib": settled,
            "soak_bytes_per_round": sum(sizes),
        }
    ]


def run_first_request(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Client created at start-up, idle a while, then its first request timed."""
    ask = make_client(job)
    time.sleep(FIRST_REQUEST_IDLE_S)
    prompts = [small_prompt(0)]
    started = time.perf_counter()
    replies = ask(prompts)
    elapsed = time.perf_counter() - started
    check_replies(prompts, replies)
    return [
        {
            "scenario": "first request",
            "requests": 1,
            "first_request_ms": 1000 * elapsed,
            "idle_before_s": FIRST_REQUEST_IDLE_S,
        }
    ]


def run_floors(job: dict[str, Any]) -> list[dict[str, Any]]:
    """What the request's cryptography alone costs, with pyca/cryptography (OpenSSL)."""
    from bench_floors import measure_floors

    return measure_floors(job)


def run_core_share(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The core's seal + open alone, on each planned scenario's prompts (see bench_core_share)."""
    from bench_core_share import measure_core_share

    planned = {}
    for name in job["plan"]:
        scenario = SCENARIOS[name]
        prompts = [scenario.prompt(i) for i in range(min(scenario.requests, 8))]
        planned[name] = (prompts, scenario.requests)
    return measure_core_share(planned)


def run_transport_share(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Each planned scenario's wire bytes alone through ours' TLS transport (bench_transport)."""
    from bench_core_share import wire_bytes
    from bench_transport import measure_transport

    sizes = wire_bytes({name: SCENARIOS[name].prompt(0) for name in job["plan"]})
    return measure_transport(
        {name: (*sizes[name], 3 * SCENARIOS[name].requests) for name in job["plan"]}
    )


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    if job["client"] == "reference":
        check_reference_trust(job)
    if job["client"] == "floor":
        results = run_floors(job)
    elif job["client"] == "core":
        results = run_core_share(job)
    elif job["client"] == "tls-transport":
        results = run_transport_share(job)
    elif job["plan"] == ["soak"]:
        results = run_soak(job)
    elif job["plan"] == ["first request"]:
        results = run_first_request(job)
    else:
        results = run_scenarios(job)
    for result in results:
        result["client"] = job["client"]
    json.dump({"results": results, "peak_rss_mib": peak_rss_mib()}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
