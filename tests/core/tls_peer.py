"""A TLS server made of Python's ``ssl`` over memory BIOs, and certificates made by
pyca/cryptography, for driving a ``_core.TlsSession`` in one process without sockets."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nomyo_native import _core

NOW = datetime.datetime.now(datetime.UTC)
VALID = (NOW - datetime.timedelta(days=1), NOW + datetime.timedelta(days=30))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Identity:
    """A CA (its PEM, for the client's trust store) and a server's chain and key files."""

    ca_pem: bytes
    leaf_der: bytes
    cert_path: Path
    key_path: Path


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID[0])
        .not_valid_after(VALID[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_identity(
    directory: Path,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    validity: tuple[datetime.datetime, datetime.datetime] = VALID,
    *,
    leaf_is_ca: bool = False,
) -> Identity:
    """A fresh CA and a leaf for ``hosts`` signed by it (or, with ``leaf_is_ca``, a server
    that presents a second CA certificate, issued by the first, as its own)."""
    # A name of its own: a second CA of the same name would be found as the issuer and fail
    # the signature check (BadSignature) instead of being unknown.
    ca_key, ca_cert = make_ca(f"test CA {uuid.uuid4().hex[:8]}")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    if leaf_is_ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    leaf = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    cert_path.write_bytes(_pem(leaf))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Identity(
        _pem(ca_cert), leaf.public_bytes(serialization.Encoding.DER), cert_path, key_path
    )


def server_context(
    identity: Identity,
    *,
    maximum_version: ssl.TLSVersion | None = None,
    alpn: list[str] | None = None,
) -> ssl.SSLContext:
    """A server context for ``identity`` (share one between servers to resume sessions)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert_path, identity.key_path)
    if maximum_version is not None:
        context.maximum_version = maximum_version
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


class BioServer:
    """One server-side TLS connection over memory BIOs."""

    def __init__(
        self,
        identity: Identity,
        *,
        maximum_version: ssl.TLSVersion | None = None,
        alpn: list[str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if context is None:
            context = server_context(identity, maximum_version=maximum_version, alpn=alpn)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.handshake_done = False

    def feed(self, data: bytes) -> bytes:
        """Give the server the client's bytes; return what it wants to send back."""
        self.incoming.write(data)
        if not self.handshake_done:
            try:
                self.tls.do_handshake()
                self.handshake_done = True
            except ssl.SSLWantReadError:
                pass
        return self.outgoing.read()

    def send(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()

    def read_all(self, data: bytes) -> bytes:
        """Feed TLS bytes and return all the plaintext they carried."""
        self.incoming.write(data)
        chunks = []
        while True:
            try:
                chunk = self.tls.read(1 << 20)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def handshake(session: _core.TlsSession, server: BioServer) -> None:
    """Shuttle bytes until both sides have finished the handshake."""
    for _ in range(10):
        reply = server.feed(session.take_tls())
        if reply:
            session.receive(reply)
        if server.handshake_done and not session.handshaking and session.tls_pending == 0:
            return
    raise AssertionError("the handshake did not finish")


def read_plaintext(session: _core.TlsSession, chunk: int = 1 << 16) -> bytes:
    """Everything the session has waiting, through ``read_into`` of ``chunk`` bytes."""
    out = bytearray()
    buffer = bytearray(chunk)
    while session.plaintext_pending:
        n = session.read_into(buffer)
        assert n > 0
        out += buffer[:n]
    return bytes(out)
