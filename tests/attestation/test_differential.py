"""The core's TPM parsers and verifier against independent oracles (issue 11 section 3).

tpm2-pytss (the TCG's libtss2-mu) unmarshals every real swtpm quote and thousands of mutations
of it; the core must make the same accept/refuse decision and, when both accept, read the same
fields. pyca/cryptography re-verifies every signature the core judges. The one deliberate
difference: the core reads only the attestation types it verifies (quote, certify) and refuses
the others, which libtss2 would unmarshal.
"""

from __future__ import annotations

import base64
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from tpm2_pytss import types

from nomyo_native import _core
from nomyo_native.server.tpm import supported_quote_schemes

from .forge import forge_block

PAYLOAD_ID = "d1f0e2c3-b4a5-4697-8877-665544332211"
MUTATIONS_PER_FIELD = 160
_QUOTE_TYPES = (0x8017, 0x8018)  # TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_QUOTE
# Selector values worth splicing in: every algorithm id the structures branch on, and junk.
_INTERESTING_U16 = [
    0x0000, 0x0001, 0x0004, 0x0005, 0x0006, 0x0008, 0x000A, 0x000B, 0x000C, 0x000D, 0x0010,
    0x0013, 0x0014, 0x0015, 0x0016, 0x0017, 0x0018, 0x001A, 0x001B, 0x001C, 0x0020, 0x0021,
    0x0022, 0x0023, 0x0025, 0x0026, 0x0027, 0x8014, 0x8017, 0x8018, 0x8019, 0x00FF, 0x0100,
    0x0201, 0x7FFF, 0xFFFF,
]  # fmt: skip


# ---- the oracle's reading of each structure, shaped like the core's dicts --------------------


def _exact(cls: Any, raw: bytes) -> Any:
    """libtss2's unmarshal, held to the core's rule: all bytes consumed, canonical."""
    try:
        obj, used = cls.unmarshal(raw)
        again = obj.marshal()
    except Exception:
        return None
    return obj if used == len(raw) and again == raw else None


def _sym(sym: Any) -> dict[str, int]:
    return {
        "algorithm": int(sym.algorithm),
        "key_bits": int(sym.keyBits.sym),
        "mode": int(sym.mode.sym),
    }


def _asym_scheme(scheme: Any) -> dict[str, int]:
    return {
        "scheme": int(scheme.scheme),
        "hash": int(scheme.details.anySig.hashAlg),
        "count": int(scheme.details.ecdaa.count),
        "kdf": 0,
    }


def oracle_public(raw: bytes) -> dict[str, Any] | None:
    wrapped = _exact(types.TPM2B_PUBLIC, raw)
    if wrapped is None or wrapped.size == 0:
        return None
    area = wrapped.publicArea
    out: dict[str, Any] = {
        "public_area": area.marshal(),
        "type": int(area.type),
        "name_alg": int(area.nameAlg),
        "object_attributes": int(area.objectAttributes),
        "auth_policy": bytes(area.authPolicy),
    }
    kind, params = out["type"], area.parameters
    if kind == 0x0001:
        detail = params.rsaDetail
        out |= {
            "symmetric": _sym(detail.symmetric),
            "scheme": _asym_scheme(detail.scheme),
            "key_bits": int(detail.keyBits),
            "exponent": int(detail.exponent),
            "unique": bytes(area.unique.rsa),
        }
    elif kind == 0x0023:
        detail = params.eccDetail
        out |= {
            "symmetric": _sym(detail.symmetric),
            "scheme": _asym_scheme(detail.scheme),
            "curve": int(detail.curveID),
            "kdf": {
                "scheme": int(detail.kdf.scheme),
                "hash": int(detail.kdf.details.mgf1.hashAlg),
                "count": 0,
                "kdf": 0,
            },
            "x": bytes(area.unique.ecc.x),
            "y": bytes(area.unique.ecc.y),
        }
    elif kind == 0x0008:
        scheme = params.keyedHashDetail.scheme
        out |= {
            "scheme": {
                "scheme": int(scheme.scheme),
                "hash": int(scheme.details.exclusiveOr.hashAlg),
                "count": 0,
                "kdf": int(scheme.details.exclusiveOr.kdf),
            },
            "unique": bytes(area.unique.keyedHash),
        }
    else:
        out |= {"symmetric": _sym(params.symDetail.sym), "unique": bytes(area.unique.sym)}
    return out


