"""The context that selects the core's TLS (``_core_tls``): its OpenSSL side is exactly what
``ssl.create_default_context`` gives, its core side trusts the same CA file or directory, and
the core's failures become the ``ssl`` errors (and client messages) the OpenSSL path gives."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpcore2
import pytest

from nomyo_native import _core, _core_tls
from nomyo_native._core_tls import (
    CoreTlsContext,
    SessionInfo,
    as_ssl_error,
    read_ca_pem,
    start_session,
)
from nomyo_native._protocol import connection_error
from nomyo_native._retry import tls_verification_failure

from .tls_certs import Authority


def subject_hash(path: Path) -> str:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command (Debian package openssl) names capath files"
    done = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


# ---- the context -----------------------------------------------------------------------------


def test_the_openssl_side_is_what_create_default_context_gives(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    ca = Authority.create(tmp_path)
    ours = CoreTlsContext.from_locations(str(ca.path), None)
    reference = ssl.create_default_context(cafile=str(ca.path))
    for attribute in (
        "protocol",
        "verify_mode",
        "check_hostname",
        "hostname_checks_common_name",
        "options",
        "verify_flags",
        "minimum_version",
        "maximum_version",
        "post_handshake_auth",
        "keylog_filename",
    ):
        assert getattr(ours, attribute) == getattr(reference, attribute), attribute
    assert ours.get_ca_certs() == reference.get_ca_certs()
    assert ours.core_config.root_count == 1


def test_a_bundle_gives_every_certificate_to_the_core(tmp_path):
    first, second = (
        Authority.create(tmp_path / "a", "CA A"),
        Authority.create(tmp_path / "b", "CA B"),
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first.path.read_bytes() + b"# a comment\n" + second.path.read_bytes())
    context = CoreTlsContext.from_locations(str(bundle), None)
    assert context.core_config.root_count == 2
    assert len(context.get_ca_certs()) == 2


@pytest.mark.linux_only
def test_a_ca_directory_gives_the_core_each_hashed_file_once(tmp_path):
    a = Authority.create(tmp_path / "a", "CA A")
    b = Authority.create(tmp_path / "b", "CA B")
    c = Authority.create(tmp_path / "c", "CA C")
    directory = tmp_path / "certs"
    directory.mkdir()
    hash_a, hash_b = subject_hash(a.path), subject_hash(b.path)
    shutil.copy(a.path, directory / f"{hash_a}.0")
    (directory / f"{hash_a}.1").symlink_to(directory / f"{hash_a}.0")  # one file, two names
    (directory / f"{hash_b}.0").symlink_to(b.path)  # a link out of the directory
    (directory / "ffffffff.0").symlink_to(tmp_path / "gone.pem")  # dangling
    shutil.copy(c.path, directory / "c.pem")  # not a name OpenSSL looks up
    shutil.copy(c.path, directory / f"{hash_b}.r0")  # a CRL's name
    (directory / "0000000a.0").mkdir()  # a directory under a hashed name

    pem = read_ca_pem(None, str(directory))
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 2
    assert a.path.read_bytes() in pem and b.path.read_bytes() in pem
    assert c.path.read_bytes() not in pem
    context = CoreTlsContext.from_locations(None, str(directory))
    assert context.core_config.root_count == 2


def test_a_missing_ca_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(FileNotFoundError, match=r"CA bundle not found: .*nowhere\.pem"):
        read_ca_pem(str(missing), None)
    with pytest.raises(FileNotFoundError):
        CoreTlsContext.from_locations(str(missing), None)


def test_an_absurdly_large_ca_file_is_refused(tmp_path, monkeypatch):
    ca = Authority.create(tmp_path)
    monkeypatch.setattr(_core_tls, "MAX_CA_BYTES", len(ca.path.read_bytes()) - 1)
    with pytest.raises(ValueError, match="refused"):
        CoreTlsContext.from_locations(str(ca.path), None)


def test_a_file_without_certificates_fails_as_openssl_does(tmp_path):
    not_a_ca = tmp_path / "empty.pem"
    not_a_ca.write_text("no certificate here\n")
    with pytest.raises(ssl.SSLError) as ours:
        CoreTlsContext.from_locations(str(not_a_ca), None)
    with pytest.raises(ssl.SSLError) as reference:
        ssl.create_default_context(cafile=str(not_a_ca))
    assert type(ours.value) is type(reference.value)
    assert ours.value.reason == reference.value.reason


def test_no_location_at_all_is_refused():
    with pytest.raises(ValueError):
        CoreTlsContext.from_locations(None, None)


def test_a_session_needs_a_host_name(tmp_path):
    context = CoreTlsContext.from_locations(str(Authority.create(tmp_path).path), None)
    for name in (None, ""):
        with pytest.raises(ValueError, match="server_hostname"):
            start_session(context, name)
    session = start_session(context, "example.test")
    assert session.handshaking and session.tls_pending > 0  # the ClientHello
    info = SessionInfo(session, "example.test")
    assert (info.version(), info.cipher(), info.selected_alpn_protocol()) == (None, None, None)
    with pytest.raises(ValueError, match="handshake not done yet"):  # as SSLObject's
        info.getpeercert()


# ---- failures as ssl errors ------------------------------------------------------------------


def refused(reason: str) -> _core.TlsCertificateError:
    error = _core.TlsCertificateError(f"invalid peer certificate: {reason}")
    error.reason = reason
    return error


@pytest.mark.parametrize(
    ("reason", "code", "message"),
    [
        ("UnknownIssuer", 20, "unable to get local issuer certificate"),
        ("Expired", 10, "certificate has expired"),
        ("NotValidYet", 9, "certificate is not yet valid"),
        ("BadSignature", 7, "certificate signature failure"),
        ("Revoked", 23, "certificate revoked"),
        ("InvalidPurpose", 26, "unsupported certificate purpose"),
        ("Other", 1, "unspecified certificate verification error: Other"),
        ("SomethingNew", 1, "unspecified certificate verification error: SomethingNew"),
    ],
)
def test_a_refused_certificate_is_shaped_as_openssl_says_it(reason, code, message):
    cause = refused(reason)
    error = as_ssl_error(cause)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert str(error) == (
        f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} ({reason})"
    )
    assert (error.verify_code, error.verify_message) == (code, message)
    assert (error.library, error.reason) == ("SSL", "CERTIFICATE_VERIFY_FAILED")
    assert error.__cause__ is cause


@pytest.mark.parametrize(
    ("host", "code", "message"),
    [
        ("api.example", 62, "Hostname mismatch, certificate is not valid for 'api.example'."),
        ("127.0.0.1", 64, "IP address mismatch, certificate is not valid for '127.0.0.1'."),
        ("::1", 64, "IP address mismatch, certificate is not valid for '::1'."),
        (None, 62, "hostname mismatch"),
    ],
)
def test_a_name_mismatch_names_the_host_as_cpython_does(host, code, message):
    error = as_ssl_error(refused("NotValidForName"), host)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert (error.verify_code, error.verify_message) == (code, message)
    assert str(error).endswith(f"certificate verify failed: {message} (NotValidForName)")


def test_the_client_explains_a_core_refusal_as_it_does_an_openssl_one():
    """Through httpcore2's ConnectError, as the sync stream raises it: permanent, and the
    message says what was refused and how to trust a private CA."""
    ssl_error = as_ssl_error(refused("UnknownIssuer"))
    try:
        raise httpcore2.ConnectError(str(ssl_error)) from ssl_error
    except httpcore2.ConnectError as wrapped:
        assert tls_verification_failure(wrapped) is ssl_error
        message = str(connection_error(wrapped, "https://api.example"))
    assert "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate" in message
    assert "ca_bundle=" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cannot decrypt peer's message", "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"),
        ("received corrupt message of type InvalidContentType", "WRONG_VERSION_NUMBER"),
        ("received fatal alert: HandshakeFailure", "SSLV3_ALERT_HANDSHAKE_FAILURE"),
        ("peer closed connection without sending TLS close_notify", None),
    ],
)
def test_other_failures_are_ssl_errors_with_the_cores_text(text, reason):
    cause = _core.TlsError(text)
    error = as_ssl_error(cause)
    assert type(error) is ssl.SSLError
    assert text in str(error)
    assert error.reason == reason
    if reason is not None:
        assert str(error).startswith(f"[SSL: {reason}] ")
    assert error.__cause__ is cause
    assert tls_verification_failure(error) is None
