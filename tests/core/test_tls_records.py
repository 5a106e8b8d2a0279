"""The core's own TLS 1.3 record layer (``rust/src/tls_records.rs``) against OpenSSL's, the ssl
module's over memory BIOs: it takes a session over from rustls after the session's first
answer, then opens the server's records straight into the caller's buffer and seals the
client's. The server's traffic secret (its key log) lets a test forge the records OpenSSL will
not send on demand: a KeyUpdate."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from nomyo_native import _core
from nomyo_native._core import _testing

from .tls_peer import BioServer, Identity, handshake, make_identity, read_plaintext, server_context


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return make_identity(tmp_path_factory.mktemp("tls-records"))


@pytest.fixture
def config(identity: Identity) -> _core.TlsConfig:
    # One per test: a server that updates its keys changes what its config's sessions do.
    return _core.TlsConfig(identity.ca_pem)


def connected(
    identity: Identity, config: _core.TlsConfig, context: ssl.SSLContext | None = None
) -> tuple[_core.TlsSession, BioServer]:
    session = _core.TlsSession(config, "localhost")
    server = BioServer(identity, context=context)
    handshake(session, server)
    return session, server


def answered(session: _core.TlsSession, server: BioServer, answer: bytes) -> None:
    session.receive(server.send(answer))
    assert read_plaintext(session) == answer


def taken_over(
    identity: Identity, config: _core.TlsConfig, context: ssl.SSLContext | None = None
) -> tuple[_core.TlsSession, BioServer]:
    """A session past its first answer (rustls's, with the server's tickets before it) and the
    start of its second, where the core's layer takes over."""
    session, server = connected(identity, config, context)
    answered(session, server, b"first answer")
    assert session.record_layer == "rustls"
    before = _testing.tls_sessions_taken_over()
    answered(session, server, b"second answer")
    assert session.record_layer == "core"
    assert _testing.tls_sessions_taken_over() == before + 1
    return session, server


