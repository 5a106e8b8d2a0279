"""Issue 11: enrollment checks the EK certificate chain (TCG EK profile) to a trusted CA.

Two swtpm TPMs, each provisioned with its own EK certificate by a test CA (``ekca``), served by
endpoints with their issuers; a second, untrusted CA; and certificates built here to the TCG
profile (empty subject, critical SAN, EKU 2.23.133.8.1) that a web-PKI verifier would refuse.
"""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from nomyo_native.ekcert import (
    EkChainError,
    load_pem_certificates,
    parse_certificate,
    verify_ek_chain,
)
from nomyo_native.enrollment import ENROLLMENT_PATH, enroll
from nomyo_native.server.runner import RunningServer

from .ekca import EkCa, make_ca, provision

TCG_EK_EKU = x509.ObjectIdentifier("2.23.133.8.1")


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[EkCa, EkCa]:
    base = tmp_path_factory.mktemp("ek-cas")
    trusted, untrusted = make_ca(base / "trusted"), make_ca(base / "untrusted")
    provision(untrusted, base / "untrusted-tpm")  # makes the untrusted CA's keys
    return trusted, untrusted


@pytest.fixture(scope="module")
def endpoints(
    server_key: Any, cas: tuple[EkCa, EkCa], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    from tests.conftest import _start

    trusted, _ = cas
    base = tmp_path_factory.mktemp("ek-tpms")
    options = {"tls_self_signed": True, "tpm": "swtpm", "ek_chain": trusted.intermediate}
    with (
        _start(server_key, tpm_state=provision(trusted, base / "a"), **options) as first,
        _start(server_key, tpm_state=provision(trusted, base / "b"), **options) as second,
    ):
        yield first, second


def tls(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_path))


def offer_of(server: RunningServer) -> dict[str, Any]:
    return httpx2.get(server.base_url + ENROLLMENT_PATH, verify=tls(server)).json()


def test_enroll_verifies_the_ek_chain_to_the_trusted_ca(
    endpoints: tuple[RunningServer, RunningServer], cas: tuple[EkCa, EkCa], tmp_path: Path
) -> None:
    first, second = endpoints
    for server in (first, second):
        done = enroll(server.base_url, tmp_path / "pins.json", verify=tls(server),
                      ek_ca=cas[0].root)  # fmt: skip
        assert done.ek_certificate_verified and done.aik_fingerprint == server.aik_fingerprint
    assert len(offer_of(first)["ek_certificate_chain_pem"]) == 2  # the TPM's, its issuer


def test_an_ek_certificate_from_an_untrusted_ca_is_refused(
    endpoints: tuple[RunningServer, RunningServer], cas: tuple[EkCa, EkCa], tmp_path: Path
) -> None:
    first, _ = endpoints
    with pytest.raises(EkChainError, match="does not lead to a trusted CA"):
        enroll(first.base_url, tmp_path / "pins.json", verify=tls(first), ek_ca=cas[1].root)
    assert not (tmp_path / "pins.json").exists()


