"""Review: hostile bytes on the wire fed to the core's TLS session (``_core.TlsSession``) in one
process, against an OpenSSL memory-BIO server: oversized, empty and cleartext records, alerts
before and after the handshake, record-level fragmentation, ticket floods, data after
close_notify. Each must end in a typed ``TlsError`` (never a panic, never a hang) or be handled
as the protocol says."""

from __future__ import annotations

import ssl
import struct

import pytest

from core.tls_peer import (
    BioServer,
    Identity,
    handshake,
    make_identity,
    read_plaintext,
    server_context,
)
from nomyo_native import _core


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return make_identity(tmp_path_factory.mktemp("review8-wire"))


@pytest.fixture(scope="module")
def config(identity: Identity) -> _core.TlsConfig:
    return _core.TlsConfig(identity.ca_pem)


def _record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def _records(wire: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    while wire:
        content_type, version, length = struct.unpack("!BHH", wire[:5])
        out.append((content_type, version, wire[5 : 5 + length]))
        wire = wire[5 + length :]
    return out


def _connected(identity: Identity, config: _core.TlsConfig, **options: object):
    session = _core.TlsSession(config, "localhost")
    server = BioServer(identity, **options)  # type: ignore[arg-type]
    handshake(session, server)
    return session, server


def _fails_typed(session: _core.TlsSession, data: bytes) -> _core.TlsError:
    with pytest.raises(_core.TlsError) as caught:
        session.receive(data)
    # Failed for good: the next call raises the same kind.
    with pytest.raises(type(caught.value)):
        session.receive(b"")
    return caught.value


# ---- records the protocol forbids --------------------------------------------------------------


@pytest.mark.parametrize("handshaken", [False, True])
def test_a_record_over_the_limit_is_refused(
    identity: Identity, config: _core.TlsConfig, handshaken: bool
) -> None:
    if handshaken:
        session, _ = _connected(identity, config)
    else:
        session = _core.TlsSession(config, "localhost")
        session.take_tls()
    # rustls refuses a header announcing 2^14 + 2048 bytes or more at once (nothing buffered);
    # between 2^14 + 256 (TLS 1.3's limit) and that, the record is read and fails to decrypt.
    header = struct.pack("!BHH", 23 if handshaken else 22, 0x0303, (1 << 14) + 2048)
    error = _fails_typed(session, header)
    assert "MessageTooLarge" in str(error)


def test_the_largest_legal_record_length_waits_for_its_body(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, _ = _connected(identity, config)
    header = struct.pack("!BHH", 23, 0x0303, (1 << 14) + 256)
    assert session.receive(header + b"\0" * 100) == 0  # incomplete: waits
    error = _fails_typed(session, b"\0" * ((1 << 14) + 156))  # complete, not authentic
    assert "cannot decrypt" in str(error)


@pytest.mark.parametrize("content_type", [23, 22, 21, 24, 0, 0xFF])
def test_an_empty_or_unknown_cleartext_record_after_the_handshake(
    identity: Identity, config: _core.TlsConfig, content_type: int
) -> None:
    session, _ = _connected(identity, config)
    _fails_typed(session, _record(content_type, b""))


def test_a_cleartext_alert_after_the_tls13_handshake_is_refused(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, _ = _connected(identity, config)
    assert session.protocol_version == "TLSv1.3"
    # A forged close_notify in the clear: it must not end the stream as an authentic one would.
    try:
        session.receive(_record(21, b"\x01\x00"))
    except _core.TlsError:
        return
    assert not session.peer_closed


def test_a_heartbeat_before_the_handshake(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    session.take_tls()
    _fails_typed(session, _record(24, b"\x01\x40\x00" + b"\0" * 16))


# ---- alerts before the handshake ends ---------------------------------------------------------


def test_a_fatal_alert_instead_of_server_hello(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    session.take_tls()
    error = _fails_typed(session, _record(21, b"\x02\x28"))
    assert "HandshakeFailure" in str(error)


def test_close_notify_instead_of_server_hello(config: _core.TlsConfig) -> None:
    """rustls neither fails nor reports the peer closed: the handshake is simply not done (the
    drivers' handshake timeout and the socket's end bound the wait); nothing can be sent."""
    session = _core.TlsSession(config, "localhost")
    session.take_tls()
    try:
        session.receive(_record(21, b"\x01\x00"))
    except _core.TlsError:
        return
    assert session.handshaking
    with pytest.raises(_core.TlsError):
        session.send(b"request")


def test_a_flood_of_warning_alerts_before_server_hello(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    session.take_tls()
    # user_canceled warnings, ten thousand of them: refused at some point, never a hang.
    with pytest.raises(_core.TlsError):
        session.receive(_record(21, b"\x01\x5a") * 10_000)


def test_a_flood_of_change_cipher_spec_before_server_hello(config: _core.TlsConfig) -> None:
    session = _core.TlsSession(config, "localhost")
    session.take_tls()
    with pytest.raises(_core.TlsError):
        session.receive(_record(20, b"\x01") * 10_000)


# ---- legal but unusual framing -----------------------------------------------------------------


def test_server_hello_fragmented_into_one_byte_records(
    identity: Identity, config: _core.TlsConfig
) -> None:
    """Handshake messages may span records: a ServerHello cut into 1-byte records is valid."""
    session = _core.TlsSession(config, "localhost")
    server = BioServer(identity)
    flight = server.feed(session.take_tls())
    records = _records(flight)
    assert records[0][0] == 22  # the ServerHello, in the clear
    _, version, body = records[0]
    fragmented = b"".join(_record(22, body[i : i + 1], version) for i in range(len(body)))
    rest = flight[5 + len(body) :]
    session.receive(fragmented + rest)
    handshake(session, server)
    assert not session.handshaking
    session.receive(server.send(b"after a fragmented hello"))
    assert read_plaintext(session) == b"after a fragmented hello"


def test_many_session_tickets(identity: Identity, config: _core.TlsConfig) -> None:
    """A server sending a thousand NewSessionTickets: the session keeps working."""
    context = server_context(identity)
    context.num_tickets = 1000
    session, server = _connected(identity, config, context=context)
    session.receive(server.send(b"x"))
    assert read_plaintext(session) == b"x"


def test_data_after_close_notify_is_not_delivered(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session, server = _connected(identity, config)
    data = server.send(b"before")
    try:
        server.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    notify = server.outgoing.read()
    # A forged or late record after close_notify: the stream ended at close_notify.
    session.receive(data + notify + _record(23, b"\0" * 40))
    assert session.peer_closed
    assert read_plaintext(session) == b"before"


def test_handshake_bytes_fed_one_at_a_time_with_the_first_data(
    identity: Identity, config: _core.TlsConfig
) -> None:
    session = _core.TlsSession(config, "localhost")
    server = BioServer(identity)
    flight = server.feed(session.take_tls())
    for i in range(len(flight)):
        session.receive(flight[i : i + 1])
    handshake(session, server)
    assert not session.handshaking