def test_megabytes_both_ways_after_the_take_over(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = connected(identity, config)
    negotiated = (
        session.protocol_version,
        session.cipher_suite,
        session.cipher_bits,
        session.alpn_protocol,
        session.peer_certificate(),
    )
    answered(session, server, b"first answer")
    upload = random.Random(1).randbytes(3 * (1 << 20) + 7)
    session.send(upload)  # still rustls's records: it takes over on receiving
    assert server.read_all(session.take_tls()) == upload
    download = random.Random(2).randbytes(3 * (1 << 20) + 11)
    wire = server.send(download)
    body = bytearray(len(download))
    written = 0
    for start in range(0, len(wire), 1 << 20):
        written += session.receive_into(wire[start : start + (1 << 20)], memoryview(body)[written:])
    assert session.record_layer == "core"
    assert written == len(download) and body == download
    session.send(upload)  # the core's records now
    assert server.read_all(session.take_tls()) == upload
    assert negotiated == (
        session.protocol_version,
        session.cipher_suite,
        session.cipher_bits,
        session.alpn_protocol,
        session.peer_certificate(),
    )
    assert session.protocol_version == "TLSv1.3"


def test_content_past_the_buffer_waits_in_order(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = taken_over(identity, config)
    payload = random.Random(3).randbytes(100_000)
    wire = server.send(payload)
    buffer = bytearray(30_001)
    assert session.receive_into(wire, buffer) == len(buffer)
    assert session.plaintext_pending == len(payload) - len(buffer)
    assert bytes(buffer) + read_plaintext(session, chunk=4_097) == payload


def test_records_split_anywhere_arrive_whole(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = taken_over(identity, config)
    rng = random.Random(4)
    payloads = [rng.randbytes(n) for n in (1, 300, 16_384, 17_000, 5)]
    wire = b"".join(server.send(p) for p in payloads)
    got = bytearray()
    for i in range(0, 600):  # byte by byte through the first records' headers and bodies
        session.receive(wire[i : i + 1])
        got += read_plaintext(session)
    rest = wire[600:]
    while rest:
        step = rng.randrange(1, 9_000)
        session.receive(rest[:step])
        got += read_plaintext(session, chunk=rng.randrange(1, 20_000))
        rest = rest[step:]
    assert bytes(got) == b"".join(payloads)


def test_the_take_over_waits_for_output_and_a_record_boundary(
    identity: Identity, config: _core.TlsConfig
) -> None:
    """rustls keeps the records while its own output waits, and gives them up only between two
    records: never with part of one in its buffer."""
    session, server = connected(identity, config)
    session.send(b"a request not yet taken")
    answered(session, server, b"first answer" * 3000)  # records of rustls's, output waiting
    assert session.record_layer == "rustls"
    assert server.read_all(session.take_tls()) == b"a request not yet taken"
    session.send(b"another request")
    payload = random.Random(5).randbytes(200_000)
    wire = server.send(payload)
    session.receive(wire[:1000])  # inside the first record, with output waiting
    got = bytearray(read_plaintext(session))
    assert server.read_all(session.take_tls()) == b"another request"
    for start in range(1000, len(wire), 1000):  # pieces that end inside records
        session.receive(wire[start : start + 1000])
        got += read_plaintext(session)
    assert session.record_layer == "core"
    assert bytes(got) == payload


def test_tls12_sessions_keep_rustls(identity: Identity, config: _core.TlsConfig) -> None:
    context = server_context(identity, maximum_version=ssl.TLSVersion.TLSv1_2)
    session, server = connected(identity, config, context)
    for answer in (b"one", b"two", b"three" * 10_000):
        answered(session, server, answer)
    assert session.protocol_version == "TLSv1.2"
    assert session.record_layer == "rustls"


@pytest.fixture
def rustls_records() -> Iterator[None]:
    before = _testing.keep_rustls_records(True)
    try:
        yield
    finally:
        _testing.keep_rustls_records(before)


def test_the_testing_switch_keeps_rustls(
    identity: Identity, config: _core.TlsConfig, rustls_records: None
) -> None:
    session, server = connected(identity, config)
    for answer in (b"one", b"two", b"three"):
        answered(session, server, answer)
    assert session.record_layer == "rustls"


def test_a_forged_record_after_the_take_over(identity: Identity, config: _core.TlsConfig) -> None:
    """The records before the forged one are handed over, nothing of the forged one stays in
    the buffer, the session is over, and OpenSSL reads the alert the core sealed for it."""
    session, server = taken_over(identity, config)
    secret = b"unauthenticated " * 1000
    good = server.send(b"the answer")
    forged = bytearray(server.send(secret))
    forged[-20] ^= 0x01
    more = server.send(b"more")
    buffer = bytearray(40_000)
    with pytest.raises(_core.TlsError) as caught:
        session.receive_into(good + bytes(forged), buffer)
    written = caught.value.written  # type: ignore[attr-defined]
    assert bytes(buffer[:written]) == b"the answer"
    assert not any(buffer[written:]), "the forged record's bytes were wiped"
    assert "unauthenticated" not in str(caught.value)
    assert session.tls_pending > 0
    server.incoming.write(session.take_tls())
    with pytest.raises(ssl.SSLError, match=r"(?i)bad.record.mac"):
        server.tls.read(10)
    with pytest.raises(_core.TlsError):
        session.send(b"anything")
    with pytest.raises(_core.TlsError):
        session.receive(more)


def test_close_notify_both_ways_after_the_take_over(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = taken_over(identity, config)
    data = server.send(b"last words")
    with pytest.raises(ssl.SSLWantReadError):
        server.tls.unwrap()
    assert not session.peer_closed
    session.receive(data + server.outgoing.read() + b"\x17\x03\x03\x00\x20 ignored after the end")
    assert session.peer_closed
    assert read_plaintext(session) == b"last words"
    session.send(b"a reply after the server's close")  # a half-closed stream still sends
    session.close()
    server.incoming.write(session.take_tls())
    assert server.tls.read(100) == b"a reply after the server's close"
    with pytest.raises(ssl.SSLZeroReturnError):  # our close_notify, after the server's own
        server.tls.read(10)


def test_close_emits_close_notify_after_the_take_over(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = taken_over(identity, config)
    with pytest.raises(ssl.SSLWantReadError):
        server.tls.read(10)  # nothing yet: the connection is open
    session.close()
    session.close()  # idempotent
    server.incoming.write(session.take_tls())
    assert server.tls.read(10) == b""  # a clean close_notify: the end of the stream
    with pytest.raises(_core.TlsError):
        session.send(b"after close")


# ---- a key update, forged with the server's own traffic secret -----------------------------


def expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1), SHA-384."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(hashes.SHA384(), length, info).derive(secret)


class ServerRecords:
    """Records sealed with the server's application traffic key, as OpenSSL would."""

    def __init__(self, key_log: Path, seq: int) -> None:
        line = next(
            line
            for line in key_log.read_text().splitlines()
            if line.startswith("SERVER_TRAFFIC_SECRET_0 ")
        )
        secret = bytes.fromhex(line.split()[2])
        self.aead = AESGCM(expand_label(secret, b"key", 32))
        self.iv = expand_label(secret, b"iv", 12)
        self.seq = seq

    def seal(self, content_type: int, content: bytes) -> bytes:
        inner = content + bytes([content_type])
        header = bytes([23, 3, 3]) + (len(inner) + 16).to_bytes(2, "big")
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"), strict=True))
        self.seq += 1
        return header + self.aead.encrypt(nonce, inner, header)


def test_a_key_update_ends_the_session_and_the_config_keeps_rustls_after(
    identity: Identity, config: _core.TlsConfig, tmp_path: Path
) -> None:
    context = server_context(identity)
    context.num_tickets = 0  # the server's records are then its answers only
    context.keylog_filename = str(tmp_path / "keys.log")
    session, _server = taken_over(identity, config, context)
    assert session.cipher_suite == "TLS13_AES_256_GCM_SHA384"
    forger = ServerRecords(tmp_path / "keys.log", seq=2)  # after the two answers
    # The forger's key is the server's: its application data goes through.
    session.receive(forger.seal(23, b"sealed by the test"))
    assert read_plaintext(session) == b"sealed by the test"
    with pytest.raises(_core.TlsError, match="updated its TLS keys"):
        session.receive(forger.seal(22, bytes([24, 0, 0, 1, 0])))
    # This config's later sessions keep rustls's layer, which follows key updates.
    again, again_server = connected(identity, config, context)
    for answer in (b"one", b"two", b"three"):
        answered(again, again_server, answer)
    assert again.record_layer == "rustls"
    # Another config is not affected.
    fresh, _fresh_server = taken_over(identity, _core.TlsConfig(identity.ca_pem), context)
    assert fresh.record_layer == "core"
