"""The core's TLS session (``_core.TlsSession``, rustls on aws-lc-rs) against a server made of
Python's ``ssl`` over memory BIOs, in one process: handshakes, data both ways, verification
failures, broken records, and closing."""

from __future__ import annotations

import ctypes
import random
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomyo_native import _core
from nomyo_native._core import _testing

from .tls_peer import (
    BioServer,
    Identity,
    handshake,
    make_identity,
    read_plaintext,
    server_context,
)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return make_identity(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def config(identity: Identity) -> _core.TlsConfig:
    return _core.TlsConfig(identity.ca_pem)


def connected(
    identity: Identity, config: _core.TlsConfig, **server_options: object
) -> tuple[_core.TlsSession, BioServer]:
    session = _core.TlsSession(config, "localhost")
    server = BioServer(identity, **server_options)  # type: ignore[arg-type]
    handshake(session, server)
    return session, server


# ---- handshake and what it negotiated ----------------------------------------------------------


def test_client_hello_is_ready_at_once(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    assert session.handshaking
    hello = session.take_tls()
    assert hello[0] == 0x16 and len(hello) == session.tls_pending + len(hello)
    assert session.tls_pending == 0 and session.take_tls() == b""


def test_tls13_handshake_reports_like_ssl_object(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = connected(identity, config)
    assert not session.handshaking
    assert session.protocol_version == "TLSv1.3" == server.tls.version()
    assert session.cipher_suite == "TLS13_AES_256_GCM_SHA384"
    assert session.cipher_bits == 256
    assert session.peer_certificate() == identity.leaf_der
    assert session.alpn_protocol is None  # the server offered no ALPN


def test_tls12_only_server(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert session.protocol_version == "TLSv1.2" == server.tls.version()
    assert session.cipher_suite is not None and session.cipher_suite.startswith("TLS_ECDHE_")
    session.send(b"over 1.2")
    assert server.read_all(session.take_tls()) == b"over 1.2"


def test_alpn_is_offered_and_reported(identity: Identity) -> None:
    config = _core.TlsConfig(identity.ca_pem, alpn=[b"h2", b"http/1.1"])
    session, server = connected(identity, config, alpn=["http/1.1"])
    assert session.alpn_protocol == "http/1.1" == server.tls.selected_alpn_protocol()


def test_default_alpn_is_http11(identity: Identity, config: _core.TlsConfig) -> None:
    session, _server = connected(identity, config, alpn=["h2", "http/1.1"])
    assert session.alpn_protocol == "http/1.1"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_sessions_of_one_config_resume(identity: Identity, version: ssl.TLSVersion) -> None:
    """The config's resumption cache is shared by its sessions: a second connection to the same
    server resumes (its ticket came with the first connection's data), a new config does not."""
    config = _core.TlsConfig(identity.ca_pem)
    context = server_context(identity, maximum_version=version)
    first, first_server = connected(identity, config, context=context)
    assert not first_server.tls.session_reused
    # TLS 1.3 tickets arrive after the handshake, with the first application data.
    first.receive(first_server.send(b"hello"))
    assert read_plaintext(first) == b"hello"
    second, second_server = connected(identity, config, context=context)
    assert second_server.tls.session_reused
    assert second.peer_certificate() == identity.leaf_der
    second.send(b"resumed")
    assert second_server.read_all(second.take_tls()) == b"resumed"
    _, fresh_server = connected(identity, _core.TlsConfig(identity.ca_pem), context=context)
    assert not fresh_server.tls.session_reused


def test_hello_retry_request(identity: Identity, config: _core.TlsConfig) -> None:
    """A server that takes only P-384 answers the first ClientHello (X25519MLKEM768 and X25519
    key shares) with a HelloRetryRequest; the second ClientHello completes the handshake."""
    context = server_context(identity)
    context.set_ecdh_curve("secp384r1")
    session = _core.TlsSession(config, "localhost")
    server = BioServer(identity, context=context)
    first_hello = session.take_tls()
    retry = server.feed(first_hello)
    session.receive(retry)
    assert session.handshaking and session.tls_pending > 0
    handshake(session, server)
    assert session.protocol_version == "TLSv1.3"
    session.send(b"after a retry")
    assert server.read_all(session.take_tls()) == b"after a retry"


def test_ip_literal_server_name(identity: Identity, config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "127.0.0.1")
    handshake(session, BioServer(identity))
    assert not session.handshaking


# ---- data both ways ----------------------------------------------------------------------------


def test_data_both_ways(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    session.send(b"GET / HTTP/1.1\r\n\r\n")
    assert server.read_all(session.take_tls()) == b"GET / HTTP/1.1\r\n\r\n"
    pending = session.receive(server.send(b"HTTP/1.1 200 OK\r\n\r\n"))
    assert pending == session.plaintext_pending == 19
    assert read_plaintext(session) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert session.plaintext_pending == 0


def test_multi_megabyte_both_ways(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    upload = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of a record
    session.send(upload)
    wire = session.take_tls()
    assert len(wire) > len(upload)
    assert server.read_all(wire) == upload
    download = bytes(reversed(upload))
    records = server.send(download)
    assert session.receive(records) == len(download)
    assert read_plaintext(session, chunk=1 << 20) == download


def test_small_and_large_sends_keep_their_order(
    identity: Identity, config: _core.TlsConfig
) -> None:
    """Large sends are staged slice by slice, small ones stay in rustls until take_tls: mixed
    without a take_tls between them, the peer still reads them in the order sent."""
    session, server = connected(identity, config)
    parts = [b"a" * 10, b"B" * 200_000, b"c" * 3, b"D" * 70_000, b"e" * 65_536]
    for part in parts:
        session.send(part)
    pending = session.tls_pending
    wire = session.take_tls()
    assert len(wire) == pending and session.tls_pending == 0
    assert server.read_all(wire) == b"".join(parts)


def test_send_accepts_any_buffer(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    session.send(bytearray(b"ab"))
    session.send(memoryview(b"xcdx")[1:3])
    assert server.read_all(session.take_tls()) == b"abcd"


@pytest.mark.parametrize("step", [1, 7, 4096, 16 * 1024 + 5])
def test_uneven_feeding(identity: Identity, config: _core.TlsConfig, step: int) -> None:
    session, server = connected(identity, config)
    payload = bytes(range(251)) * 300  # several records
    wire = server.send(payload)
    received = bytearray()
    for start in range(0, len(wire), step):
        session.receive(wire[start : start + step])
        received += read_plaintext(session, chunk=3)
    assert bytes(received) == payload


@pytest.mark.parametrize("seed", range(4))
def test_random_feeding_and_reading_keeps_exact_counts(
    identity: Identity, config: _core.TlsConfig, seed: int
) -> None:
    """Messages of random sizes, their records cut at random points and read out in random
    amounts, interleaved: after every call ``plaintext_pending`` is exactly what was
    authenticated and not yet read, and the bytes come out whole and in order."""
    rng = random.Random(seed)
    session, server = connected(identity, config)
    sent = bytearray()
    wire = bytearray()
    for _ in range(40):
        message = rng.randbytes(rng.choice([1, 100, 5000, 16384, 16385, 70_000]))
        sent += message
        wire += server.send(message)
    # What a prefix of the wire authenticates: the plaintext of its complete records (TLS 1.3,
    # no padding: a record's length less the tag and the inner content type byte).
    offset, records = 0, []
    while offset < len(wire):
        length = int.from_bytes(wire[offset + 3 : offset + 5], "big")
        offset += 5 + length
        records.append((offset, length - 16 - 1))
    assert sum(plain for _, plain in records) == len(sent)
    received, fed = bytearray(), 0
    while fed < len(wire) or session.plaintext_pending:
        if fed < len(wire) and rng.random() < 0.6:
            step = rng.choice([1, 3, 1000, 16 * 1024 + 21, 64 * 1024, 300_000])
            pending = session.receive(bytes(wire[fed : fed + step]))
            fed = min(fed + step, len(wire))
            assert pending == session.plaintext_pending
        else:
            buffer = bytearray(rng.choice([1, 7, 4096, 100_000]))
            n = session.read_into(buffer)
            assert n == min(len(buffer), n + session.plaintext_pending)
            received += buffer[:n]
        authenticated = sum(plain for end, plain in records if end <= fed)
        assert len(received) + session.plaintext_pending == authenticated
    assert bytes(received) == bytes(sent)
    assert session.plaintext_pending == 0


def test_truncated_record_waits_for_the_rest(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    wire = server.send(b"complete only at the end")
    assert session.receive(wire[:-1]) == 0
    assert session.plaintext_pending == 0
    assert session.receive(wire[-1:]) == 24
    assert read_plaintext(session) == b"complete only at the end"


def test_small_read_into_buffers(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    session.receive(server.send(b"0123456789"))
    buffer = bytearray(3)
    parts = []
    while session.plaintext_pending:
        n = session.read_into(buffer)
        parts.append(bytes(buffer[:n]))
    assert parts == [b"012", b"345", b"678", b"9"]
    assert session.read_into(bytearray(0)) == 0


def test_read_into_refuses_read_only_buffers(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    session.receive(server.send(b"kept"))
    with pytest.raises(TypeError, match="writable"):
        session.read_into(b"xxxx")
    assert session.plaintext_pending == 4
    view = memoryview(bytearray(8))
    assert session.read_into(view[2:6]) == 4
    assert bytes(view[2:6]) == b"kept"


def test_receive_refuses_non_buffers(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    with pytest.raises(TypeError):
        session.receive("text")  # type: ignore[arg-type]


# ---- verification failures ---------------------------------------------------------------------


def refused(session: _core.TlsSession, server: BioServer) -> _core.TlsCertificateError:
    with pytest.raises(_core.TlsCertificateError) as caught:
        handshake(session, server)
    return caught.value


def test_unknown_issuer(identity: Identity, tmp_path: Path) -> None:
    other = make_identity(tmp_path)
    session = _core.TlsSession(_core.TlsConfig(other.ca_pem), "localhost")
    server = BioServer(identity)
    error = refused(session, server)
    assert error.reason == "UnknownIssuer"
    assert isinstance(error, _core.TlsError)
    # The alert for the server is waiting (the server learns why), and the session stays failed.
    assert session.tls_pending > 0
    with pytest.raises(ssl.SSLError, match=r"(?i)unknown ca"):
        server.feed(session.take_tls())
    with pytest.raises(_core.TlsCertificateError):
        session.receive(b"\x16\x03\x03\x00\x01\x00")


@pytest.mark.parametrize("name", ["other.example", "127.0.0.2"])
def test_wrong_name(identity: Identity, config: _core.TlsConfig, name: str) -> None:
    error = refused(_core.TlsSession(config, name), BioServer(identity))
    assert error.reason == "NotValidForName"
    assert name in str(error)


def test_expired_leaf(tmp_path: Path) -> None:
    from .tls_peer import NOW, datetime

    past = (NOW - datetime.timedelta(days=30), NOW - datetime.timedelta(days=1))
    expired = make_identity(tmp_path, validity=past)
    session = _core.TlsSession(_core.TlsConfig(expired.ca_pem), "localhost")
    assert refused(session, BioServer(expired)).reason == "Expired"


def test_not_yet_valid_leaf(tmp_path: Path) -> None:
    from .tls_peer import NOW, datetime

    future = (NOW + datetime.timedelta(days=1), NOW + datetime.timedelta(days=30))
    early = make_identity(tmp_path, validity=future)
    session = _core.TlsSession(_core.TlsConfig(early.ca_pem), "localhost")
    assert refused(session, BioServer(early)).reason == "NotValidYet"


def test_ca_certificate_as_leaf(tmp_path: Path) -> None:
    ca_leaf = make_identity(tmp_path, leaf_is_ca=True)
    session = _core.TlsSession(_core.TlsConfig(ca_leaf.ca_pem), "localhost")
    error = refused(session, BioServer(ca_leaf))
    # webpki's own refusal, which rustls's CertificateError has no variant for.
    assert error.reason == "Other"
    assert "CaUsedAsEndEntity" in str(error)


def test_garbage_instead_of_server_hello(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    session.take_tls()
    with pytest.raises(_core.TlsError) as caught:
        session.receive(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert not isinstance(caught.value, _core.TlsCertificateError)
    with pytest.raises(_core.TlsError):
        session.receive(b"")


# ---- broken records after the handshake --------------------------------------------------------


def test_tampered_record_fails_for_good(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    wire = bytearray(server.send(b"secret payload that must not come out"))
    wire[-5] ^= 0x01
    with pytest.raises(_core.TlsError) as caught:
        session.receive(bytes(wire))
    assert "secret" not in str(caught.value)
    assert session.plaintext_pending == 0
    with pytest.raises(_core.TlsError):
        session.receive(server.send(b"more"))
    with pytest.raises(_core.TlsError):
        session.send(b"anything")
    with pytest.raises(_core.TlsError):
        session.read_into(bytearray(16))


def test_records_before_a_failure_are_handed_over(
    identity: Identity, config: _core.TlsConfig
) -> None:
    """Records authenticated before a forged one in the same receive are not lost: the failure
    is raised at once, their plaintext is still read out, and only then does read_into fail."""
    session, server = connected(identity, config)
    good = server.send(b"the answer") + server.send(b"x" * 40_000)
    forged = bytearray(server.send(b"forged"))
    forged[-3] ^= 0x40
    with pytest.raises(_core.TlsError):
        session.receive(good + bytes(forged))
    assert session.plaintext_pending == 10 + 40_000
    assert read_plaintext(session, chunk=7) == b"the answer" + b"x" * 40_000
    with pytest.raises(_core.TlsError):
        session.read_into(bytearray(16))
    with pytest.raises(_core.TlsError):
        session.receive(b"")


# ---- closing -----------------------------------------------------------------------------------


def test_peer_close_notify(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    data = server.send(b"last words")
    try:
        server.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    assert not session.peer_closed
    session.receive(data + server.outgoing.read())
    assert session.peer_closed
    assert read_plaintext(session) == b"last words"


def test_close_emits_close_notify(identity: Identity, config: _core.TlsConfig) -> None:
    session, server = connected(identity, config)
    with pytest.raises(ssl.SSLWantReadError):
        server.tls.read(10)  # nothing yet: the connection is open
    session.close()
    session.close()  # idempotent
    server.incoming.write(session.take_tls())
    # A clean close_notify: the ssl module reads it as the end of the stream.
    assert server.tls.read(10) == b""
    with pytest.raises(_core.TlsError):
        session.send(b"after close")


def test_send_before_handshake_end(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    with pytest.raises(_core.TlsError, match="handshake"):
        session.send(b"too early")


# ---- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "bad name", "a..b", "under_score/"])
def test_bad_server_name(config: _core.TlsConfig, name: str) -> None:
    with pytest.raises(ValueError, match="server_name"):
        _core.TlsSession(config, name)


@pytest.mark.parametrize(
    "pem",
    [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_unusable_roots(pem: bytes) -> None:
    with pytest.raises(ValueError, match="no usable CA certificate"):
        _core.TlsConfig(pem)


def test_roots_skip_other_blocks(identity: Identity, tmp_path: Path) -> None:
    other = make_identity(tmp_path)
    junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    config = _core.TlsConfig(key + identity.ca_pem + junk + other.ca_pem)
    assert config.root_count == 2
    handshake(_core.TlsSession(config, "localhost"), BioServer(other))


def test_alpn_must_be_bytes(identity: Identity) -> None:
    with pytest.raises(TypeError):
        _core.TlsConfig(identity.ca_pem, alpn=["http/1.1"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _core.TlsConfig(identity.ca_pem, alpn=b"http/1.1")
    with pytest.raises(ValueError):
        _core.TlsConfig(identity.ca_pem, alpn=[b""])


# ---- threads -----------------------------------------------------------------------------------


def test_large_receive_releases_the_gil(identity: Identity, config: _core.TlsConfig) -> None:
    """While one thread's session decrypts megabytes, another thread runs Python and uses its
    own session. The witness is not a clock: the other thread finds the first session borrowed
    (pyo3 refuses a second borrow), which it can only see while the first thread is inside
    ``receive`` with the GIL released."""
    big, big_server = connected(identity, config)
    small, small_server = connected(identity, config)
    wire = big_server.send(bytes(4 << 20))
    inside_seen = threading.Event()
    finished = threading.Event()
    small_rounds = 0

    def other_thread() -> None:
        nonlocal small_rounds
        while not finished.is_set():
            small.send(b"ping")
            assert small_server.read_all(small.take_tls()) == b"ping"
            small_rounds += 1
            try:
                big.plaintext_pending  # noqa: B018 - the borrow is the probe
            except RuntimeError:
                inside_seen.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        for _ in range(50):
            big.receive(wire)
            read_plaintext(big, chunk=1 << 20)
            if inside_seen.is_set():
                break
            wire = big_server.send(bytes(4 << 20))
    finally:
        finished.set()
        thread.join()
    assert inside_seen.is_set() and small_rounds > 0


# ---- receive_into: decrypted straight into the caller's buffer --------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_receive_into_keeps_order_and_exact_counts(
    identity: Identity, config: _core.TlsConfig, seed: int
) -> None:
    """``receive_into``, ``receive`` and ``read_into`` interleaved at random, records cut at
    random points, buffers of random sizes (empty too): what waits comes out first, each call
    writes at most its buffer, and after every call what was written plus what waits is
    exactly the plaintext of the complete records fed."""
    rng = random.Random(seed)
    session, server = connected(identity, config)
    sent, wire = bytearray(), bytearray()
    for _ in range(30):
        message = rng.randbytes(rng.choice([1, 100, 16384, 16385, 70_000]))
        sent += message
        wire += server.send(message)
    offset, records = 0, []
    while offset < len(wire):
        length = int.from_bytes(wire[offset + 3 : offset + 5], "big")
        offset += 5 + length
        records.append((offset, length - 16 - 1))
    received, fed = bytearray(), 0
    while fed < len(wire) or session.plaintext_pending:
        step = rng.choice([1, 5, 4096, 16 * 1024 + 22, 64 * 1024, 300_000])
        piece = bytes(wire[fed : fed + step])
        roll = rng.random()
        if fed < len(wire) and roll < 0.5:
            buffer = bytearray(rng.choice([0, 1, 7, 16 * 1024, 100_000, 1 << 20]))
            n = session.receive_into(piece, memoryview(buffer))
            assert 0 <= n <= len(buffer)
            received += buffer[:n]
            fed = min(fed + step, len(wire))
        elif fed < len(wire) and roll < 0.7:
            session.receive(piece)
            fed = min(fed + step, len(wire))
        else:
            buffer = bytearray(rng.choice([1, 4096, 100_000]))
            received += buffer[: session.read_into(buffer)]
        authenticated = sum(plain for end, plain in records if end <= fed)
        assert len(received) + session.plaintext_pending == authenticated
    assert bytes(received) == bytes(sent)


RECORD = 16 * 1024


def view_at_page_offset(length: int, offset: int) -> tuple[bytearray, memoryview]:
    """A view of ``length`` bytes of a new buffer, starting ``offset`` bytes into a page."""
    buffer = bytearray(length + 2 * 4096)
    address = ctypes.addressof((ctypes.c_char * 1).from_buffer(buffer))
    start = (-address) % 4096 + offset
    return buffer, memoryview(buffer)[start : start + length]


@pytest.fixture
def rustls_records() -> Iterator[None]:
    """Sessions keep rustls's record layer (the core's own takes TLS 1.3 ones over after their
    first answer: tests/core/test_tls_records.py)."""
    before = _testing.keep_rustls_records(True)
    try:
        yield
    finally:
        _testing.keep_rustls_records(before)


@pytest.mark.parametrize("offset", [0, 1, 8, 15, 16, 64, 2048, 4095])
def test_receive_into_copies_around_the_slow_page_offsets(
    identity: Identity, config: _core.TlsConfig, offset: int, rustls_records: None
) -> None:
    """Each whole record's plaintext sits at the start of a page in rustls (the core's
    allocator's record blocks). A destination 1-15 bytes past that, in page offset, would run
    the copy at a twentieth of its speed: those copies go through a scratch buffer, byte for
    byte the same."""
    session, server = connected(identity, config)
    payload = random.Random(offset).randbytes(12 * RECORD)
    _buffer, view = view_at_page_offset(len(payload), offset)
    before = _testing.plaintext_copies_bounced()
    assert session.receive_into(server.send(payload), view) == len(payload)
    assert bytes(view) == payload
    bounced = _testing.plaintext_copies_bounced() - before
    assert bounced == (12 if 1 <= offset <= 15 else 0)


def test_receive_into_fills_the_buffer_and_leaves_the_rest_waiting(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = connected(identity, config)
    payload = bytes(range(256)) * 1000
    buffer = bytearray(100_000)
    assert session.receive_into(server.send(payload), buffer) == 100_000
    assert bytes(buffer) == payload[:100_000]
    assert session.plaintext_pending == len(payload) - 100_000
    # What waits comes before what a later call decrypts.
    buffer = bytearray(len(payload))
    assert session.receive_into(server.send(b"after"), buffer) == len(payload) - 100_000 + 5
    assert bytes(buffer[: len(payload) - 100_000 + 5]) == payload[100_000:] + b"after"
    assert session.plaintext_pending == 0


def test_receive_into_a_failure_says_what_was_written(
    identity: Identity, config: _core.TlsConfig
) -> None:
    """The records before a forged one are authentic: the TlsError tells how much of them is in
    the buffer, the rest waits for read_into, and only then does the session refuse."""
    session, server = connected(identity, config)
    good = server.send(b"the answer") + server.send(b"x" * 40_000)
    forged = bytearray(server.send(b"forged"))
    forged[-3] ^= 0x40
    buffer = bytearray(30_000)
    with pytest.raises(_core.TlsError) as caught:
        session.receive_into(good + bytes(forged), buffer)
    written = caught.value.written  # type: ignore[attr-defined]
    assert 0 < written <= len(buffer)
    assert "forged" not in str(caught.value)
    rest = read_plaintext(session, chunk=7)
    assert bytes(buffer[:written]) + rest == b"the answer" + b"x" * 40_000
    with pytest.raises(_core.TlsError) as again:
        session.receive_into(server.send(b"more"), bytearray(16))
    assert again.value.written == 0  # type: ignore[attr-defined]


def test_receive_into_refuses_overlapping_or_read_only_buffers(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = connected(identity, config)
    wire = bytearray(server.send(b"kept"))
    with pytest.raises(ValueError, match="share memory"):
        session.receive_into(wire, wire)
    view = memoryview(wire)
    with pytest.raises(ValueError, match="share memory"):
        session.receive_into(view[:10], view[8:])
    with pytest.raises(TypeError, match="writable"):
        session.receive_into(bytes(wire), b"xxxx")
    assert session.plaintext_pending == 0  # nothing was taken by a refused call
    assert session.receive_into(bytes(wire), bytearray(8)) == 4


def test_receive_into_after_close_notify_discards_the_rest(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = connected(identity, config)
    data = server.send(b"last words")
    try:
        server.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    buffer = bytearray(64)
    assert (
        session.receive_into(data + server.outgoing.read() + b"\x17\x03\x03\x00\x05junk", buffer)
        == 10
    )
    assert bytes(buffer[:10]) == b"last words"
    assert session.peer_closed
    assert session.plaintext_pending == 0


def test_receive_into_with_records_split_at_every_boundary(
    identity: Identity, config: _core.TlsConfig
) -> None:
    """Two records cut in two at every offset (inside a header, a body, a tag, between them):
    each part's ``receive_into`` writes exactly the records completed so far, in order."""
    session, server = connected(identity, config)
    first, second = b"A" * 40, b"B" * 25
    first_record = 5 + len(first) + 1 + 16  # header, content, its type, the tag
    size = first_record + 5 + len(second) + 1 + 16
    for cut in range(size + 1):
        wire = server.send(first) + server.send(second)
        assert len(wire) == size
        head, tail = bytearray(128), bytearray(128)
        got_head = session.receive_into(wire[:cut], head)
        assert got_head == (40 if cut >= first_record else 0) + (25 if cut == size else 0)
        got_tail = session.receive_into(wire[cut:], tail)
        assert bytes(head[:got_head]) + bytes(tail[:got_tail]) == first + second
        assert session.plaintext_pending == 0
