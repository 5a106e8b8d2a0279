"""TPM 2.0 quote verification (PROTOCOL.md section 5) and the client's attestation policy.

A response from a server with a TPM carries ``_metadata.tpm_attestation``: an ephemeral AIK's
public area, a quote (``TPMS_ATTEST``) over a PCR selection, its signature and the claimed PCR
values. :func:`verify_attestation` checks each property separately, so that a caller (and the
``_metadata`` record) can see exactly what was proven:

``signature``        the quote is signed by the AIK in the block (a restricted signing key)
``magic_and_type``   ``TPM_GENERATED_VALUE`` and ``TPM_ST_ATTEST_QUOTE``
``qualifying_data``  ``extraData == SHA-256(payload_id)[:16]``: bound to this request
``pcr_digest``       the claimed ``pcr_values`` hash, in selection order, to the signed digest
``pcr_baseline``     the signed digest agrees with the caller's known-good values (if given)
``aik_trusted``      the AIK is the one the caller pinned (if given), and a key that cannot
                     leave its TPM (fixedTPM, fixedParent, sensitiveDataOrigin)

Two verdicts come out of those checks (PROTOCOL.md section 5): ``bound`` (the first four, and
the baseline when given: consistent, and made for this request) and ``hardware_rooted`` (the
signing key is one the caller trusts, pinned or enrolled). ``verified`` is both. An unpinned AIK
is created by the server itself, so it proves binding, never hardware: a server with no TPM can
make a bound quote with a software key.

Policies: ``"off"``; ``"auto"`` (verify and record, never refuse); ``"bound"`` (refuse a response
whose quote is not bound); ``"require"`` (refuse unless verified, so it needs a trust anchor).
:func:`resolve_policy` picks the policy of a request from the explicit one and the tier.

``trusted_aik`` is either a PEM public key (compared as SubjectPublicKeyInfo) or
``"sha256:<hex>"``: the SHA-256 of the AIK's marshalled ``TPMT_PUBLIC`` public area. For a key
whose nameAlg is SHA-256 this is its TPM Name without the ``000b`` prefix, as printed by
``tpm2_readpublic`` (``name:``).

The TSS structures are parsed, and the signature verified, by the native core (``rust/src/tpm``:
bounded parsers, aws-lc signatures), so verification needs no optional package and no C code
unmarshals server input. Nothing here touches a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nomyo_native import _core
from nomyo_native._constants import ATTESTATION_POLICIES

__all__ = [
    "ATTESTATION_POLICIES",
    "BASELINE_FORMAT",
    "CHECK_NAMES",
    "NO_TRUST_ANCHOR_HINT",
    "AttestationResult",
    "BaselineError",
    "CheckResult",
    "aik_fingerprint",
    "aik_residency_problem",
    "apply_attestation_policy",
    "capture_baseline",
    "load_baseline",
    "prepare_baseline",
    "resolve_policy",
    "save_baseline",
    "validate_trusted_aik",
    "verify_attestation",
]

# Said wherever "require" meets a client with nothing to root a quote in.
NO_TRUST_ANCHOR_HINT = (
    "attestation='require' needs a trust anchor for the server's attestation key, else no quote"
    " can ever be verified: pin it with trusted_aik='sha256:<fingerprint>' (the AIK fingerprint"
    " `nomyo-native serve --tpm swtpm` prints at start, or that `nomyo-native attest verify`"
    " shows for a response you trust), or enroll the server's key with `nomyo-native attest"
    " enroll URL --pin-file FILE` and pass aik_pin_file=FILE; or use attestation='bound' to"
    " require only a quote bound to each request"
)
BASELINE_FORMAT = "nomyo-native/pcr-baseline/v1"

# Wire constants (TPM 2.0 Library, Part 2) the Python checks need; the structures themselves are
# parsed, and signatures verified, by the core (rust/src/tpm).
_TPM_GENERATED_VALUE = 0xFF544347
_TPM_ST_ATTEST_QUOTE = 0x8018
_PCR_COUNT = 24  # PC Client platforms implement PCRs 0-23.
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

# PCR banks we understand: TPM algorithm id -> (name used in pcr_banks/pcr_values, digest size).
_BANKS: dict[int, tuple[str, int]] = {
    0x0004: ("sha1", 20),
    0x000B: ("sha256", 32),
    0x000C: ("sha384", 48),
    0x000D: ("sha512", 64),
}
_BANK_IDS = {name: alg for alg, (name, _) in _BANKS.items()}
# The quote's PCR digest uses the signing scheme's hash; its size tells us which.
_DIGEST_BY_SIZE = {32: "sha256", 48: "sha384", 64: "sha512"}

# Generous caps: a real block is well under 2 KiB per field.
_MAX_B64_CHARS = 16 * 1024
_MAX_BASELINE_FILE_BYTES = 1024 * 1024
_FINGERPRINT_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")
_PEM_SPKI_RE = re.compile(r"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----")

Binding = Literal["payload_id", "payload_id+server_key"]
CheckName = Literal[
    "signature", "magic_and_type", "qualifying_data", "pcr_digest", "pcr_baseline", "aik_trusted"
]
CHECK_NAMES: tuple[CheckName, ...] = (
    "signature",
    "magic_and_type",
    "qualifying_data",
    "pcr_digest",
    "pcr_baseline",
    "aik_trusted",
)

# PCR values by bank name, then PCR index: {"sha256": {0: digest bytes, ...}}.
PcrValues = dict[str, dict[int, bytes]]


class BaselineError(ValueError):
    """A PCR baseline (dict or JSON file) is malformed, or could not be captured."""


@dataclass(frozen=True)
class CheckResult:
    """One verification step: ``passed`` is None when the step was not run."""

    name: str
    passed: bool | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class AttestationResult:
    """What :func:`verify_attestation` proved, one field per check, and two verdicts.

    ``bound``: the server reported a TPM and the quote is consistent and made for this request
    (signature by the AIK in the block, magic and type, qualifying data, PCR digest, and the
    baseline when one was given). A server with no TPM can produce a bound quote with a
    software key. ``hardware_rooted``: the signing key is one the caller trusts (pinned with
    ``trusted_aik``, or enrolled) and it signed this quote. ``verified`` is both.
    """

    signature: CheckResult
    magic_and_type: CheckResult
    qualifying_data: CheckResult
    pcr_digest: CheckResult
    pcr_baseline: CheckResult
    aik_trusted: CheckResult
    available: bool
    aik_fingerprint: str | None = None
    pcr_banks: str | None = None
    # What the qualifying data binds: "payload_id" (published) or "payload_id+server_key".
    binding: Binding | None = None

    @property
    def checks(self) -> tuple[CheckResult, ...]:
        return tuple(getattr(self, name) for name in CHECK_NAMES)

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if check.passed is False)

    @property
    def bound(self) -> bool:
        required = (self.signature, self.magic_and_type, self.qualifying_data, self.pcr_digest)
        return (
            self.available
            and all(check.passed is True for check in required)
            and self.pcr_baseline.passed is not False
        )

    @property
    def hardware_rooted(self) -> bool:
        return self.available and self.signature.passed is True and self.aik_trusted.passed is True

    @property
    def verified(self) -> bool:
        return self.bound and self.hardware_rooted

    @property
    def level(self) -> Literal["none", "bound", "rooted"]:
        """The README's three levels: ``rooted`` is a verified quote."""
        if self.verified:
            return "rooted"
        return "bound" if self.bound else "none"

    @property
    def summary(self) -> str:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in self.failed_checks)
        if failed and not self.bound:
            return f"TPM quote NOT bound (not verified). Failed: {failed}."
        if not self.available:
            return "None: the server reported no TPM (is_available is false)."
        proven = [
            "signed by the AIK in the response",
            "a TPM-generated quote",
            "bound to this request's payload id",
            "PCR values consistent with the signed digest",
        ]
        if self.pcr_baseline.passed:
            proven.append("PCR values equal to the known-good baseline")
        text = ", ".join(proven) + "."
        if self.verified:
            rooted = (
                f"TPM quote verified (bound and hardware-rooted): {text} The AIK is the trusted"
                " key, so a TPM holding it made this quote."
            )
            if self.binding == "payload_id+server_key":
                return rooted + (
                    " It is also bound to the server key the request was encrypted to, so it was"
                    " not relayed from another server."
                )
            return rooted + (
                " The quote is bound to the payload id only: it proves which TPM quoted, not"
                " which host decrypted the request."
            )
        if self.aik_trusted.passed is None:
            why = (
                "the AIK is not pinned or enrolled, so this proves binding to this request and"
                " consistency, not genuine TPM hardware: a server without a TPM can make such a"
                " quote with a software key"
            )
        else:
            why = f"the AIK is not the trusted key ({self.aik_trusted.detail})"
        return f"TPM quote bound, NOT hardware-rooted: {text} Not verified: {why}."

    def to_dict(self) -> dict[str, Any]:
        """The record stored in ``_metadata["attestation_verification"]`` (JSON-safe)."""
        return {
            "verified": self.verified,
            "bound": self.bound,
            "hardware_rooted": self.hardware_rooted,
            "level": self.level,
            "available": self.available,
            "summary": self.summary,
            "aik_fingerprint": self.aik_fingerprint,
            "pcr_banks": self.pcr_banks,
            "binding": self.binding,
            "checks": {check.name: check.to_dict() for check in self.checks},
        }


