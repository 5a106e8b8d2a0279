"""Software-made quotes: what a server without a TPM can send (issue 11's attack).

``forge_block`` builds a complete ``tpm_attestation`` block with a software key standing in for
the AIK: a restricted-signing public area, a ``TPMS_ATTEST`` quote bound to the payload id with
the PCR values the caller chooses (e.g. a victim's baseline), signed with pyca/cryptography.
Every such block is *bound* by construction; none may ever be *hardware rooted*.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from tpm2_pytss import constants, types

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
_CURVES = {"p256": (ec.SECP256R1, "ecc256", 32), "p384": (ec.SECP384R1, "ecc384", 48)}
PCR_SELECTION = "sha256:0,7,10"


@cache
def software_key(kind: str, seed: int = 0) -> Any:
    """A cached key per (kind, seed): "p256", "p384" or "rsa2048"/"rsa3072"."""
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind][0]())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))


@dataclass(frozen=True)
class Forged:
    block: dict[str, Any]
    public_area: bytes  # marshalled TPMT_PUBLIC

    @property
    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.public_area).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def public_area_for(
    key: Any, scheme: str, hash_alg: str, *, restricted: bool = True, drop_attributes: int = 0
) -> Any:
    """The TPMT_PUBLIC of ``key`` as a TPM AIK; ``drop_attributes`` clears TPMA_OBJECT bits
    (e.g. FIXEDTPM: a duplicable key, which may have been made in software and imported)."""
    attrs = constants.TPMA_OBJECT
    flags = attrs.SIGN_ENCRYPT | attrs.FIXEDTPM | attrs.FIXEDPARENT | attrs.SENSITIVEDATAORIGIN
    if restricted:
        flags |= attrs.RESTRICTED
    flags &= ~drop_attributes
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size // 8
        prefix = "ecc256" if size == 32 else "ecc384"
        public = types.TPMT_PUBLIC.parse(
            f"{prefix}:{scheme}-{hash_alg}:null", objectAttributes=flags
        )
        numbers = key.public_key().public_numbers()
        public.unique.ecc.x = numbers.x.to_bytes(size, "big")
        public.unique.ecc.y = numbers.y.to_bytes(size, "big")
    else:
        bits = key.key_size
        public = types.TPMT_PUBLIC.parse(
            f"rsa{bits}:{scheme}-{hash_alg}:null", objectAttributes=flags
        )
        public.unique.rsa = key.public_key().public_numbers().n.to_bytes(bits // 8, "big")
    return public


def quote_bytes(extra_data: bytes, pcr_digest: bytes, selection: str = PCR_SELECTION) -> bytes:
    attest = types.TPMS_ATTEST(
        magic=constants.TPM2_GENERATED.VALUE,
        type=constants.TPM2_ST.ATTEST_QUOTE,
        qualifiedSigner=types.TPM2B_NAME(b"\x00\x0b" + b"\x42" * 32),
        extraData=types.TPM2B_DATA(extra_data),
        clockInfo=types.TPMS_CLOCK_INFO(clock=1234, resetCount=1, restartCount=0, safe=1),
        firmwareVersion=0x2024,
    )
    attest.attested.quote.pcrSelect = types.TPML_PCR_SELECTION.parse(selection)
    attest.attested.quote.pcrDigest = types.TPM2B_DIGEST(pcr_digest)
    return attest.marshal()


def sign(
    key: Any, scheme: str, hash_alg: str, message: bytes, *, pss_salt: int | None = None
) -> bytes:
    """A marshalled TPMT_SIGNATURE of ``message``; ``pss_salt`` picks RSA-PSS's salt length."""
    algorithm = _HASHES[hash_alg]()
    hash_id = {"sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}[hash_alg]
    if scheme == "ecdsa":
        r, s = utils.decode_dss_signature(key.sign(message, ec.ECDSA(algorithm)))
        size = key.curve.key_size // 8
        body = struct.pack(">HH", 0x0018, hash_id)
        for value in (r, s):
            body += struct.pack(">H", size) + value.to_bytes(size, "big")
        return body
    if scheme == "rsapss":
        salt = algorithm.digest_size if pss_salt is None else pss_salt
        pad: padding.AsymmetricPadding = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)
        alg_id = 0x0016
    else:
        pad, alg_id = padding.PKCS1v15(), 0x0014
    raw = key.sign(message, pad, algorithm)
    return struct.pack(">HHH", alg_id, hash_id, len(raw)) + raw


def forge_block(
    payload_id: str,
    pcr_values: dict[str, str],
    *,
    scheme: str = "ecdsa",
    hash_alg: str = "sha256",
    key_kind: str = "p256",
    seed: int = 0,
    pss_salt: int | None = None,
    drop_attributes: int = 0,
) -> Forged:
    """A bound quote for ``payload_id`` over sha256 PCRs 0,7,10 = ``pcr_values`` (hex by index),
    signed by a software key: everything a TPM-less server can produce."""
    key = software_key(key_kind, seed)
    public = public_area_for(key, scheme, hash_alg, drop_attributes=drop_attributes)
    digest = hashlib.new(hash_alg)
    for index in ("0", "7", "10"):
        digest.update(bytes.fromhex(pcr_values[index]))
    extra = hashlib.sha256(payload_id.encode()).digest()[:16]
    attest = quote_bytes(extra, digest.digest())
    signature = sign(key, scheme, hash_alg, attest, pss_salt=pss_salt)
    block = {
        "is_available": True,
        "pcr_banks": PCR_SELECTION,
        "pcr_values": {"sha256": dict(pcr_values)},
        "aik_pubkey_b64": _b64(types.TPM2B_PUBLIC(publicArea=public).marshal()),
        "quote_b64": _b64(struct.pack(">H", len(attest)) + attest),
        "signature_b64": _b64(signature),
    }
    return Forged(block, public.marshal())
