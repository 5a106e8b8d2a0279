"""The attestation key (AIK): its fingerprint, whether its private part is bound to a TPM, and
the caller's pin on it (``trusted_aik``: a ``sha256:`` fingerprint or a PEM public key)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from nomyo_native.attestation._wire import decode_b64, parse_structure

# TPMA_OBJECT bits that keep a key's private part inside the TPM that made it: fixedTPM and
# fixedParent (never duplicated, so never imported from software) and sensitiveDataOrigin (the
# TPM generated it, nobody supplied it). A restricted signing key without them may have been
# made in software and imported into a TPM: whoever holds the software copy signs any "quote".
_ATTR_FIXED_TPM = 0x00000002
_ATTR_FIXED_PARENT = 0x00000010
_ATTR_SENSITIVE_DATA_ORIGIN = 0x00000020
_RESIDENCY_ATTRS = (
    (_ATTR_FIXED_TPM, "fixedTPM"),
    (_ATTR_FIXED_PARENT, "fixedParent"),
    (_ATTR_SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
)


_FINGERPRINT_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")
_PEM_SPKI_RE = re.compile(r"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----")


def aik_fingerprint(aik_pubkey_b64: str) -> str:
    """``sha256:<hex>`` of the marshalled public area in ``aik_pubkey_b64`` (for pinning).

    Raises ``ValueError`` naming the problem when the value is not a TPM2B_PUBLIC.
    """
    raw = decode_b64("aik_pubkey_b64", aik_pubkey_b64)
    return fingerprint_of(parse_structure("aik_pubkey_b64", raw)["public_area"])


def aik_residency_problem(object_attributes: int) -> str | None:
    """Why a key with these ``TPMA_OBJECT`` attributes cannot root a quote (its private part may
    exist outside a TPM), or None when it is fixedTPM, fixedParent and sensitiveDataOrigin."""
    missing = [name for bit, name in _RESIDENCY_ATTRS if not object_attributes & bit]
    if not missing:
        return None
    return (
        f"the AIK is not {', '.join(missing)}: its private key may have been made outside the"
        " TPM (a duplicable or imported key), so its signature proves no TPM"
    )


def validate_trusted_aik(value: str | bytes) -> None:
    """Raise ``ValueError``/``TypeError`` now if ``value`` is not a usable AIK pin."""
    parse_trusted_aik(value)


@dataclass(frozen=True)
class AikPin:
    fingerprint: str | None = None  # "sha256:<hex>" of the marshalled TPMT_PUBLIC
    spki_der: bytes | None = None  # SubjectPublicKeyInfo of a pinned PEM key

    def describe(self) -> str:
        if self.fingerprint is not None:
            return self.fingerprint
        return "the pinned PEM key"


def fingerprint_of(public_area: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_area).hexdigest()


def _pem_spki(text: str) -> bytes:
    """The DER SubjectPublicKeyInfo in a ``PUBLIC KEY`` PEM block (compared byte for byte with
    the AIK's, which the core encodes as OpenSSL does)."""
    match = _PEM_SPKI_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            "trusted_aik is not a valid PEM public key (one '-----BEGIN PUBLIC KEY-----' block)"
        )
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("trusted_aik is not a valid PEM public key (bad base64)") from None
    if not _is_der_sequence(der):
        raise ValueError("trusted_aik is not a valid PEM public key (no DER SPKI in it)")
    # A key no AIK can ever be (the core verifies only these) would refuse every answer under
    # "require": refused now, before a prompt is sent for an answer that cannot be accepted.
    if not _is_usable_aik_spki(der):
        raise ValueError(
            "trusted_aik is not a key an AIK can be: it must be RSA of at least 2048 bits or an"
            " uncompressed NIST P-256/P-384 key"
        )
    return der


_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
_EC_POINT_SIZES = {bytes.fromhex("2a8648ce3d030107"): 65, bytes.fromhex("2b81040022"): 97}


def _der_items(der: bytes) -> list[tuple[int, bytes]] | None:
    """The (tag, content) TLVs that exactly fill ``der`` (short or 1-2 byte lengths), or None."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(der):
        if pos + 2 > len(der):
            return None
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            width = length & 0x7F
            if not 1 <= width <= 2 or pos + width > len(der):
                return None
            length = int.from_bytes(der[pos : pos + width], "big")
            pos += width
        if pos + length > len(der):
            return None
        items.append((tag, der[pos : pos + length]))
        pos += length
    return items


def _is_usable_aik_spki(der: bytes) -> bool:
    """An RSA (>= 2048 bits) or uncompressed P-256/P-384 SubjectPublicKeyInfo."""
    spki = _der_items(der)
    if not spki or len(spki) != 1 or spki[0][0] != 0x30:
        return False
    body = _der_items(spki[0][1])
    if not body or len(body) != 2 or body[0][0] != 0x30 or body[1][0] != 0x03:
        return False
    algorithm, (_, bits) = _der_items(body[0][1]) or [], body[1]
    if not algorithm or algorithm[0][0] != 0x06 or not bits or bits[0] != 0:
        return False
    oid, key = algorithm[0][1], bits[1:]
    if oid == _OID_EC:
        size = _EC_POINT_SIZES.get(algorithm[1][1]) if len(algorithm) == 2 else None
        return size is not None and len(key) == size and key[0] == 0x04
    if oid != _OID_RSA:
        return False
    rsa_key = _der_items(key)
    if not rsa_key or len(rsa_key) != 1 or rsa_key[0][0] != 0x30:
        return False
    numbers = _der_items(rsa_key[0][1])
    if not numbers or len(numbers) != 2 or numbers[0][0] != 0x02:
        return False
    return int.from_bytes(numbers[0][1], "big").bit_length() >= 2048


def _is_der_sequence(der: bytes) -> bool:
    """A DER SEQUENCE whose length field covers the whole value exactly."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return first == len(der) - 2
    width = first & 0x7F
    if not 1 <= width <= 2 or len(der) < 2 + width:
        return False
    return int.from_bytes(der[2 : 2 + width], "big") == len(der) - 2 - width


def parse_trusted_aik(value: str | bytes) -> AikPin:
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("trusted_aik bytes must be an ASCII PEM or fingerprint") from None
    if not isinstance(value, str):
        raise TypeError(f"trusted_aik must be a str or bytes, not {type(value).__name__}")
    text = value.strip()
    match = _FINGERPRINT_RE.fullmatch(text)
    if match:
        return AikPin(fingerprint="sha256:" + match.group(1).lower())
    if text.startswith("-----BEGIN"):
        return AikPin(spki_der=_pem_spki(text))
    raise ValueError(
        "trusted_aik must be 'sha256:<64 hex digits>' (SHA-256 of the AIK's marshalled "
        "TPMT_PUBLIC) or a PEM public key"
    )
