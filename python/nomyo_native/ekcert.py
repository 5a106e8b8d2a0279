"""EK certificate chains (TCG EK Credential Profile), verified with no C parser and no pyca.

A TPM's endorsement key certificate is issued by its manufacturer (or, for swtpm, a local CA);
the endpoint serves the leaf and the intermediates, the caller gives the trusted CA file.
:func:`verify_ek_chain` parses the DER here (bounded: sizes, depth, chain length), checks each
signature in the native core, and accepts what the TCG profile allows and a web-PKI verifier
would refuse: an empty subject, a critical subjectAltName (the TPM's manufacturer, model and
version), and the extended key usage ``tcg-kp-EKCertificate`` (2.23.133.8.1), which it
requires of the leaf. The leaf must certify exactly the EK the server offered.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass, field

from nomyo_native import _core
from nomyo_native.errors import SecurityError

__all__ = [
    "Certificate",
    "EkChainError",
    "load_pem_certificates",
    "parse_certificate",
    "verify_ek_chain",
]

MAX_CERT_BYTES = 16 * 1024
MAX_CHAIN = 6
TCG_KP_EK_CERTIFICATE = "2.23.133.8.1"
_PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
_SIG_ALGS = {
    "1.2.840.113549.1.1.11": "rsa-pkcs1-sha256",
    "1.2.840.113549.1.1.12": "rsa-pkcs1-sha384",
    "1.2.840.113549.1.1.13": "rsa-pkcs1-sha512",
    "1.2.840.10045.4.3.2": "ecdsa-{curve}-sha256",
    "1.2.840.10045.4.3.3": "ecdsa-{curve}-sha384",
}
_CURVES = {"1.2.840.10045.3.1.7": "p256", "1.3.132.0.34": "p384"}
_RSA, _EC = "1.2.840.113549.1.1.1", "1.2.840.10045.2.1"
_BASIC_CONSTRAINTS, _KEY_USAGE, _EXT_KEY_USAGE = "2.5.29.19", "2.5.29.15", "2.5.29.37"
_SAN = "2.5.29.17"
# Extensions whose meaning we check or that carry no constraint for this use; any other
# critical extension makes a certificate unusable (RFC 5280, 4.2).
_UNDERSTOOD = {_BASIC_CONSTRAINTS, _KEY_USAGE, _EXT_KEY_USAGE, _SAN, "2.5.29.32", "2.5.29.9",
               "2.5.29.14", "2.5.29.35"}  # fmt: skip


class EkChainError(SecurityError):
    """The EK certificate chain does not lead from the offered EK to a trusted CA."""


# ---- DER -------------------------------------------------------------------------------------


class _Der:
    """A bounded DER reader over one buffer."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def read(self) -> tuple[int, bytes, bytes]:
        """(tag, content, the whole TLV)."""
        start, data = self.pos, self.data
        if self.pos + 2 > len(data):
            raise EkChainError(f"{self.what}: truncated DER")
        tag, first = data[self.pos], data[self.pos + 1]
        self.pos += 2
        if first < 0x80:
            length = first
        else:
            width = first & 0x7F
            if not 1 <= width <= 3 or self.pos + width > len(data):
                raise EkChainError(f"{self.what}: bad DER length")
            length = int.from_bytes(data[self.pos : self.pos + width], "big")
            self.pos += width
        end = self.pos + length
        if end > len(data):
            raise EkChainError(f"{self.what}: DER value runs past its container")
        content = data[self.pos : end]
        self.pos = end
        return tag, content, data[start:end]

    def expect(self, tag: int) -> bytes:
        got, content, _ = self.read()
        if got != tag:
            raise EkChainError(f"{self.what}: expected DER tag {tag:#04x}, found {got:#04x}")
        return content


