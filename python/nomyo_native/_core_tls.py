"""The core's TLS (rustls in the Rust core) as the network backends see it: the context that
selects it, a session started from that context, its failures as the ``ssl`` errors the rest
of the client already understands, and a stand-in for ``ssl.SSLObject``.

A :class:`CoreTlsContext` is an ordinary verifying ``ssl.SSLContext`` loaded with the same CA
locations, so any code path that still wraps a socket with OpenSSL verifies the same way; it
also carries the core's ``TlsConfig``, built once from the same PEM bytes. The backends run the
core's TLS when they are given one, and OpenSSL otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
import sys
import tempfile
from typing import Any

from nomyo_native import _core

__all__ = [
    "MAX_CA_BYTES",
    "CoreTlsContext",
    "NoCoreAnchors",
    "SessionInfo",
    "as_ssl_error",
    "read_ca_pem",
    "start_session",
]

# The most CA bytes one context reads (a file, or a directory's files together). A system
# bundle is a few hundred KB: this only stops a misconfigured path (a disk image, a log)
# from being read whole.
MAX_CA_BYTES = 32 * 1024 * 1024

# The names OpenSSL looks up in a CA directory (``c_rehash``/``openssl rehash``): the subject
# hash in lower-case hex, a dot, a sequence number. CRLs (``.r0``) do not match.
_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")


# ---- the context -----------------------------------------------------------------------------


def _read_bounded(path: str, budget: int) -> bytes:
    """A regular file's bytes, refused past ``budget``."""
    with open(path, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ValueError(f"CA location is not a regular file: {path}")
        data = file.read(budget + 1)
    if len(data) > budget:
        raise ValueError(f"CA certificates over {MAX_CA_BYTES} bytes, refused: {path}")
    return data


def _hashed_files(capath: str) -> list[str]:
    """The files OpenSSL would look up in ``capath``, each once (links followed, a file two
    names point at read once), in a stable order."""
    seen: set[tuple[int, int]] = set()
    files = []
    for name in sorted(os.listdir(capath)):
        if not _HASHED_NAME.fullmatch(name):
            continue
        path = os.path.join(capath, name)
        try:
            info = os.stat(path)
        except OSError:
            continue  # a dangling link: OpenSSL finds nothing there either
        identity = (info.st_dev, info.st_ino)
        if stat.S_ISREG(info.st_mode) and identity not in seen:
            seen.add(identity)
            files.append(path)
    return files


def read_ca_pem(cafile: str | None, capath: str | None) -> bytes:
    """The PEM bytes of every certificate OpenSSL would trust from ``cafile`` and ``capath``:
    the file whole, and the directory's hashed files (``[0-9a-f]{8}.N``). At most
    :data:`MAX_CA_BYTES` in all (ValueError past it)."""
    if cafile is not None and not os.path.exists(cafile):
        raise FileNotFoundError(f"CA bundle not found: {cafile}")
    pieces = []
    left = MAX_CA_BYTES
    paths = ([cafile] if cafile is not None else []) + (
        _hashed_files(capath) if capath is not None and os.path.isdir(capath) else []
    )
    for path in paths:
        data = _read_bounded(path, left)
        left -= len(data)
        pieces.append(data)
    return b"\n".join(pieces)


class NoCoreAnchors(ValueError):
    """No certificate in the CA locations is one the core can use as a trust anchor."""


class CoreTlsContext(ssl.SSLContext):
    """A verifying client context (CERT_REQUIRED, check_hostname, loaded with the same CA
    locations) that also carries the core's ``TlsConfig`` built from the same PEM bytes."""

    _core_config: _core.TlsConfig

    @classmethod
    def from_locations(cls, cafile: str | None, capath: str | None) -> CoreTlsContext:
        """What ``ssl.create_default_context(cafile=, capath=)`` gives, plus the core's config.
        :class:`NoCoreAnchors` if no certificate there is one the core can use as a trust
        anchor; ValueError past :data:`MAX_CA_BYTES`."""
        if cafile is None and capath is None:
            raise ValueError("a CA file or a CA directory is needed")
        context = cls(ssl.PROTOCOL_TLS_CLIENT)
        # create_default_context's settings for Purpose.SERVER_AUTH (a test compares them).
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        if sys.version_info >= (3, 13):
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            context.keylog_filename = keylog  # OpenSSL's connections only: the core logs no keys
        # First, so that a missing or malformed file fails exactly as it does today.
        context.load_verify_locations(cafile, capath)
        pem = read_ca_pem(cafile, capath)
        try:
            context._core_config = _core.TlsConfig(pem)
        except ValueError as exc:
            raise NoCoreAnchors(str(exc)) from exc
        return context

    @property
    def core_config(self) -> _core.TlsConfig:
        """The core's trust anchors and settings, shared by every session of this context."""
        return self._core_config


def start_session(context: CoreTlsContext, server_hostname: str | None) -> _core.TlsSession:
    """A client session to ``server_hostname``; its ClientHello waits in ``take_tls()``."""
    if not server_hostname:
        # OpenSSL's wrap_socket says the same: a name is what the certificate is checked against.
        raise ValueError("check_hostname requires server_hostname")
    try:
        return _core.TlsSession(context.core_config, server_hostname)
    except ValueError as exc:
        # Neither a DNS name nor an IP address to rustls ("127.1", which getaddrinfo resolves; a
        # scoped IPv6 address): OpenSSL checks it as a DNS name that no certificate names and
        # refuses the certificate. The same refusal, before anything is sent.
        raise _verification_error(
            _HOSTNAME_MISMATCH,
            f"Hostname mismatch, certificate is not valid for '{server_hostname}'.",
            "InvalidServerName",
        ) from exc


# ---- failures as ssl errors ------------------------------------------------------------------

# The core's reason code -> (OpenSSL's X509_V_ERR code, its message), the text a user would
# search for. Codes from OpenSSL's x509_vfy.h.
_VERIFY_ERRORS: dict[str, tuple[int, str]] = {
    "UnknownIssuer": (20, "unable to get local issuer certificate"),
    "Expired": (10, "certificate has expired"),
    "NotValidYet": (9, "certificate is not yet valid"),
    "BadSignature": (7, "certificate signature failure"),
    "UnsupportedSignatureAlgorithm": (7, "certificate signature failure"),
    "Revoked": (23, "certificate revoked"),
    "UnknownRevocationStatus": (3, "unable to get certificate CRL"),
    "ExpiredRevocationList": (12, "CRL has expired"),
    "UnhandledCriticalExtension": (34, "unhandled critical extension"),
    "InvalidPurpose": (26, "unsupported certificate purpose"),
    "BadEncoding": (1, "unspecified certificate verification error"),
}
_UNSPECIFIED = (1, "unspecified certificate verification error")
_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH = 62, 64

# Failures other than the certificate's: a start of the core's (rustls's) message -> the
# OpenSSL reason and text the same failure shows there.
_SSL_REASONS: tuple[tuple[str, str, str], ...] = (
    ("cannot decrypt peer's message", "DECRYPTION_FAILED_OR_BAD_RECORD_MAC",
     "decryption failed or bad record mac"),
    ("received corrupt message of type InvalidContentType", "WRONG_VERSION_NUMBER",
     "wrong version number"),
    ("received fatal alert: HandshakeFailure", "SSLV3_ALERT_HANDSHAKE_FAILURE",
     "sslv3 alert handshake failure"),
    ("received fatal alert: ProtocolVersion", "TLSV1_ALERT_PROTOCOL_VERSION",
     "tlsv1 alert protocol version"),
)  # fmt: skip


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _verify_error(exc: _core.TlsCertificateError, server_hostname: str | None) -> tuple[int, str]:
    reason = exc.reason
    if reason in _VERIFY_ERRORS:
        return _VERIFY_ERRORS[reason]
    if reason != "NotValidForName":
        # No OpenSSL message says it (a CA certificate as the server's own, say): the core's
        # detail does.
        detail = str(exc).removeprefix("invalid peer certificate: ")
        return _UNSPECIFIED[0], f"{_UNSPECIFIED[1]}: {detail}"
    if server_hostname is None:
        return _HOSTNAME_MISMATCH, "hostname mismatch"
    # CPython's own wording for these two codes (Modules/_ssl.c).
    if _is_ip_literal(server_hostname):
        return (
            _IP_ADDRESS_MISMATCH,
            f"IP address mismatch, certificate is not valid for '{server_hostname}'.",
        )
    return (
        _HOSTNAME_MISMATCH,
        f"Hostname mismatch, certificate is not valid for '{server_hostname}'.",
    )


def _verification_error(code: int, message: str, reason: str) -> ssl.SSLCertVerificationError:
    """OpenSSL's refusal of a certificate, with the core's ``reason`` after its message."""
    error = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} ({reason})"
    )
    error.verify_code, error.verify_message = code, message
    error.library, error.reason = "SSL", "CERTIFICATE_VERIFY_FAILED"
    return error