def oracle_attest(raw: bytes) -> dict[str, Any] | None:
    wrapped = _exact(types.TPM2B_ATTEST, raw)
    if wrapped is None or len(bytes(wrapped)) == 0:
        return None
    signed = bytes(wrapped)
    attest = _exact(types.TPMS_ATTEST, signed)
    if attest is None:
        return None
    clock = attest.clockInfo
    out: dict[str, Any] = {
        "attest": signed,
        "magic": int(attest.magic),
        "type": int(attest.type),
        "qualified_signer": bytes(attest.qualifiedSigner),
        "extra_data": bytes(attest.extraData),
        "clock": int(clock.clock),
        "reset_count": int(clock.resetCount),
        "restart_count": int(clock.restartCount),
        "safe": int(clock.safe),
        "firmware_version": int(attest.firmwareVersion),
    }
    if out["type"] == 0x8018:
        select = attest.attested.quote.pcrSelect
        entries = [select.pcrSelections[i] for i in range(int(select.count))]
        out["pcr_select"] = [
            (int(e.hash), bytes(e.pcrSelect[j] for j in range(int(e.sizeofSelect))))
            for e in entries
        ]
        out["pcr_digest"] = bytes(attest.attested.quote.pcrDigest)
    elif out["type"] == 0x8017:
        out["name"] = bytes(attest.attested.certify.name)
        out["qualified_name"] = bytes(attest.attested.certify.qualifiedName)
    return out


def oracle_signature(raw: bytes) -> dict[str, Any] | None:
    sig = _exact(types.TPMT_SIGNATURE, raw)
    if sig is None:
        return None
    alg = int(sig.sigAlg)
    out: dict[str, Any] = {"sig_alg": alg}
    if alg in (0x0014, 0x0016):
        out |= {"hash": int(sig.signature.rsassa.hash), "sig": bytes(sig.signature.rsassa.sig)}
    elif alg in (0x0018, 0x001A, 0x001B, 0x001C):
        body = sig.signature.ecdsa
        out |= {"hash": int(body.hash), "r": bytes(body.signatureR), "s": bytes(body.signatureS)}
    elif alg == 0x0005:
        out["hash"] = int(sig.signature.hmac.hashAlg)
        out["digest"] = raw[4:]
    return out


def _core_parse(parse: Callable[[bytes], dict[str, Any]], raw: bytes) -> dict[str, Any] | str:
    try:
        return parse(raw)
    except _core.TpmFormatError as exc:
        return str(exc)