def _oid(content: bytes) -> str:
    if not content:
        raise EkChainError("empty OID")
    parts = [content[0] // 40, content[0] % 40] if content[0] < 80 else [2, content[0] - 80]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _time(tag: int, content: bytes) -> dt.datetime:
    text = content.decode("ascii", "replace")
    try:
        if tag == 0x17:  # UTCTime: YY >= 50 is 19YY, else 20YY (RFC 5280, 4.1.2.5.1), not
            # strptime's %y pivot at 69, which read an expired 1950-1968 date as 2050-2068.
            if len(text) != 13 or not text[:2].isdigit():
                raise ValueError
            century = "19" if int(text[:2]) >= 50 else "20"
            parsed = dt.datetime.strptime(century + text, "%Y%m%d%H%M%SZ")
        elif tag == 0x18:  # GeneralizedTime
            parsed = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise ValueError
    except ValueError:
        raise EkChainError(f"certificate validity time {text!r} is malformed") from None
    return parsed.replace(tzinfo=dt.UTC)


@dataclass
class Certificate:
    der: bytes
    tbs: bytes
    sig_alg: str
    signature: bytes
    issuer: bytes
    subject: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    spki: bytes
    key_alg: str
    key_param: str | None
    public_key: bytes  # PKCS#1 RSAPublicKey or the EC point
    extensions: dict[str, tuple[bool, bytes]] = field(default_factory=dict)

    @property
    def is_ca(self) -> bool:
        ext = self.extensions.get(_BASIC_CONSTRAINTS)
        if ext is None:
            return False
        seq = _Der(ext[1], "basicConstraints").expect(0x30)
        inner = _Der(seq, "basicConstraints")
        if inner.done():
            return False
        tag, content, _ = inner.read()
        return tag == 0x01 and content == b"\xff"

    def key_usage_allows_cert_sign(self) -> bool:
        ext = self.extensions.get(_KEY_USAGE)
        if ext is None:
            return True
        bits = _Der(ext[1], "keyUsage").expect(0x03)
        return len(bits) >= 2 and bool(bits[1] & 0x04)  # keyCertSign is bit 5

    def ext_key_usages(self) -> set[str] | None:
        ext = self.extensions.get(_EXT_KEY_USAGE)
        if ext is None:
            return None
        reader = _Der(_Der(ext[1], "extKeyUsage").expect(0x30), "extKeyUsage")
        usages = set()
        while not reader.done():
            usages.add(_oid(reader.expect(0x06)))
        return usages


def parse_certificate(der: bytes) -> Certificate:
    if len(der) > MAX_CERT_BYTES:
        raise EkChainError("certificate is larger than 16 KiB")
    outer = _Der(der, "certificate")
    cert = _Der(outer.expect(0x30), "certificate")
    if not outer.done():
        raise EkChainError("trailing bytes after the certificate")
    _, _, tbs = cert.read()
    sig_alg_seq = _Der(cert.expect(0x30), "signatureAlgorithm")
    sig_alg = _oid(sig_alg_seq.expect(0x06))
    bits = cert.expect(0x03)
    if not bits or bits[0] != 0:
        raise EkChainError("certificate signature is not a whole number of bytes")
    body = _Der(_Der(tbs, "tbsCertificate").expect(0x30), "tbsCertificate")
    tag, _, _ = body.read()
    if tag == 0xA0:  # [0] version; the serial follows
        body.expect(0x02)
    elif tag != 0x02:
        raise EkChainError("tbsCertificate has no serial number")
    inner_alg = _oid(_Der(body.expect(0x30), "signature").expect(0x06))
    if inner_alg != sig_alg:
        raise EkChainError("the two signature algorithms of the certificate differ")
    _, _, issuer = body.read()
    validity = _Der(body.expect(0x30), "validity")
    not_before = _time(*validity.read()[:2])
    not_after = _time(*validity.read()[:2])
    _, _, subject = body.read()
    _, spki_content, spki = body.read()
    spki_reader = _Der(spki_content, "subjectPublicKeyInfo")
    alg = _Der(spki_reader.expect(0x30), "algorithm")
    key_alg = _oid(alg.expect(0x06))
    key_param = None
    if key_alg == _EC:
        key_param = _oid(alg.expect(0x06))
    key_bits = spki_reader.expect(0x03)
    if not key_bits or key_bits[0] != 0:
        raise EkChainError("certificate public key is not a whole number of bytes")
    extensions: dict[str, tuple[bool, bytes]] = {}
    while not body.done():
        tag, content, _ = body.read()
        if tag != 0xA3:
            continue  # issuerUniqueID / subjectUniqueID
        seq = _Der(_Der(content, "extensions").expect(0x30), "extensions")
        while not seq.done():
            ext = _Der(seq.expect(0x30), "extension")
            oid = _oid(ext.expect(0x06))
            tag, value, _ = ext.read()
            critical = False
            if tag == 0x01:
                critical = value == b"\xff"
                value = ext.expect(0x04)
            elif tag != 0x04:
                raise EkChainError(f"extension {oid} has no value")
            if oid in extensions:
                raise EkChainError(f"extension {oid} appears twice")
            extensions[oid] = (critical, value)
    return Certificate(
        der, tbs, sig_alg, bits[1:], issuer, subject, not_before, not_after, spki, key_alg,
        key_param, key_bits[1:], extensions,
    )  # fmt: skip


def load_pem_certificates(text: str) -> list[bytes]:
    """The DER of every ``CERTIFICATE`` block in ``text``."""
    out = []
    for match in _PEM_RE.finditer(text):
        try:
            out.append(base64.b64decode("".join(match.group(1).split()), validate=True))
        except (binascii.Error, ValueError):
            raise EkChainError("a PEM certificate is not valid base64") from None
    return out


# ---- chain -----------------------------------------------------------------------------------


def _signed_by(child: Certificate, issuer: Certificate) -> bool:
    algorithm = _SIG_ALGS.get(child.sig_alg)
    if algorithm is None:
        raise EkChainError(f"certificate signature algorithm {child.sig_alg} is not supported")
    if "{curve}" in algorithm:
        curve = _CURVES.get(issuer.key_param or "")
        if issuer.key_alg != _EC or curve is None:
            return False
        algorithm = algorithm.format(curve=curve)
    elif issuer.key_alg != _RSA:
        return False
    signature = child.signature
    return _core.x509_verify_signature(algorithm, issuer.public_key, child.tbs, signature)


def _check_critical(cert: Certificate, role: str) -> None:
    for oid, (critical, _) in cert.extensions.items():
        if critical and oid not in _UNDERSTOOD:
            raise EkChainError(f"the {role} certificate has an unknown critical extension {oid}")


def verify_ek_chain(
    chain: list[bytes],
    trusted: list[bytes],
    ek_spki: bytes,
    *,
    now: dt.datetime | None = None,
) -> Certificate:
    """Check that ``chain[0]`` certifies the EK whose SubjectPublicKeyInfo is ``ek_spki`` and
    leads, through the other certificates of ``chain``, to one of ``trusted``. Returns the
    leaf; raises :class:`EkChainError` naming the failed rule."""
    if not chain:
        raise EkChainError("the server offers no EK certificate")
    if not trusted:
        raise EkChainError("the trusted EK CA file holds no certificate")
    if len(chain) > MAX_CHAIN:
        raise EkChainError(f"the EK certificate chain is longer than {MAX_CHAIN}")
    now = now or dt.datetime.now(dt.UTC)
    leaf = parse_certificate(chain[0])
    intermediates = [parse_certificate(der) for der in chain[1:]]
    anchors = [parse_certificate(der) for der in trusted]
    if leaf.spki != ek_spki:
        raise EkChainError("the EK certificate does not certify the endorsement key offered")
    usages = leaf.ext_key_usages()
    if usages is None or TCG_KP_EK_CERTIFICATE not in usages:
        raise EkChainError("the EK certificate lacks the EKU tcg-kp-EKCertificate (2.23.133.8.1)")
    _check_critical(leaf, "EK")
    current = leaf
    for _ in range(MAX_CHAIN):
        if not current.not_before <= now <= current.not_after:
            raise EkChainError("a certificate of the EK chain is outside its validity period")
        for anchor in anchors:
            if anchor.subject == current.issuer and _signed_by(current, anchor):
                # An expired (or not yet valid) CA vouches for nothing, as OpenSSL and the web
                # PKI treat a root: its key may be retired, or compromised long after.
                if not anchor.not_before <= now <= anchor.not_after:
                    raise EkChainError(
                        "the trusted CA that issued the EK chain is outside its validity period"
                    )
                return leaf
        parent = next(
            (c for c in intermediates if c.subject == current.issuer and _signed_by(current, c)),
            None,
        )
        if parent is None:
            raise EkChainError(
                "the EK certificate chain does not lead to a trusted CA (an unknown issuer, or "
                "a signature that does not verify)"
            )
        if not parent.is_ca or not parent.key_usage_allows_cert_sign():
            raise EkChainError("an intermediate of the EK chain is not a CA certificate")
        _check_critical(parent, "intermediate")
        intermediates.remove(parent)
        current = parent
    raise EkChainError("the EK certificate chain is too long")
