"""The TLS transport's share of each single-request scenario: its bytes alone, through asyncio.

``bench_core_share`` splits a scenario's client CPU into the core's seal + open and the rest;
this splits the rest once more. Each scenario's wire bytes (the sealed request out, the
endpoint's answer in, sized by the core and the endpoint's own code) cross loopback TLS to a
bare TLS peer in a process of its own (its CPU is not counted), over the transport ours uses:
the core's TLS session under asyncio (``_asyncio_core_tls``). The same bytes through asyncio's
own SSL transport (the interpreter's ``ssl``, what a caller's ``SSLContext`` gets) are measured
beside it. What is left of ours' CPU after the core and this is HTTP, the protocol around the
core, and the hand-offs between threads.

It also measures how fast the interpreter's OpenSSL encrypts TLS records (a 1 MiB write through
memory BIOs: AES-GCM and the BIO copies) beside pyca/cryptography's AES-256-GCM, whose speed the
floors assume: a TLS library slower than the floors' AES is a cost no client code can remove.

Run by ``e2e_worker.py`` (client ``tls-transport``); ``python bench_transport.py serve CERT KEY``
is the peer: it prints its port, then per connection answers each 16-byte header (two
big-endian u64: bytes it will receive, bytes to send back) after reading that many bytes.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nomyo_native._asyncio_core_tls import start_core_tls
from nomyo_native._core_tls import CoreTlsContext
from nomyo_native.server.tls import TlsFiles, make_self_signed

HEADER = struct.Struct(">QQ")
# Ours writes bodies in slices of this size (nomyo_native's drained writes).
WRITE_SLICE = 256 * 1024
# Exchanges of each size made before the timed ones (see `_exchange_cpu`).
UNTIMED_EXCHANGES = 2
MIB = 1024 * 1024
RECORD_REPETITIONS = 40


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_certificate(folder: Path) -> TlsFiles:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, as the local endpoint makes
    them (``folder`` must be private: a fresh temporary directory is)."""
    return make_self_signed(folder, hosts=("127.0.0.1",), days=1)


# ---- the peer -----------------------------------------------------------------------------