def _normalized(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    out.pop("spki_der", None)  # the core's own addition; checked against pyca below
    if "pcr_select" in out:
        out["pcr_select"] = [tuple(entry) for entry in out["pcr_select"]]
    return out


# ---- mutations --------------------------------------------------------------------------------


def mutations(raw: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    """Deterministic mutations: bit flips, byte and u16 splices, truncation, extension, size
    fields off by one, insertion and deletion."""
    n = len(raw)
    for i in range(count):
        data = bytearray(raw)
        kind = i % 8
        at = rng.randrange(n)
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at] = rng.randrange(256)
        elif kind == 2 and n >= 2:
            at = min(at, n - 2)
            data[at : at + 2] = struct.pack(">H", rng.choice(_INTERESTING_U16))
        elif kind == 3:
            del data[at:]
        elif kind == 4:
            data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        elif kind == 5 and n >= 2:
            at = min(at, n - 2)
            value = int.from_bytes(data[at : at + 2], "big")
            data[at : at + 2] = struct.pack(">H", (value + rng.choice((-1, 1))) & 0xFFFF)
        elif kind == 6:
            data.insert(at, rng.randrange(256))
        else:
            del data[at]
        yield bytes(data)


# ---- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_blocks(tpm_quoter: Any) -> list[dict[str, Any]]:
    """One real swtpm quote per scheme the endpoint offers."""
    return [
        tpm_quoter.quote(PAYLOAD_ID, scheme=scheme, hash_alg=hash_alg)
        for scheme, hash_alg in supported_quote_schemes()
    ]


_FIELDS = {
    "aik_pubkey_b64": (_core.tpm_parse_public, oracle_public),
    "quote_b64": (_core.tpm_parse_attest, oracle_attest),
    "signature_b64": (_core.tpm_parse_signature, oracle_signature),
}


def _compare(field: str, raw: bytes) -> None:
    ours_parse, oracle = _FIELDS[field]
    ours = _core_parse(ours_parse, raw)
    theirs = oracle(raw)
    context = f"{field} {raw.hex()}"
    if theirs is None:
        assert isinstance(ours, str), f"core accepted what libtss2 refuses: {context}"
        return
    if field == "quote_b64" and theirs["type"] not in _QUOTE_TYPES:
        # The deliberate difference: an attestation type nothing here verifies.
        assert isinstance(ours, str) and "neither a quote nor a certify" in ours, context
        return
    assert not isinstance(ours, str), f"core refused ({ours}) what libtss2 reads: {context}"
    assert _normalized(ours) == theirs, context


@pytest.mark.parametrize("field", sorted(_FIELDS))
def test_core_parser_agrees_with_tpm2_pytss_on_real_quotes_and_mutations(
    real_blocks: list[dict[str, Any]], field: str
) -> None:
    rng = random.Random(f"differential-{field}")
    checked = 0
    for block in real_blocks:
        raw = base64.b64decode(block[field])
        _compare(field, raw)
        for mutated in mutations(raw, rng, MUTATIONS_PER_FIELD):
            _compare(field, mutated)
            checked += 1
    assert checked == len(real_blocks) * MUTATIONS_PER_FIELD


# -- signatures: the core's verdict against pyca/cryptography's --------------------------------

_PYCA_HASH = {0x000B: hashes.SHA256, 0x000C: hashes.SHA384, 0x000D: hashes.SHA512}


def pyca_verdict(public_raw: bytes, sig_raw: bytes, message: bytes) -> bool:
    """The quote-signature rule, evaluated independently on libtss2 + pyca/cryptography."""
    public, sig = oracle_public(public_raw), oracle_signature(sig_raw)
    if public is None or sig is None:
        return False
    attrs = public["object_attributes"]
    if not (attrs & 0x00040000 and attrs & 0x00010000):
        return False
    alg, hash_id = sig["sig_alg"], sig.get("hash")
    if alg not in (0x0014, 0x0016, 0x0018) or hash_id not in _PYCA_HASH:
        return False
    fixed = public.get("scheme", {})
    if fixed.get("scheme", 0x0010) != 0x0010 and (fixed["scheme"], fixed["hash"]) != (alg, hash_id):
        return False
    algorithm = _PYCA_HASH[hash_id]()
    try:
        if public["type"] == 0x0023 and alg == 0x0018:
            curve = {3: ec.SECP256R1(), 4: ec.SECP384R1()}.get(public["curve"])
            size = {3: 32, 4: 48}.get(public["curve"], 0)
            if curve is None or max(len(public["x"]), len(public["y"])) > size:
                return False
            if max(len(sig["r"]), len(sig["s"])) > size:
                return False
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(public["x"], "big"), int.from_bytes(public["y"], "big"), curve
            ).public_key()
            der = utils.encode_dss_signature(
                int.from_bytes(sig["r"], "big"), int.from_bytes(sig["s"], "big")
            )
            key.verify(der, message, ec.ECDSA(algorithm))
            return True
        if public["type"] == 0x0001 and alg in (0x0014, 0x0016):
            modulus = public["unique"]
            if len(modulus) * 8 != public["key_bits"] or len(modulus) < 256 or modulus[0] < 0x80:
                return False
            if len(sig["sig"]) != len(modulus):
                return False
            exponent = public["exponent"] or 65537
            key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
            if alg == 0x0014:
                key.verify(sig["sig"], message, padding.PKCS1v15(), algorithm)
                return True
            max_salt = len(modulus) - algorithm.digest_size - 2
            for salt in (algorithm.digest_size, max_salt):
                pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)
                try:
                    key.verify(sig["sig"], message, pss, algorithm)
                    return True
                except InvalidSignature:
                    continue
            return False
    except (InvalidSignature, ValueError):
        return False
    return False


def core_verdict(public_raw: bytes, sig_raw: bytes, message: bytes) -> bool:
    try:
        _core.tpm_verify_signature(public_raw, sig_raw, message)
    except _core.TpmFormatError:
        return False
    return True


