"""End to end, side by side: ``nomyo_native`` and the reference ``nomyo==0.2.9`` in one run.

Both clients talk to the same local endpoint, a separate process, over HTTPS with a realistic
trust store: certifi's bundle plus the endpoint's throwaway CA (ours through ``ca_bundle=``,
the reference through ``SSL_CERT_FILE``, which httpx 0.28 honours; checked below). Each client
has its RSA-4096 key pair (the default of both) before anything is timed.

Per scenario and client the benchmark records, in pytest-benchmark's ``extra_info``: client CPU
per request (process user+sys time, every thread, over the requests only), p50/p99 latency,
requests/s and the endpoint's CPU per request. ``benches/report.py`` pairs the two clients,
computes the ratios and the verdict per target of issue 6. Nothing here asserts speed: a
shared 2-core machine makes wall time noisy, so the figures are reported, not enforced.

Run: ``make bench`` (or ``.venv/bin/python -m pytest benches/test_e2e_bench.py --benchmark-only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import httpx
import nomyo
import pytest

import nomyo_native
from e2e_endpoint import EndpointProcess, write_trust_bundle

MODEL = "bench-model"
SEQUENTIAL_REQUESTS = 60
CONCURRENCY = 16
CONCURRENT_BATCHES = 8
MIB_REQUESTS = 20
WARMUP_REQUESTS = 3
MIB = 1024 * 1024

Ask = Callable[[str], Awaitable[str]]


# ---- the endpoint, the trust store and the two clients -------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[EndpointProcess]:
    with EndpointProcess() as running:
        yield running


@pytest.fixture(scope="module")
def trust_bundle(endpoint: EndpointProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trust_bundle(endpoint.ca_path, tmp_path_factory.mktemp("trust") / "bundle.pem")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for a module, as an application has: pooled connections live across requests.
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def reply_of(response: dict[str, Any]) -> str:
    content = response["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    return content


def our_client(
    endpoint: EndpointProcess,
    trust_bundle: Path,
    loop: asyncio.AbstractEventLoop,
    **options: Any,
) -> Iterator[Ask]:
    client = nomyo_native.SecureChatCompletion(
        base_url=endpoint.base_url,
        ca_bundle=trust_bundle,
        server_key_fingerprint=endpoint.fingerprint,
        **options,
    )

    async def ask(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return reply_of(await client.create(MODEL, messages))

    warm_up(loop, ask)
    assert client.client.private_key is not None and client.client.private_key.bits == 4096
    assert client.client.server_key_fingerprint == endpoint.fingerprint
    yield ask
    loop.run_until_complete(client.aclose())


@pytest.fixture(scope="module")
def ours(
    endpoint: EndpointProcess, trust_bundle: Path, loop: asyncio.AbstractEventLoop
) -> Iterator[Ask]:
    yield from our_client(endpoint, trust_bundle, loop)


@pytest.fixture(scope="module")
def ours_httpx_tls(
    endpoint: EndpointProcess, trust_bundle: Path, loop: asyncio.AbstractEventLoop
) -> Iterator[Ask]:
    """Ours on httpx's default transport (TLS in anyio's memory BIO), for the 1 MiB case only:
    shows what nomyo_native.transport saves."""
    transport = httpx.AsyncHTTPTransport(
        verify=ssl.create_default_context(cafile=str(trust_bundle)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=32),
    )
    yield from our_client(endpoint, trust_bundle, loop, transport=transport)


@contextlib.contextmanager
def reference_trust(bundle: Path, base_url: str) -> Iterator[None]:
    """``SSL_CERT_FILE`` = the bundle, after checking that httpx really honours the variable."""
    saved = os.environ.get("SSL_CERT_FILE")
    try:
        os.environ["SSL_CERT_FILE"] = certifi.where()
        assert not httpx_default_trusts(base_url), "the endpoint is trusted without its CA"
        os.environ["SSL_CERT_FILE"] = str(bundle)
        assert httpx_default_trusts(base_url), "httpx ignored SSL_CERT_FILE"
        yield
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved


def httpx_default_trusts(base_url: str) -> bool:
    """Whether httpx with default verification (as nomyo 0.2.9 uses it) accepts the endpoint."""
    try:
        response = httpx.get(f"{base_url}/pki/public_key", timeout=30)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return False
        raise
    return response.status_code == 200


@pytest.fixture(scope="module")
def reference(
    endpoint: EndpointProcess, trust_bundle: Path, loop: asyncio.AbstractEventLoop
) -> Iterator[Ask]:
    with reference_trust(trust_bundle, endpoint.base_url):
        client = nomyo.SecureChatCompletion(base_url=endpoint.base_url)

        async def ask(prompt: str) -> str:
            messages = [{"role": "user", "content": prompt}]
            return reply_of(await client.create(MODEL, messages))

        warm_up(loop, ask)
        assert client.client.private_key.key_size == 4096
        yield ask


def warm_up(loop: asyncio.AbstractEventLoop, ask: Ask) -> None:
    """Key generation, server key fetch and first connection happen here, untimed."""
    for i in range(WARMUP_REQUESTS):
        prompt = f"warm-up {i}"
        assert prompt in loop.run_until_complete(ask(prompt))


# ---- measuring -------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Client CPU and per-request latency over the timed rounds only."""

    loop: asyncio.AbstractEventLoop
    endpoint: EndpointProcess
    cpu: float = 0.0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    replies_checked: int = 0
    _server_cpu_start: float = 0.0
    server_cpu: float = 0.0

    def __post_init__(self) -> None:
        self._server_cpu_start = self.endpoint.cpu_seconds()

    async def _timed(self, ask: Ask, prompt: str) -> str:
        started = time.perf_counter()
        reply = await ask(prompt)
        self.latencies.append(time.perf_counter() - started)
        return reply

    async def _all(self, ask: Ask, prompts: list[str]) -> list[str]:
        return await asyncio.gather(*(self._timed(ask, p) for p in prompts))

    def run(self, ask: Ask, prompts: list[str]) -> None:
        """All ``prompts`` in flight at once (one prompt: a sequential request)."""
        cpu0, wall0 = time.process_time(), time.perf_counter()
        replies = self.loop.run_until_complete(self._all(ask, prompts))
        self.wall += time.perf_counter() - wall0
        self.cpu += time.process_time() - cpu0
        # Checked outside the timed span; the echo backend answers with the last user message.
        for prompt, reply in zip(prompts, replies, strict=True):
            assert prompt in reply, "the endpoint answered another request's prompt"
            self.replies_checked += 1

    def summary(self, client: str, scenario: str) -> dict[str, Any]:
        self.server_cpu = self.endpoint.cpu_seconds() - self._server_cpu_start
        n = len(self.latencies)
        assert n == self.replies_checked and n > 0
        ordered = sorted(self.latencies)
        return {
            "e2e_client": client,
            "e2e_scenario": scenario,
            "requests": n,
            "cpu_per_request_ms": 1000 * self.cpu / n,
            "p50_ms": 1000 * percentile(ordered, 50),
            "p99_ms": 1000 * percentile(ordered, 99),
            "requests_per_s": n / self.wall,
            "server_cpu_per_request_ms": 1000 * self.server_cpu / n,
        }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def small_prompt(i: int) -> str:
    return f"What is the capital of France? (request {i})"