# ---- public API ------------------------------------------------------------------------------


def verify_attestation(
    tpm_attestation: Mapping[str, Any],
    payload_id: str,
    *,
    pcr_baseline: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    trusted_aik: str | bytes | None = None,
    server_key_fingerprint: str | None = None,
) -> AttestationResult:
    """Verify a ``_metadata.tpm_attestation`` block for the request ``payload_id``.

    A malformed block never raises: the checks that depend on the broken field fail and name
    it. Raises ``TypeError`` for a non-string ``payload_id``, :class:`BaselineError` or
    ``ValueError`` for a malformed ``pcr_baseline`` / ``trusted_aik`` (caller configuration),
    Needs no optional package: the core parses the TPM structures and verifies the signature.
    """
    if not isinstance(payload_id, str):
        raise TypeError(f"payload_id must be a str, not {type(payload_id).__name__}")
    baseline = load_baseline(pcr_baseline) if pcr_baseline is not None else None
    pin = _parse_trusted_aik(trusted_aik) if trusted_aik is not None else None
    if server_key_fingerprint is not None and not isinstance(server_key_fingerprint, str):
        raise TypeError("server_key_fingerprint must be a str")
    return _Verifier(tpm_attestation, payload_id, baseline, pin, server_key_fingerprint).run()