def as_ssl_error(exc: _core.TlsError, server_hostname: str | None = None) -> ssl.SSLError:
    """The ``ssl`` error the OpenSSL path raises for the same failure, ``exc`` as its cause.

    A refused certificate is an ``ssl.SSLCertVerificationError`` shaped as OpenSSL's ("[SSL:
    CERTIFICATE_VERIFY_FAILED] certificate verify failed: <message> (<core's reason>)", with
    ``verify_code``/``verify_message``), which the client recognises as permanent and explains
    (``_retry.tls_verification_failure``); anything else an ``ssl.SSLError``. ``server_hostname``
    names the host in a name mismatch, as OpenSSL's message does."""
    error: ssl.SSLError
    if isinstance(exc, _core.TlsCertificateError):
        error = _verification_error(*_verify_error(exc, server_hostname), exc.reason)
    else:
        text = str(exc)
        reason = next((r for r in _SSL_REASONS if text.startswith(r[0])), None)
        if reason is None:
            error = ssl.SSLError(1, f"[SSL] {text}")
            error.library = "SSL"
            # As ssl's own errors when OpenSSL names no reason (typeshed says str).
            error.reason = None  # type: ignore[assignment]
        else:
            error = ssl.SSLError(1, f"[SSL: {reason[1]}] {reason[2]} ({text})")
            error.library, error.reason = "SSL", reason[1]
    error.__cause__ = exc
    return error