def mib_prompt(i: int) -> str:
    # 1 MiB of plain prose-like ASCII (so characters == bytes), unique per request.
    head = f"request {i}: summarise the following text. "
    words = "the quick brown fox jumps over the lazy dog and keeps running "
    body = (words * (MIB // len(words) + 1))[: MIB - len(head)]
    return head + body


CLIENTS = ("ours", "reference")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> tuple[str, Ask]:
    return request.param, request.getfixturevalue(request.param)


@pytest.fixture(params=(*CLIENTS, "ours_httpx_tls"))
def mib_client(request: pytest.FixtureRequest) -> tuple[str, Ask]:
    return request.param, request.getfixturevalue(request.param)


# ---- scenarios -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="e2e-sequential-small", warmup=False)
def test_sequential_small(
    benchmark: Any,
    client: tuple[str, Ask],
    loop: asyncio.AbstractEventLoop,
    endpoint: EndpointProcess,
) -> None:
    name, ask = client
    recorder = Recorder(loop, endpoint)
    counter = iter(range(SEQUENTIAL_REQUESTS))
    benchmark.pedantic(
        lambda: recorder.run(ask, [small_prompt(next(counter))]),
        rounds=SEQUENTIAL_REQUESTS,
        iterations=1,
    )
    benchmark.extra_info.update(recorder.summary(name, "sequential small requests"))
    assert benchmark.extra_info["requests"] == SEQUENTIAL_REQUESTS


@pytest.mark.benchmark(group="e2e-16-concurrent", warmup=False)
def test_concurrent_16(
    benchmark: Any,
    client: tuple[str, Ask],
    loop: asyncio.AbstractEventLoop,
    endpoint: EndpointProcess,
) -> None:
    name, ask = client
    recorder = Recorder(loop, endpoint)
    batches = iter(range(CONCURRENT_BATCHES))

    def batch() -> None:
        b = next(batches)
        recorder.run(ask, [small_prompt(b * CONCURRENCY + i) for i in range(CONCURRENCY)])

    benchmark.pedantic(batch, rounds=CONCURRENT_BATCHES, iterations=1)
    benchmark.extra_info.update(recorder.summary(name, f"{CONCURRENCY} concurrent requests"))
    assert benchmark.extra_info["requests"] == CONCURRENCY * CONCURRENT_BATCHES


@pytest.mark.benchmark(group="e2e-1MiB-prompt", warmup=False)
def test_mib_prompt(
    benchmark: Any,
    mib_client: tuple[str, Ask],
    loop: asyncio.AbstractEventLoop,
    endpoint: EndpointProcess,
) -> None:
    name, ask = mib_client
    recorder = Recorder(loop, endpoint)
    prompts = iter([mib_prompt(i) for i in range(MIB_REQUESTS)])
    benchmark.pedantic(lambda: recorder.run(ask, [next(prompts)]), rounds=MIB_REQUESTS)
    benchmark.extra_info.update(recorder.summary(name, "1 MiB prompts"))
    assert benchmark.extra_info["requests"] == MIB_REQUESTS
