"""A throwaway certificate authority and a loopback server certificate for local HTTPS.

The CA key is discarded once the leaf is signed: nothing else can ever be issued under it,
so trusting ``ca.pem`` means trusting exactly this one server certificate.

:func:`load_or_create_tls_dir` keeps that identity in a directory across restarts (so clients'
trust and pins survive them): it reuses the three files when they are ours, private, and
still fit, creates them when none exist, and refuses anything in between.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nomyo_native.server.private_files import (
    create_private_file,
    ensure_private_dir,
    read_private_file,
)

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "server.pem", "server-key.pem"
# A kept directory serves for a year; a temporary one only lives as long as its endpoint.
KEPT_DAYS = 365


class TlsDirError(Exception):
    """A --tls-dir holds files that cannot be reused as they are."""


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a CA certificate (for clients) and the server's certificate and key."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nomyo-native local endpoint"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_self_signed(
    directory: str | os.PathLike[str], hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 30
) -> TlsFiles:
    """Write new ``ca.pem``, ``server.pem`` and ``server-key.pem`` (0600, ``O_EXCL``) into
    ``directory`` (created 0700, or checked to be private); existing files are never replaced."""
    out = ensure_private_dir(directory, "TLS directory")
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))
    # The CA key signs the leaf and then goes out of scope: it is never written anywhere.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, validity)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = _leaf_certificate(leaf_key.public_key(), hosts, ca_key, ca_cert, validity)

    files = _files_in(out)
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key first: if anything is in the way, nothing public has been written beside it.
    create_private_file(files.key_path, key_pem)
    create_private_file(files.cert_path, leaf_cert.public_bytes(serialization.Encoding.PEM))
    create_private_file(files.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; the leaf signs and agrees keys (ECDHE), nothing else."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_certificate(
    ca_key: ec.EllipticCurvePrivateKey, validity: tuple[datetime.datetime, datetime.datetime]
) -> x509.Certificate:
    """The self-signed CA, allowed to issue end-entity certificates only (path length 0)."""
    ca_name = _name("nomyo-native throwaway CA")
    return (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _leaf_certificate(
    public_key: ec.EllipticCurvePublicKey,
    hosts: tuple[str, ...],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    validity: tuple[datetime.datetime, datetime.datetime],
) -> x509.Certificate:
    """The server certificate for ``hosts``, issued by ``ca_cert``."""
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _files_in(directory: Path) -> TlsFiles:
    return TlsFiles(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)


def load_or_create_tls_dir(
    directory: str | os.PathLike[str], hosts: tuple[str, ...] = DEFAULT_HOSTS
) -> TlsFiles:
    """The endpoint's TLS identity kept in ``directory``: reused when all three files are
    there and fit, made (valid :data:`KEPT_DAYS` days) when none is. Raises
    :class:`TlsDirError` or :class:`UnsafePathError` with what to fix otherwise."""
    out = ensure_private_dir(directory, "--tls-dir")
    files = _files_in(out)
    paths = (files.ca_path, files.cert_path, files.key_path)
    present = [path.name for path in paths if os.path.lexists(path)]
    if not present:
        return make_self_signed(out, hosts, days=KEPT_DAYS)
    if len(present) != len(paths):
        missing = [path.name for path in paths if path.name not in present]
        raise TlsDirError(
            f"--tls-dir {out} holds {', '.join(present)} but not {', '.join(missing)}; "
            "remove the remaining files to make a new CA and certificate"
        )
    _check_reusable(files, hosts)
    return files


def _check_reusable(files: TlsFiles, hosts: tuple[str, ...]) -> None:
    renew = "remove ca.pem, server.pem and server-key.pem to make new ones (clients must then "
    renew += "trust the new ca.pem)"
    try:
        ca = x509.load_pem_x509_certificate(read_private_file(files.ca_path, "CA file"))
        leaf = x509.load_pem_x509_certificate(read_private_file(files.cert_path, "certificate"))
        key = serialization.load_pem_private_key(
            read_private_file(files.key_path, "TLS key"), password=None
        )
    except ValueError as exc:
        raise TlsDirError(
            f"--tls-dir {files.ca_path.parent}: unreadable file ({exc}); {renew}"
        ) from None
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsDirError(f"{files.cert_path} was not issued by {files.ca_path}; {renew}") from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise TlsDirError(f"{files.key_path} is not the key of {files.cert_path}; {renew}")
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise TlsDirError(
            f"{files.cert_path} is valid only from {leaf.not_valid_before_utc:%Y-%m-%d} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}; {renew}"
        )
    missing = [host for host in hosts if not _names(leaf, host)]
    if missing:
        raise TlsDirError(
            f"{files.cert_path} does not name {', '.join(missing)} (needed for this bind "
            f"address); {renew}"
        )


def _names(cert: x509.Certificate, host: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.lower() in (name.lower() for name in san.get_values_for_type(x509.DNSName))
    return address in san.get_values_for_type(x509.IPAddress)