def _read_exactly(connection: ssl.SSLSocket, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        count = connection.recv_into(view[got:])
        if count == 0:
            return False
        got += count
    return True


def _answer(connection: ssl.SSLSocket) -> None:
    scratch = bytearray(MIB)
    header = bytearray(HEADER.size)
    answers: dict[int, bytes] = {}
    with connection:
        while _read_exactly(connection, memoryview(header)):
            incoming, outgoing = HEADER.unpack(header)
            while incoming:
                part = min(incoming, len(scratch))
                if not _read_exactly(connection, memoryview(scratch)[:part]):
                    return
                incoming -= part
            answer = answers.get(outgoing) or answers.setdefault(outgoing, b"a" * outgoing)
            connection.sendall(answer)


def serve(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        raw, _ = listener.accept()
        connection = context.wrap_socket(raw, server_side=True)
        threading.Thread(target=_answer, args=(connection,), daemon=True).start()


# ---- the client: the core's TLS under asyncio (as ours), or asyncio's SSL transport ----------


class _Exchange(asyncio.BufferedProtocol):
    """Reads each answer straight into one buffer (as ours reads a body of known length)."""

    def __init__(self) -> None:
        # Never hand asyncio an empty buffer: its SSL protocol reads a zero-byte read as EOF
        # (TLS 1.3 session tickets arrive before the first answer).
        self.view = memoryview(bytearray(64 * 1024))
        self.spill = memoryview(bytearray(64 * 1024))
        self.got = self.expected = 0
        self.done: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def expect(self, size: int) -> asyncio.Future[None]:
        if len(self.view) < size:
            self.view = memoryview(bytearray(size))
        self.got, self.expected = 0, size
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.got : self.expected] if self.got < self.expected else self.spill

    def buffer_updated(self, nbytes: int) -> None:
        self.got += nbytes
        if self.got > self.expected and self.done and not self.done.done():
            self.done.set_exception(RuntimeError("the peer sent more than was asked"))
        elif self.got == self.expected and self.done and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done and not self.done.done():
            self.done.set_exception(exc or ConnectionError("the peer closed"))


async def _once(
    transport: asyncio.Transport, exchange: _Exchange, body: memoryview, incoming: int
) -> None:
    """One exchange: the header and ``body`` out in ours' slices, ``incoming`` bytes back."""
    answered = exchange.expect(incoming)
    transport.write(HEADER.pack(len(body), incoming))
    for start in range(0, len(body), WRITE_SLICE):
        transport.write(body[start : start + WRITE_SLICE])
    await answered


async def _connect(port: int, ca: Path, core: bool) -> tuple[asyncio.Transport, _Exchange]:
    """A TLS connection to the peer: over the core's TLS as ours connects (TCP, then the
    handshake over it), or over asyncio's SSL transport."""
    loop = asyncio.get_running_loop()
    if not core:
        context = ssl.create_default_context(cafile=str(ca))
        return await loop.create_connection(
            _Exchange, "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
    tcp, exchange = await loop.create_connection(_Exchange, "127.0.0.1", port)
    tls = await start_core_tls(
        tcp, exchange, CoreTlsContext.from_locations(str(ca), None), "127.0.0.1"
    )
    exchange.transport = tls
    return tls, exchange


async def _exchange_cpu(
    port: int, ca: Path, sizes: list[tuple[int, int, int]], core: bool
) -> list[float]:
    """Per (out, in, repetitions): client CPU in ms per exchange of that many bytes."""
    transport, exchange = await _connect(port, ca, core)
    try:
        figures = []
        for outgoing, incoming, repetitions in sizes:
            body = memoryview(b"r" * outgoing)
            # Ours' process has freed bodies of this size before its timed requests (sealed
            # requests, answers' text), which lifts glibc's threshold for serving an allocation
            # by a fresh mmap above its 256 KiB TLS writes. Freeing one here puts this process
            # in that state: without it each exchange of the 1 MiB scenario faulted in ~460
            # fresh pages, where ours' requests take 0-8 minor faults (`getrusage`).
            freed = bytes(outgoing + incoming)
            del freed
            # Outside: buffers sized. The connection's first answer is rustls's records, the
            # core's own layer takes the second on (as after ours' warm-up requests), and its
            # sends stage their records in a buffer of their own from then on.
            for _ in range(UNTIMED_EXCHANGES):
                await _once(transport, exchange, body, incoming)
            started = _cpu()
            for _ in range(repetitions):
                await _once(transport, exchange, body, incoming)
            figures.append(1000 * (_cpu() - started) / repetitions)
        return figures
    finally:
        transport.close()


# ---- how fast TLS records are encrypted ------------------------------------------------------


def tls_record_ms_per_mib() -> float:
    """CPU per MiB written through the interpreter's ``ssl`` into TLS records (memory BIOs)."""
    with tempfile.TemporaryDirectory() as scratch:
        files = write_certificate(Path(scratch))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(files.cert_path, files.key_path)
        client_context = ssl.create_default_context(cafile=str(files.ca_path))
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client = client_context.wrap_bio(pipes[0], pipes[1], server_hostname="127.0.0.1")
    server = server_context.wrap_bio(pipes[2], pipes[3], server_side=True)
    for _ in range(8):  # the handshake, each side fed the other's output
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        pipes[2].write(pipes[1].read())
        pipes[0].write(pipes[3].read())
    payload = b"p" * MIB
    server.write(payload)
    pipes[3].read()
    started = _cpu()
    for _ in range(RECORD_REPETITIONS):
        server.write(payload)
        pipes[3].read()
    return 1000 * (_cpu() - started) / RECORD_REPETITIONS


def aes_gcm_ms_per_mib() -> float:
    """CPU per MiB of pyca/cryptography's AES-256-GCM (the floors' speed)."""
    aead, payload, nonce = AESGCM(AESGCM.generate_key(256)), b"p" * MIB, bytes(12)
    aead.encrypt(nonce, payload, None)
    started = _cpu()
    for _ in range(RECORD_REPETITIONS):
        aead.encrypt(nonce, payload, None)
    return 1000 * (_cpu() - started) / RECORD_REPETITIONS


def measure_transport(scenarios: dict[str, tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Per scenario (``name -> (request bytes, answer bytes, repetitions)``): client CPU per
    request of moving those bytes through ours' TLS transport (the core's) and through asyncio's
    own, and the interpreter's TLS record speed."""
    record_ms, aes_ms = tls_record_ms_per_mib(), aes_gcm_ms_per_mib()
    with tempfile.TemporaryDirectory() as scratch:
        files = write_certificate(Path(scratch))
        peer = subprocess.Popen(
            [sys.executable, __file__, "serve", str(files.cert_path), str(files.key_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert peer.stdout is not None
            port = int(peer.stdout.readline())
            sizes = list(scenarios.values())
            core = asyncio.run(_exchange_cpu(port, files.ca_path, sizes, core=True))
            openssl = asyncio.run(_exchange_cpu(port, files.ca_path, sizes, core=False))
        finally:
            peer.kill()
            peer.wait()
    return [
        {
            "scenario": name,
            "requests": repetitions,
            "cpu_per_request_ms": ms,
            "openssl_cpu_per_request_ms": openssl_ms,
            "request_bytes": outgoing,
            "answer_bytes": incoming,
            "tls_records_ms_per_mib": record_ms,
            "pyca_aes_gcm_ms_per_mib": aes_ms,
            "tls_library": ssl.OPENSSL_VERSION,
        }
        for (name, (outgoing, incoming, repetitions)), ms, openssl_ms in zip(
            scenarios.items(), core, openssl, strict=True
        )
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(Path(sys.argv[2]), Path(sys.argv[3]))