def resolve_policy(explicit: str | None, tier: str | None, *, has_anchor: bool) -> str:
    """The policy a request runs under: an explicit one always wins; otherwise tier ``maximum``
    asks for ``"require"`` when a trust anchor is configured and ``"bound"`` when none is, and
    every other tier for ``"auto"``. Raises ``ValueError`` for an unknown policy, and for
    ``"require"`` without an anchor (:data:`NO_TRUST_ANCHOR_HINT`): that answer would be
    refused whatever the server sent, so the request must not be sent."""
    if explicit is not None:
        policy = validate_policy(explicit)
    elif tier == "maximum":
        policy = "require" if has_anchor else "bound"
    else:
        policy = "auto"
    if policy == "require" and not has_anchor:
        raise ValueError(NO_TRUST_ANCHOR_HINT)
    return policy


def validate_policy(policy: Any) -> str:
    if policy not in ATTESTATION_POLICIES:
        raise ValueError(
            f"attestation policy must be one of {', '.join(ATTESTATION_POLICIES)}, not {policy!r}"
        )
    return str(policy)


def apply_attestation_policy(
    metadata: dict[str, Any],
    payload_id: str,
    policy: str,
    *,
    pcr_baseline: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    trusted_aik: str | bytes | None = None,
    server_key_fingerprint: str | None = None,
    untrusted_key_hint: str | None = None,
) -> None:
    """Apply ``policy`` ("off", "auto", "bound" or "require") to a response's ``_metadata``.

    ``untrusted_key_hint`` is appended to the refusal when the quote's key is not the trusted
    one (e.g. how to re-enroll a server whose TPM was reset).

    Records the outcome in ``metadata["attestation_verification"]``. Under "bound" a missing or
    unavailable block or a quote that is not bound, and under "require" any quote that is not
    verified (bound and hardware-rooted), raise :class:`nomyo_native.errors.SecurityError`
    (after recording), so the caller must not hand out the response content.
    """
    validate_policy(policy)
    if policy == "off":
        return
    block = metadata.get("tpm_attestation")
    if block is None:
        _record_unverified(metadata, "no tpm_attestation block in the response", available=False)
        if policy in ("bound", "require"):
            _raise_security(f"TPM attestation '{policy}' but the response carries none")
        return
    result = verify_attestation(
        block,
        payload_id,
        pcr_baseline=pcr_baseline,
        trusted_aik=trusted_aik,
        server_key_fingerprint=server_key_fingerprint,
    )
    metadata["attestation_verification"] = result.to_dict()
    if policy == "bound" and not result.bound:
        _raise_security(f"TPM attestation 'bound' but the quote is not bound: {result.summary}")
    if policy == "require" and not result.verified:
        message = f"TPM attestation required but not verified: {result.summary}"
        if untrusted_key_hint is not None and result.aik_trusted.passed is False:
            message = f"{message} {untrusted_key_hint}"
        _raise_security(message)