def _proxy(server: RunningServer, edit: Any) -> httpx2.MockTransport:
    """The genuine server, with its enrollment offer edited on the way."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        url = server.base_url + request.url.path
        if request.method == "GET":
            return httpx2.Response(200, json=edit(offer_of(server)))
        forwarded = httpx2.post(url, content=request.content, verify=tls(server),
                               headers={"content-type": "application/json"})  # fmt: skip
        return httpx2.Response(forwarded.status_code, content=forwarded.content)

    return httpx2.MockTransport(handler)


def _flip_in_leaf(offer: dict[str, Any], offset_from_end: int) -> dict[str, Any]:
    der = bytearray(load_pem_certificates(offer["ek_certificate_chain_pem"][0])[0])
    der[len(der) - offset_from_end] ^= 0x01
    pem = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der)).decode()
    offer["ek_certificate_chain_pem"][0] = pem + "-----END CERTIFICATE-----\n"
    return offer


@pytest.mark.parametrize("offset_from_end", [1, 300])  # in the signature; in the TBS part
def test_a_tampered_ek_certificate_is_refused(
    endpoints: tuple[RunningServer, RunningServer],
    cas: tuple[EkCa, EkCa],
    tmp_path: Path,
    offset_from_end: int,
) -> None:
    first, _ = endpoints
    transport = _proxy(first, lambda offer: _flip_in_leaf(offer, offset_from_end))
    with pytest.raises(EkChainError):
        enroll("https://tampered.test", tmp_path / "p.json", transport=transport,
               ek_ca=cas[0].root)  # fmt: skip


def test_another_tpms_certificate_does_not_vouch_for_this_ek(
    endpoints: tuple[RunningServer, RunningServer], cas: tuple[EkCa, EkCa], tmp_path: Path
) -> None:
    first, second = endpoints
    theirs = offer_of(second)["ek_certificate_chain_pem"]

    def swap(offer: dict[str, Any]) -> dict[str, Any]:
        return dict(offer, ek_certificate_chain_pem=theirs)

    with pytest.raises(EkChainError, match="does not certify the endorsement key offered"):
        enroll("https://swapped.test", tmp_path / "p.json", transport=_proxy(first, swap),
               ek_ca=cas[0].root)  # fmt: skip


def test_a_server_without_an_ek_certificate_cannot_be_enrolled_with_ek_ca(
    cas: tuple[EkCa, EkCa], tmp_path: Path, endpoint_factory: Any
) -> None:
    plain = endpoint_factory(tls_self_signed=True, tpm="swtpm")
    assert "ek_certificate_chain_pem" not in offer_of(plain)
    with pytest.raises(EkChainError, match="serves no EK certificate chain"):
        enroll(plain.base_url, tmp_path / "p.json", verify=tls(plain), ek_ca=cas[0].root)


# ---- the TCG EK profile, on certificates built here -------------------------------------------


def _ca(
    not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test EK root")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert


def _ek_cert(
    ca: tuple[rsa.RSAPrivateKey, x509.Certificate], ek: rsa.RSAPublicKey, **options: Any
) -> bytes:
    now = dt.datetime.now(dt.UTC)
    tpm_attrs = x509.Name([x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.1"), "id:4E4F")])
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca[1].subject)
        .public_key(ek).serial_number(7)
        .not_valid_before(options.get("not_before", now - dt.timedelta(days=1)))
        .not_valid_after(options.get("not_after", now + dt.timedelta(days=10)))
        .add_extension(x509.SubjectAlternativeName([x509.DirectoryName(tpm_attrs)]),
                       critical=True)
    )  # fmt: skip
    if options.get("eku", True):
        builder = builder.add_extension(x509.ExtendedKeyUsage([TCG_EK_EKU]), critical=False)
    if options.get("unknown_critical"):
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"),
            critical=True,
        )
    return builder.sign(ca[0], hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _spki(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_tcg_profile_empty_subject_and_critical_san_are_accepted() -> None:
    ca = _ca()
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    root = ca[1].public_bytes(serialization.Encoding.DER)
    leaf = verify_ek_chain([_ek_cert(ca, ek)], [root], _spki(ek))
    assert leaf.subject == bytes.fromhex("3000")  # the empty Name
    assert leaf.extensions["2.5.29.17"][0] is True  # critical SAN


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eku": False}, "tcg-kp-EKCertificate"),
        ({"unknown_critical": True}, "unknown critical extension"),
        (
            {
                "not_before": dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
                "not_after": dt.datetime(2001, 1, 1, tzinfo=dt.UTC),
            },
            "validity",
        ),
    ],
)
def test_tcg_profile_rules_are_enforced(options: dict[str, Any], message: str) -> None:
    ca = _ca()
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    root = ca[1].public_bytes(serialization.Encoding.DER)
    with pytest.raises(EkChainError, match=message):
        verify_ek_chain([_ek_cert(ca, ek, **options)], [root], _spki(ek))


def test_garbage_certificates_are_refused_with_a_typed_error() -> None:
    ca = _ca()
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    good = _ek_cert(ca, ek)
    root = ca[1].public_bytes(serialization.Encoding.DER)
    for bad in (b"", b"\x30\x83\xff\xff\xff", good[:-10], good + b"\x00", b"\x30\x00" * 5):
        with pytest.raises(EkChainError):
            verify_ek_chain([bad], [root], _spki(ek))
    assert verify_ek_chain([good], [root], _spki(ek)).subject == bytes.fromhex("3000")


def test_mutated_certificates_only_ever_raise_the_typed_error() -> None:
    """The DER reader is bounded: every byte flip, truncation or extension of a real EK
    certificate either verifies or raises EkChainError, nothing else."""
    import random

    ca = _ca()
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    good = _ek_cert(ca, ek)
    root = ca[1].public_bytes(serialization.Encoding.DER)
    rng = random.Random("ek-der")
    for i in range(1500):
        data = bytearray(good)
        at = rng.randrange(len(data))
        if i % 3 == 0:
            data[at] = rng.randrange(256)
        elif i % 3 == 1:
            del data[at:]
        else:
            data[at : at + 1] = bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
        try:
            verify_ek_chain([bytes(data)], [root], _spki(ek))
        except EkChainError:
            pass


def test_der_reader_agrees_with_pyca_on_real_swtpm_certificates(
    endpoints: tuple[RunningServer, RunningServer], cas: tuple[EkCa, EkCa]
) -> None:
    """An independent reading of the same certificates: pyca/cryptography's X.509 parser."""
    chain = [der for pem in offer_of(endpoints[0])["ek_certificate_chain_pem"]
             for der in load_pem_certificates(pem)]  # fmt: skip
    chain += load_pem_certificates(cas[0].root.read_text())
    for der in chain:
        ours = parse_certificate(der)
        theirs = x509.load_der_x509_certificate(der)
        assert ours.subject == theirs.subject.public_bytes()
        assert ours.issuer == theirs.issuer.public_bytes()
        assert ours.not_before == theirs.not_valid_before_utc
        assert ours.not_after == theirs.not_valid_after_utc
        assert ours.tbs == theirs.tbs_certificate_bytes
        assert ours.signature == theirs.signature
        assert ours.sig_alg == theirs.signature_algorithm_oid.dotted_string
        assert ours.spki == theirs.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert {oid: critical for oid, (critical, _) in ours.extensions.items()} == {
            ext.oid.dotted_string: ext.critical for ext in theirs.extensions
        }
        assert (
            ours.is_ca == theirs.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        )


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        pytest.param(dt.timedelta(days=-3650), dt.timedelta(days=-1), id="expired"),
        pytest.param(dt.timedelta(days=1), dt.timedelta(days=3650), id="not-yet-valid"),
    ],
)
def test_an_ek_chain_to_a_trusted_ca_outside_its_validity_is_refused(
    not_before: dt.timedelta, not_after: dt.timedelta
) -> None:
    """A trust anchor past its notAfter (or before its notBefore) vouches for nothing, even when
    the EK certificate it signed is itself within its validity."""
    now = dt.datetime.now(dt.UTC)
    ca = _ca(now + not_before, now + not_after)
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    root = ca[1].public_bytes(serialization.Encoding.DER)
    with pytest.raises(EkChainError, match=r"trusted CA .* validity"):
        verify_ek_chain([_ek_cert(ca, ek)], [root], _spki(ek))


@pytest.mark.parametrize("year", [1950, 1965, 1968])
def test_an_ek_certificate_that_expired_in_the_utctime_1950s_1960s_is_refused(year: int) -> None:
    """UTCTime's two-digit years 50-99 are 1950-1999 (RFC 5280): a certificate that expired in
    1965 must not be read as valid until 2065."""
    ca = _ca()
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    root = ca[1].public_bytes(serialization.Encoding.DER)
    old = {
        "not_before": dt.datetime(year, 1, 1, tzinfo=dt.UTC),
        "not_after": dt.datetime(year, 6, 1, tzinfo=dt.UTC),
    }
    leaf = _ek_cert(ca, ek, **old)
    assert parse_certificate(leaf).not_after.year == year
    with pytest.raises(EkChainError, match="validity"):
        verify_ek_chain([leaf], [root], _spki(ek))
