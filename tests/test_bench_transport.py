"""benches/bench_transport.py: the TLS transport's share that the bench report splits off."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"
sys.path.insert(0, str(BENCHES))

import bench_transport  # noqa: E402


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    files = bench_transport.write_certificate(tmp_path_factory.mktemp("tls"))
    return files.cert_path, files.key_path, files.ca_path


@pytest.fixture(scope="module")
def peer(certificate: tuple[Path, Path, Path]) -> Iterator[int]:
    cert, key, _ = certificate
    process = subprocess.Popen(
        [sys.executable, str(BENCHES / "bench_transport.py"), "serve", str(cert), str(key)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


def _exchange(port: int, ca: Path, outgoing: int, incoming: int) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
            connection.sendall(bench_transport.HEADER.pack(outgoing, incoming) + b"o" * outgoing)
            answer = bytearray()
            while len(answer) < incoming:
                answer += connection.recv(incoming - len(answer))
            connection.settimeout(0.2)
            with pytest.raises(TimeoutError):  # nothing more than was asked
                connection.recv(1)
            return bytes(answer)


@pytest.mark.parametrize(
    ("outgoing", "incoming"), [(0, 1), (5, 0), (3 * bench_transport.MIB + 7, 70_000)]
)
def test_the_peer_reads_what_the_header_says_and_answers_that_many_bytes(
    peer: int, certificate: tuple[Path, Path, Path], outgoing: int, incoming: int
) -> None:
    if incoming == 0:
        # Nothing comes back: the next exchange on the same connection still lines up.
        context = ssl.create_default_context(cafile=str(certificate[2]))
        with socket.create_connection(("127.0.0.1", peer)) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
                header = bench_transport.HEADER
                connection.sendall(header.pack(outgoing, 0) + b"o" * outgoing)
                connection.sendall(header.pack(2, 3) + b"oo")
                assert connection.recv(10) == b"aaa"
        return
    assert _exchange(peer, certificate[2], outgoing, incoming) == b"a" * incoming


def test_each_scenario_is_measured_in_order_with_its_sizes() -> None:
    rows = bench_transport.measure_transport({"tiny": (10, 20, 3), "larger": (300_000, 5, 2)})
    assert [row["scenario"] for row in rows] == ["tiny", "larger"]
    assert [(row["request_bytes"], row["answer_bytes"], row["requests"]) for row in rows] == [
        (10, 20, 3),
        (300_000, 5, 2),
    ]
    assert all(row["cpu_per_request_ms"] >= 0 for row in rows)
    assert all(row["openssl_cpu_per_request_ms"] >= 0 for row in rows)
    assert {row["tls_library"] for row in rows} == {ssl.OPENSSL_VERSION}
    assert all(row["tls_records_ms_per_mib"] > 0 for row in rows)
    assert all(row["pyca_aes_gcm_ms_per_mib"] > 0 for row in rows)


def test_an_answer_longer_than_asked_fails_the_exchange() -> None:
    async def overrun() -> None:
        exchange = bench_transport._Exchange()
        answered = exchange.expect(10)
        exchange.get_buffer(-1)
        exchange.buffer_updated(11)
        await answered

    with pytest.raises(RuntimeError, match="more than was asked"):
        asyncio.run(overrun())


def test_a_closed_connection_fails_the_exchange_waiting_on_it() -> None:
    async def closed() -> None:
        exchange = bench_transport._Exchange()
        answered = exchange.expect(10)
        exchange.connection_lost(None)
        await answered

    with pytest.raises(ConnectionError):
        asyncio.run(closed())


def test_the_buffer_handed_to_asyncio_is_never_empty() -> None:
    # asyncio's SSL protocol takes a zero-byte read into an empty buffer for EOF.
    async def sizes() -> list[int]:
        exchange = bench_transport._Exchange()
        before = len(exchange.get_buffer(-1))
        answered = exchange.expect(4)
        exchange.buffer_updated(4)
        await answered
        return [before, len(exchange.get_buffer(-1))]

    assert all(size > 0 for size in asyncio.run(sizes()))


# Counts the minor page faults of each exchange after the warm-up, in a fresh process (a test
# run's own heap has long since freed megabytes, which hides the allocator state at issue).
_FAULTS_PER_EXCHANGE = """
import asyncio, resource, sys
sys.path.insert(0, sys.argv[1])
import bench_transport
faults = []
measured = bench_transport._once
async def counted(*args):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    await measured(*args)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
bench_transport._once = counted
size = int(sys.argv[4])
asyncio.run(bench_transport._exchange_cpu(int(sys.argv[2]), sys.argv[3], [(size, size, 6)], True))
print(max(faults[bench_transport.UNTIMED_EXCHANGES:]))
"""


@pytest.mark.parametrize("size", [bench_transport.MIB, 3 * bench_transport.MIB + 5])
def test_the_timed_exchanges_take_no_fresh_pages_as_ours_requests_take_none(
    peer: int, certificate: tuple[Path, Path, Path], size: int
) -> None:
    # Ours' process has freed bodies of a scenario's size before its timed requests; the
    # harness must be in the same state, or glibc serves each of its 256 KiB TLS writes fresh
    # mappings (~460 faults per 1 MiB exchange) that the transport line then charges to ours.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _FAULTS_PER_EXCHANGE,
            str(BENCHES),
            str(peer),
            str(certificate[2]),
            str(size),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # A few pages may still come (the interpreter's own allocations); a 256 KiB write is 64.
    assert int(result.stdout) < 32, result.stdout