def aik_fingerprint(aik_pubkey_b64: str) -> str:
    """``sha256:<hex>`` of the marshalled public area in ``aik_pubkey_b64`` (for pinning).

    Raises ``ValueError`` naming the problem when the value is not a TPM2B_PUBLIC.
    """
    raw = _b64("aik_pubkey_b64", aik_pubkey_b64)
    return _fingerprint_of(_parse_structure("aik_pubkey_b64", raw)["public_area"])


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


def capture_baseline(tpm_attestation: Mapping[str, Any], payload_id: str | None = None) -> dict:
    """A baseline (the ``save_baseline`` format) from a block the user trusts.

    The quote must verify (signature, magic and type, PCR digest, and the payload id binding
    when ``payload_id`` is given); otherwise :class:`BaselineError` names what failed.
    """
    result = verify_attestation(tpm_attestation, payload_id if payload_id is not None else "")
    required = ["signature", "magic_and_type", "pcr_digest"]
    if payload_id is not None:
        required.append("qualifying_data")
    if not result.available:
        raise BaselineError("cannot capture a baseline: the server reported no TPM")
    failed = [getattr(result, name) for name in required if not getattr(result, name).passed]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise BaselineError(f"cannot capture a baseline from an unverified quote ({reasons})")
    values = _normalize_values(tpm_attestation["pcr_values"])
    return {
        "format": BASELINE_FORMAT,
        "pcr_banks": result.pcr_banks,
        "pcr_values": _values_to_json(values),
        "aik_fingerprint": result.aik_fingerprint,
    }


def load_baseline(source: Mapping[str, Any] | str | os.PathLike[str]) -> PcrValues:
    """Normalize a baseline: a dict, or the path of a JSON file, to ``{bank: {index: bytes}}``.

    Accepts the :func:`capture_baseline` format or a bare ``{"sha256": {"0": "<hex>"}}``.
    """
    if isinstance(source, (str, os.PathLike)):
        data = _read_baseline_file(Path(source))
    elif isinstance(source, Mapping):
        data = source
    else:
        raise BaselineError(
            f"pcr_baseline must be a mapping or a file path, not {type(source).__name__}"
        )
    if "pcr_values" in data:
        fmt = data.get("format", BASELINE_FORMAT)
        if fmt != BASELINE_FORMAT:
            raise BaselineError(f"unsupported baseline format {fmt!r}")
        data = data["pcr_values"]
    try:
        values = _normalize_values(data)
    except ValueError as exc:
        raise BaselineError(f"invalid PCR baseline: {exc}") from None
    if not any(values.values()):
        raise BaselineError("invalid PCR baseline: it lists no PCR values")
    return values


def prepare_baseline(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a baseline now (a mapping or a JSON file) and return it in the plain
    ``{bank: {index: hex}}`` form that :func:`verify_attestation` accepts, so that a client can
    refuse a bad baseline when it is configured rather than after a request was sent."""
    return _values_to_json(load_baseline(source))


def validate_trusted_aik(value: str | bytes) -> None:
    """Raise ``ValueError``/``TypeError`` now if ``value`` is not a usable AIK pin."""
    _parse_trusted_aik(value)


def save_baseline(baseline: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a baseline as JSON (atomically: a reader never sees half a file)."""
    load_baseline(baseline)  # refuse to write something we could not read back
    target = Path(path)
    text = json.dumps(dict(baseline), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- qualifying data --------------------------------------------------------------------------


_KEY_BINDING_LABEL = b"nomyo-native/quote-binding/v1\x00"


def _published_qualifying_data(payload_id: str) -> bytes:
    """PROTOCOL.md section 5: ``SHA-256(payload_id UTF-8)[:16]``."""
    return hashlib.sha256(payload_id.encode("utf-8")).digest()[:16]


def _key_bound_qualifying_data(payload_id: str, server_key_fingerprint: str) -> bytes:
    """The extension (README, "Attestation extension"): ``SHA-256(label || payload_id || 0x00 ||
    server key fingerprint)[:16]``, so that a quote relayed from another server fails."""
    material = (
        _KEY_BINDING_LABEL
        + payload_id.encode("utf-8")
        + b"\x00"
        + server_key_fingerprint.encode("utf-8")
    )
    return hashlib.sha256(material).digest()[:16]


# ---- policy helpers --------------------------------------------------------------------------


def _record_unverified(metadata: dict[str, Any], reason: str, *, available: bool) -> None:
    metadata["attestation_verification"] = {
        "verified": False,
        "bound": False,
        "hardware_rooted": False,
        "level": "none",
        "available": available,
        "summary": f"not verified: {reason}",
        "reason": reason,
    }


def _raise_security(message: str) -> None:
    # Imported here so that this module does not depend on the client package at import time.
    from nomyo_native.errors import SecurityError

    raise SecurityError(message)


# ---- value parsing ---------------------------------------------------------------------------


def _normalize_values(data: Any) -> PcrValues:
    """``{bank: {index: hex}}`` -> ``{bank: {int index: bytes}}``, strictly validated."""
    if not isinstance(data, Mapping):
        raise ValueError(f"PCR values must be an object of banks, not {type(data).__name__}")
    out: PcrValues = {}
    for bank, entries in data.items():
        if bank not in _BANK_IDS:
            raise ValueError(f"unknown PCR bank {bank!r} (known: {', '.join(_BANK_IDS)})")
        if not isinstance(entries, Mapping):
            raise ValueError(f"PCR bank {bank} must map indices to hex digests")
        size = _BANKS[_BANK_IDS[bank]][1]
        bank_values: dict[int, bytes] = {}
        for key, value in entries.items():
            index = _pcr_index(key)
            if not isinstance(value, str):
                raise ValueError(f"PCR {bank}:{index} must be a hex string")
            try:
                digest = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"PCR {bank}:{index} is not valid hex") from None
            if len(digest) != size:
                raise ValueError(f"PCR {bank}:{index} must be {size} bytes, not {len(digest)}")
            if index in bank_values:
                raise ValueError(f"PCR {bank}:{index} is listed twice")
            bank_values[index] = digest
        out[bank] = bank_values
    return out


def _pcr_index(key: Any) -> int:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ValueError(f"PCR index {key!r} must be a decimal string")
    text = str(key)
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text.startswith("0")):
        raise ValueError(f"PCR index {key!r} must be a decimal number")
    index = int(text)
    if index >= _PCR_COUNT:
        raise ValueError(f"PCR index {index} is out of range 0-{_PCR_COUNT - 1}")
    return index