# ---- what get_extra_info("ssl_object") returns -----------------------------------------------

# The core's suite name -> OpenSSL's name and its secret bits (rustls's suites on aws-lc-rs).
_SUITES: dict[str, tuple[str, int]] = {
    "TLS13_AES_256_GCM_SHA384": ("TLS_AES_256_GCM_SHA384", 256),
    "TLS13_AES_128_GCM_SHA256": ("TLS_AES_128_GCM_SHA256", 128),
    "TLS13_CHACHA20_POLY1305_SHA256": ("TLS_CHACHA20_POLY1305_SHA256", 256),
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": ("ECDHE-ECDSA-AES256-GCM-SHA384", 256),
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": ("ECDHE-ECDSA-AES128-GCM-SHA256", 128),
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": ("ECDHE-ECDSA-CHACHA20-POLY1305", 256),
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": ("ECDHE-RSA-AES256-GCM-SHA384", 256),
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": ("ECDHE-RSA-AES128-GCM-SHA256", 128),
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": ("ECDHE-RSA-CHACHA20-POLY1305", 256),
}


class SessionInfo:
    """What ``get_extra_info("ssl_object")`` returns on a core TLS connection: the parts of
    ``ssl.SSLObject`` a caller reads after the handshake, answered by the session."""

    def __init__(self, session: _core.TlsSession, server_hostname: str | None) -> None:
        self._session = session
        self.server_hostname = server_hostname

    def version(self) -> str | None:
        return self._session.protocol_version

    def cipher(self) -> tuple[str, str, int] | None:
        """(OpenSSL's name of the suite, the protocol version, secret bits), as SSLObject's."""
        suite, version = self._session.cipher_suite, self._session.protocol_version
        if suite is None or version is None:
            return None
        name, bits = _SUITES.get(suite, (suite, self._session.cipher_bits or 0))
        return name, version, bits

    def selected_alpn_protocol(self) -> str | None:
        return self._session.alpn_protocol

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The verified leaf: DER bytes, or the dict ``ssl`` decodes it into (OpenSSL's own
        decoder, as ``SSLObject.getpeercert()`` returns it)."""
        der = self._session.peer_certificate()
        if der is None:
            if self._session.handshaking:
                raise ValueError("handshake not done yet")
            return None
        if binary_form:
            return der
        # ssl decodes a certificate only from a file (the leaf is public), closed before it is
        # read by name: Windows does not open a file twice.
        descriptor, path = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(ssl.DER_cert_to_PEM_cert(der))
            return ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
        finally:
            os.unlink(path)
