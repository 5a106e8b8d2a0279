"""The core's TLS record layer alone: client CPU to take one 1 MiB request's worth of TLS
records in and to put as much out, ``_core.TlsSession`` against ``ssl.SSLObject`` over memory
BIOs (the interpreter's OpenSSL, what asyncio's TLS uses), on the same bytes, alternating.

    .venv/bin/python benches/bench_tls_session.py [--rounds 9] [--bytes 1400000] [--heap]

No sockets: the peer is a memory-BIO server in this process, and only the client's calls are
timed (``time.thread_time``, this thread's CPU). ``--heap`` also reports what live TLS sessions
hold in aws-lc's locked heap. Not a test: figures for the notes and issue 15.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.core.tls_peer import BioServer, Identity, handshake, make_identity

from nomyo_native import _core

SOCKET_READ = 64 * 1024  # what asyncio's selector transport reads at a time
READ_BUFFER = 256 * 1024


class Client(Protocol):
    def receive_all(self, wire: bytes) -> int: ...
    def send_all(self, data: bytes) -> bytes: ...


class CoreClient:
    def __init__(self, identity: Identity, config: _core.TlsConfig) -> None:
        self.session = _core.TlsSession(config, "localhost")
        self.server = BioServer(identity)
        handshake(self.session, self.server)
        self.buffer = bytearray(READ_BUFFER)

    def receive_all(self, wire: bytes) -> int:
        session, buffer, total = self.session, self.buffer, 0
        view = memoryview(wire)
        for start in range(0, len(wire), SOCKET_READ):
            session.receive(view[start : start + SOCKET_READ])
            while session.plaintext_pending:
                total += session.read_into(buffer)
        return total

    def send_all(self, data: bytes) -> bytes:
        self.session.send(data)
        return self.session.take_tls()


class OpenSslClient:
    def __init__(self, identity: Identity) -> None:
        context = ssl.create_default_context(cadata=identity.ca_pem.decode())
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.server = BioServer(identity)
        for _ in range(10):
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.incoming.write(self.server.feed(self.outgoing.read()))
        # The server's Finished-triggered flight (session tickets) belongs to the stream.
        self.incoming.write(self.server.feed(self.outgoing.read()))
        self.buffer = bytearray(READ_BUFFER)

    def receive_all(self, wire: bytes) -> int:
        tls, incoming, buffer, total = self.tls, self.incoming, self.buffer, 0
        view = memoryview(wire)
        for start in range(0, len(wire), SOCKET_READ):
            incoming.write(view[start : start + SOCKET_READ])
            while True:
                try:
                    n = tls.read(READ_BUFFER, buffer)
                except ssl.SSLWantReadError:
                    break
                total += n
        return total

    def send_all(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()


def measure(client: Client, payload: bytes) -> tuple[float, float]:
    """CPU ms of this thread to receive and to send ``payload`` as TLS records."""
    wire = client.server.send(payload)  # type: ignore[attr-defined]
    start = time.thread_time()
    assert client.receive_all(wire) == len(payload)
    received = time.thread_time()
    out = client.send_all(payload)
    sent = time.thread_time()
    assert len(out) > len(payload)
    return (received - start) * 1e3, (sent - received) * 1e3


def heap_report(identity: Identity, config: _core.TlsConfig, sessions: int) -> None:
    def heap() -> dict[str, int]:
        return _core.memory_status()["aws_lc_heap"]  # type: ignore[return-value]

    before = heap()
    live = []
    for _ in range(sessions):
        session = _core.TlsSession(config, "localhost")
        handshake(session, BioServer(identity))
        live.append(session)
    after = heap()
    print(f"aws-lc heap before: {before}")
    print(f"aws-lc heap with {sessions} handshaken sessions: {after}")
    used = after["bytes_locked"] + after["bytes_unlocked"]
    used -= before["bytes_locked"] + before["bytes_unlocked"]
    print(f"  -> {used / sessions:.0f} bytes of heap pages per live session")
    envelopes_alongside(live)


def envelopes_alongside(live: list[_core.TlsSession], requests: int = 25) -> None:
    """``requests`` threads each seal a 1 MiB request and open a 1 MiB response at once, while
    the sessions stay live: none fails, and the heap reports what it had to leave unlocked."""
    import json
    import threading

    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from nomyo_native.server.crypto import ServerKey, seal_response

    server_key = ServerKey.generate()
    server_public = _core.ServerPublicKey.from_pem(server_key.public_key_pem)
    keypair = _core.ClientKeyPair.generate()
    client_public = load_pem_public_key(keypair.public_key_pem.encode())
    text = "x" * (1 << 20)
    body = json.dumps({"content": text}).encode()
    response = seal_response(body, client_public).body  # type: ignore[arg-type]
    barrier = threading.Barrier(requests)
    failures: list[BaseException] = []
    peak: dict[str, int] = {}

    def one_request() -> None:
        try:
            barrier.wait()
            _core.seal({"content": text}, server_public)
            payload, _, _ = _core.open_envelope(response, keypair)
            assert payload["content"] == text
            status = _core.memory_status()["aws_lc_heap"]
            for key, value in status.items():
                peak[key] = max(peak.get(key, 0), int(value))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one_request) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        f"{requests} concurrent 1 MiB seal+open beside {len(live)} sessions: "
        f"failures {failures!r}; heap peak seen {peak}; "
        f"after {_core.memory_status()['aws_lc_heap']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--bytes", type=int, default=1_400_000)
    parser.add_argument("--heap", type=int, default=0, help="report N live sessions' heap use")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        identity = make_identity(Path(directory))
        config = _core.TlsConfig(identity.ca_pem)
        if args.heap:
            heap_report(identity, config, args.heap)
        payload = bytes(range(256)) * (args.bytes // 256)
        clients: dict[str, Client] = {
            "core": CoreClient(identity, config),
            "openssl": OpenSslClient(identity),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, client in clients.items():
                results[name].append(measure(client, payload))
        print(f"{len(payload)} bytes each way, {args.rounds} rounds alternating, median (min)")
        for name, rows in results.items():
            rx = [r for r, _ in rows]
            tx = [t for _, t in rows]
            print(
                f"  {name:8s} receive {statistics.median(rx):6.3f} ms ({min(rx):6.3f})"
                f"  send {statistics.median(tx):6.3f} ms ({min(tx):6.3f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