def _values_to_json(values: PcrValues) -> dict[str, dict[str, str]]:
    return {
        bank: {str(i): entries[i].hex() for i in sorted(entries)}
        for bank, entries in values.items()
    }


def _parse_pcr_banks(text: Any) -> list[tuple[str, list[int]]]:
    """``"sha256:0,7,10"`` (banks joined by ``+``, as tpm2-tools writes) -> selection list."""
    if not isinstance(text, str) or not text:
        raise ValueError("pcr_banks must be a non-empty string like 'sha256:0,7,10'")
    selection: list[tuple[str, list[int]]] = []
    for part in text.split("+"):
        bank, sep, indices = part.partition(":")
        if not sep or bank not in _BANK_IDS:
            raise ValueError(f"pcr_banks entry {part!r} is not '<bank>:<i>,<j>,...'")
        parsed = [_pcr_index(i) for i in indices.split(",")]
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"pcr_banks entry {part!r} repeats an index")
        if any(b == bank for b, _ in selection):
            raise ValueError(f"pcr_banks names bank {bank} twice")
        selection.append((bank, sorted(parsed)))
    return selection


def _format_selection(selection: list[tuple[str, list[int]]]) -> str:
    return "+".join(f"{bank}:{','.join(map(str, indices))}" for bank, indices in selection)