def _signature_cases(block: dict[str, Any], rng: random.Random) -> Iterator[tuple[bytes, ...]]:
    public = base64.b64decode(block["aik_pubkey_b64"])
    sig = base64.b64decode(block["signature_b64"])
    message = _core.tpm_parse_attest(base64.b64decode(block["quote_b64"]))["attest"]
    yield public, sig, message
    for mutated in mutations(public, rng, 40):
        yield mutated, sig, message
    for mutated in mutations(sig, rng, 40):
        yield public, mutated, message
    for mutated in mutations(message, rng, 20):
        yield public, sig, mutated


def test_core_signature_verdict_agrees_with_pyca(real_blocks: list[dict[str, Any]]) -> None:
    rng = random.Random("differential-signatures")
    accepted = 0
    for block in real_blocks:
        for public, sig, message in _signature_cases(block, rng):
            expected = pyca_verdict(public, sig, message)
            assert core_verdict(public, sig, message) is expected, (public.hex(), sig.hex())
            accepted += expected
    # Every real quote verifies (and the mutations that keep it intact, e.g. in unused fields).
    assert accepted >= len(real_blocks)


def test_core_spki_matches_pyca_encoding(real_blocks: list[dict[str, Any]]) -> None:
    """The SubjectPublicKeyInfo a PEM pin is compared with is the one pyca writes."""
    from cryptography.hazmat.primitives import serialization

    for block in real_blocks:
        public = types.TPM2B_PUBLIC.unmarshal(base64.b64decode(block["aik_pubkey_b64"]))[0]
        expected = serialization.load_pem_public_key(public.publicArea.to_pem()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        core = _core.tpm_parse_public(base64.b64decode(block["aik_pubkey_b64"]))
        assert core["spki_der"] == expected


VALUES = {"0": "00" * 32, "7": "a7" * 32, "10": "10" * 32}


@pytest.mark.parametrize(
    ("scheme", "hash_alg", "key_kind"),
    [
        ("ecdsa", "sha256", "p256"),
        ("ecdsa", "sha384", "p256"),
        ("ecdsa", "sha512", "p256"),
        ("ecdsa", "sha256", "p384"),
        ("ecdsa", "sha384", "p384"),
        ("ecdsa", "sha512", "p384"),
        ("rsassa", "sha256", "rsa2048"),
        ("rsassa", "sha384", "rsa3072"),
        ("rsassa", "sha512", "rsa2048"),
    ],
)
def test_core_verifies_every_scheme_and_curve(scheme: str, hash_alg: str, key_kind: str) -> None:
    forged = forge_block(PAYLOAD_ID, VALUES, scheme=scheme, hash_alg=hash_alg, key_kind=key_kind)
    public = base64.b64decode(forged.block["aik_pubkey_b64"])
    sig = base64.b64decode(forged.block["signature_b64"])
    message = _core.tpm_parse_attest(base64.b64decode(forged.block["quote_b64"]))["attest"]
    assert core_verdict(public, sig, message) and pyca_verdict(public, sig, message)
    assert not core_verdict(public, sig, message + b"\x00")


@pytest.mark.parametrize("hash_alg", ["sha256", "sha384", "sha512"])
def test_rsa_pss_accepts_digest_and_maximum_salt_only(hash_alg: str) -> None:
    """A TPM may salt PSS with the digest length or the maximum; nothing else is accepted."""
    digest_size = {"sha256": 32, "sha384": 48, "sha512": 64}[hash_alg]
    maximum = 256 - digest_size - 2
    for salt, accepted in [(digest_size, True), (maximum, True), (0, False), (20, False),
                           (digest_size + 1, False), (maximum - 1, False)]:  # fmt: skip
        forged = forge_block(
            PAYLOAD_ID, VALUES, scheme="rsapss", hash_alg=hash_alg, key_kind="rsa2048",
            pss_salt=salt,
        )  # fmt: skip
        public = base64.b64decode(forged.block["aik_pubkey_b64"])
        sig = base64.b64decode(forged.block["signature_b64"])
        message = _core.tpm_parse_attest(base64.b64decode(forged.block["quote_b64"]))["attest"]
        assert core_verdict(public, sig, message) is accepted, salt
        assert pyca_verdict(public, sig, message) is accepted, salt