def _read_baseline_file(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_BASELINE_FILE_BYTES + 1)
    except OSError as exc:
        raise BaselineError(f"cannot read PCR baseline file {path}: {exc.strerror}") from None
    if len(raw) > _MAX_BASELINE_FILE_BYTES:
        raise BaselineError(f"PCR baseline file {path} is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"PCR baseline file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise BaselineError(f"PCR baseline file {path} must hold a JSON object")
    return data


# ---- AIK pinning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _AikPin:
    fingerprint: str | None = None  # "sha256:<hex>" of the marshalled TPMT_PUBLIC
    spki_der: bytes | None = None  # SubjectPublicKeyInfo of a pinned PEM key

    def describe(self) -> str:
        if self.fingerprint is not None:
            return self.fingerprint
        return "the pinned PEM key"


def _fingerprint_of(public_area: bytes) -> str:
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


def _parse_trusted_aik(value: str | bytes) -> _AikPin:
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
        return _AikPin(fingerprint="sha256:" + match.group(1).lower())
    if text.startswith("-----BEGIN"):
        return _AikPin(spki_der=_pem_spki(text))
    raise ValueError(
        "trusted_aik must be 'sha256:<64 hex digits>' (SHA-256 of the AIK's marshalled "
        "TPMT_PUBLIC) or a PEM public key"
    )


# ---- verification ----------------------------------------------------------------------------


class _Malformed(ValueError):
    """A field of the block could not be decoded; the message names it (never secret)."""


def _b64(field: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise _Malformed(f"{field} must be a base64 string, not {type(value).__name__}")
    if len(value) > _MAX_B64_CHARS:
        raise _Malformed(f"{field} is longer than {_MAX_B64_CHARS} characters")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Malformed(f"{field} is not valid base64") from None
    if not raw:
        raise _Malformed(f"{field} is empty")
    return raw


# Each wire field, the TPM structure it holds, and the core parser for it (bounded, in Rust).
_STRUCTURES: dict[str, tuple[str, Callable[[bytes], dict[str, Any]]]] = {
    "aik_pubkey_b64": ("TPM2B_PUBLIC", _core.tpm_parse_public),
    "quote_b64": ("TPM2B_ATTEST", _core.tpm_parse_attest),
    "signature_b64": ("TPMT_SIGNATURE", _core.tpm_parse_signature),
}


def _parse_structure(field: str, raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` as the structure ``field`` carries: every byte consumed, within bounds."""
    structure, parse = _STRUCTURES[field]
    try:
        return parse(raw)
    except _core.TpmFormatError as exc:
        raise _Malformed(f"{field} is not a valid {structure} ({exc})") from None


def _contained(name: str, check: Callable[..., CheckResult], *args: Any) -> CheckResult:
    """Run one check; an unexpected error fails it instead of escaping."""
    try:
        return check(*args)
    except Exception as exc:
        return CheckResult(name, False, f"could not be evaluated ({type(exc).__name__})")


@dataclass(frozen=True)
class _Parsed:
    """One field of the block, decoded or with the reason it could not be."""

    value: Any = None
    error: str | None = None


def _parse(fn: Callable[[], Any]) -> _Parsed:
    try:
        return _Parsed(value=fn())
    except _Malformed as exc:
        return _Parsed(error=str(exc))


@dataclass(frozen=True)
class _Structure:
    """A TPM structure from the block: its wire bytes and the core's parse of them."""

    raw: bytes
    fields: dict[str, Any]


class _Verifier:
    def __init__(
        self,
        block: Any,
        payload_id: str,
        baseline: PcrValues | None,
        pin: _AikPin | None,
        server_key_fingerprint: str | None = None,
    ) -> None:
        self.block = block
        self.payload_id = payload_id
        self.baseline = baseline
        self.pin = pin
        self.server_key_fingerprint = server_key_fingerprint

    def run(self) -> AttestationResult:
        block = self.block
        if not isinstance(block, Mapping):
            return self._all_failed(
                f"tpm_attestation must be an object, not {type(block).__name__}", available=False
            )
        available = block.get("is_available")
        if available is False:
            return self._not_available()
        if available is not True:
            return self._all_failed("is_available must be true or false", available=False)

        aik = _parse(lambda: self._field_struct("aik_pubkey_b64"))
        quote = _parse(lambda: self._field_struct("quote_b64"))
        signature = _parse(lambda: self._field_struct("signature_b64"))
        selection = _parse(lambda: self._field_json("pcr_banks", _parse_pcr_banks))
        values = _parse(lambda: self._field_json("pcr_values", _normalize_values))

        fingerprint = None
        if aik.value is not None:
            fingerprint = _fingerprint_of(aik.value.fields["public_area"])
        return AttestationResult(
            signature=_contained("signature", self._check_signature, aik, quote, signature),
            magic_and_type=_contained("magic_and_type", self._check_magic_and_type, quote),
            qualifying_data=_contained("qualifying_data", self._check_qualifying_data, quote),
            pcr_digest=_contained("pcr_digest", self._check_pcr_digest, quote, selection, values),
            pcr_baseline=_contained("pcr_baseline", self._check_baseline, quote, values),
            aik_trusted=_contained("aik_trusted", self._check_aik, aik),
            available=True,
            aik_fingerprint=fingerprint,
            pcr_banks=_format_selection(selection.value) if selection.value else None,
            binding=self._binding(quote),
        )

    # -- decoding --

    def _field_json(self, field: str, parse: Callable[[Any], Any]) -> Any:
        if field not in self.block:
            raise _Malformed(f"{field} is missing")
        try:
            return parse(self.block[field])
        except ValueError as exc:
            raise _Malformed(f"{field}: {exc}") from None

    def _field_struct(self, field: str) -> _Structure:
        if field not in self.block:
            raise _Malformed(f"{field} is missing")
        raw = _b64(field, self.block[field])
        return _Structure(raw, _parse_structure(field, raw))

    # -- checks --

    def _check_signature(self, aik: _Parsed, quote: _Parsed, sig: _Parsed) -> CheckResult:
        name = "signature"
        for parsed in (aik, quote, sig):
            if parsed.error:
                return CheckResult(name, False, parsed.error)
        try:
            detail = _core.tpm_verify_signature(
                aik.value.raw, sig.value.raw, quote.value.fields["attest"]
            )
        except _core.TpmFormatError as exc:
            return CheckResult(name, False, str(exc))
        return CheckResult(name, True, detail)

    def _check_magic_and_type(self, quote: _Parsed) -> CheckResult:
        name = "magic_and_type"
        if quote.error:
            return CheckResult(name, False, quote.error)
        attest = quote.value.fields
        magic, st = attest["magic"], attest["type"]
        if magic != _TPM_GENERATED_VALUE:
            return CheckResult(name, False, f"magic is {magic:#010x}, not TPM_GENERATED_VALUE")
        if st != _TPM_ST_ATTEST_QUOTE:
            return CheckResult(name, False, f"attest type is {st:#06x}, not TPM_ST_ATTEST_QUOTE")
        return CheckResult(name, True, "TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE")

    def _binding(self, quote: _Parsed) -> Binding | None:
        """Which binding the quote's qualifying data carries, if any we can recompute."""
        if quote.error:
            return None
        actual = quote.value.fields["extra_data"]
        if actual == _published_qualifying_data(self.payload_id):
            return "payload_id"
        fingerprint = self.server_key_fingerprint
        if fingerprint is not None and actual == _key_bound_qualifying_data(
            self.payload_id, fingerprint
        ):
            return "payload_id+server_key"
        return None

    def _check_qualifying_data(self, quote: _Parsed) -> CheckResult:
        name = "qualifying_data"
        if quote.error:
            return CheckResult(name, False, quote.error)
        binding = self._binding(quote)
        if binding == "payload_id":
            return CheckResult(name, True, "extraData == SHA-256(payload_id)[:16]")
        if binding == "payload_id+server_key":
            return CheckResult(
                name,
                True,
                f"extraData binds the payload id and the server key {self.server_key_fingerprint}",
            )
        if (
            self.server_key_fingerprint is None
            and self.block.get("binding") == "payload_id+server_key"
        ):
            return CheckResult(
                name,
                False,
                "extraData binds the payload id and a server key: give the fingerprint of the "
                "server key the request was encrypted to (server_key_fingerprint) to check it",
            )
        return CheckResult(
            name,
            False,
            "extraData binds neither this payload id nor this payload id with the server key "
            "the request was encrypted to: the quote is for another request, or was relayed "
            "from another server",
        )

    def _quote_selection(self, attest: dict[str, Any]) -> list[tuple[str, list[int]]]:
        """The PCR selection the TPM signed, in its order."""
        if attest["type"] != _TPM_ST_ATTEST_QUOTE:
            # A certify structure has no PCRs: refuse rather than misinterpret.
            raise _Malformed("quote_b64 holds no PCR quote (attest type is not a quote)")
        selection: list[tuple[str, list[int]]] = []
        for alg, bits in attest["pcr_select"]:
            if alg not in _BANKS:
                raise _Malformed(f"quote selects PCR bank {alg:#06x}, which is not supported")
            # Bit b of byte n selects PCR 8n + b; the TPM hashes them in ascending order.
            chosen = [pcr for pcr in range(8 * len(bits)) if bits[pcr // 8] >> (pcr % 8) & 1]
            if chosen:
                selection.append((_BANKS[alg][0], chosen))
        return selection

    def _signed_digest(self, attest: dict[str, Any]) -> tuple[str, bytes]:
        digest = attest["pcr_digest"]
        alg = _DIGEST_BY_SIZE.get(len(digest))
        if alg is None:
            raise _Malformed(f"quote PCR digest has an unsupported size ({len(digest)} bytes)")
        return alg, digest

    @staticmethod
    def _digest_of(alg: str, selection: list[tuple[str, list[int]]], values: PcrValues) -> bytes:
        h = hashlib.new(alg)
        for bank, indices in selection:
            for index in indices:
                h.update(values[bank][index])
        return h.digest()

    def _check_pcr_digest(self, quote: _Parsed, selection: _Parsed, values: _Parsed) -> CheckResult:
        name = "pcr_digest"
        for parsed in (quote, selection, values):
            if parsed.error:
                return CheckResult(name, False, parsed.error)
        try:
            signed = self._quote_selection(quote.value.fields)
            alg, digest = self._signed_digest(quote.value.fields)
        except _Malformed as exc:
            return CheckResult(name, False, str(exc))
        if signed != selection.value:
            return CheckResult(
                name,
                False,
                f"quote selects {_format_selection(signed) or 'no PCRs'}, "
                f"pcr_banks says {_format_selection(selection.value)}",
            )
        claimed = {bank: sorted(entries) for bank, entries in values.value.items() if entries}
        if claimed != {bank: indices for bank, indices in signed}:
            return CheckResult(name, False, "pcr_values do not list exactly the quoted PCRs")
        if self._digest_of(alg, signed, values.value) != digest:
            return CheckResult(
                name, False, f"{alg} of the pcr_values does not match the quote's PCR digest"
            )
        return CheckResult(name, True, f"{alg} of {_format_selection(signed)} matches the quote")

    def _check_baseline(self, quote: _Parsed, values: _Parsed) -> CheckResult:
        name = "pcr_baseline"
        if self.baseline is None:
            return CheckResult(name, None, "not run: no baseline given")
        if quote.error:
            return CheckResult(name, False, quote.error)
        try:
            signed = self._quote_selection(quote.value.fields)
            alg, digest = self._signed_digest(quote.value.fields)
        except _Malformed as exc:
            return CheckResult(name, False, str(exc))
        quoted = {(bank, index) for bank, indices in signed for index in indices}
        missing = [
            f"{bank}:{index}"
            for bank, entries in self.baseline.items()
            for index in sorted(entries)
            if (bank, index) not in quoted
        ]
        if missing:
            return CheckResult(name, False, f"baseline PCRs not in the quote: {', '.join(missing)}")
        # Compare against what the TPM signed, not the claimed values: the baselined PCRs take
        # their baseline values and the rest the claimed ones; a matching digest proves the TPM's
        # PCRs equal the baseline (a tampered claimed value then fails only pcr_digest).
        claimed = values.value or {}
        expected: PcrValues = {}
        unproven: list[str] = []
        for bank, indices in signed:
            expected[bank] = {}
            for index in indices:
                if index in self.baseline.get(bank, {}):
                    expected[bank][index] = self.baseline[bank][index]
                elif index in claimed.get(bank, {}):
                    expected[bank][index] = claimed[bank][index]
                else:
                    unproven.append(f"{bank}:{index}")
        if unproven:
            return CheckResult(
                name, False, f"cannot recompute the digest: no value for {', '.join(unproven)}"
            )
        if self._digest_of(alg, signed, expected) == digest:
            count = sum(len(entries) for entries in self.baseline.values())
            return CheckResult(name, True, f"the quote matches the baseline for {count} PCRs")
        differing = [
            f"{bank}:{index}"
            for bank, entries in self.baseline.items()
            for index in sorted(entries)
            if claimed.get(bank, {}).get(index) not in (None, entries[index])
        ]
        if differing:
            return CheckResult(
                name, False, f"PCRs differ from the baseline: {', '.join(differing)}"
            )
        return CheckResult(name, False, "the quote's PCR digest does not match the baseline")

    def _check_aik(self, aik: _Parsed) -> CheckResult:
        name = "aik_trusted"
        if self.pin is None:
            return CheckResult(
                name, None, "not run: no trusted_aik pinned (an ephemeral AIK proves no hardware)"
            )
        if aik.error:
            return CheckResult(name, False, aik.error)
        if self.pin.fingerprint is not None:
            matches = _fingerprint_of(aik.value.fields["public_area"]) == self.pin.fingerprint
        else:
            spki = aik.value.fields["spki_der"]
            if spki is None:
                return CheckResult(name, False, "the AIK is neither an RSA nor a P-256/P-384 key")
            matches = spki == self.pin.spki_der
        if not matches:
            return CheckResult(name, False, f"the AIK is not {self.pin.describe()}")
        problem = aik_residency_problem(aik.value.fields["object_attributes"])
        if problem is not None:
            return CheckResult(name, False, f"{problem} (pinned as {self.pin.describe()})")
        return CheckResult(name, True, f"the AIK is {self.pin.describe()}")

    # -- whole-block outcomes --

    def _all_failed(self, reason: str, *, available: bool) -> AttestationResult:
        checks = {name: CheckResult(name, False, reason) for name in CHECK_NAMES}
        if self.baseline is None:
            checks["pcr_baseline"] = CheckResult("pcr_baseline", None, "not run: no baseline given")
        if self.pin is None:
            checks["aik_trusted"] = CheckResult("aik_trusted", None, "not run: no trusted_aik")
        return AttestationResult(**checks, available=available)

    def _not_available(self) -> AttestationResult:
        reason = "not run: the server reported no TPM"
        checks = {name: CheckResult(name, None, reason) for name in CHECK_NAMES}
        return AttestationResult(**checks, available=False)
