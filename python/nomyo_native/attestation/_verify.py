"""Verification of a ``tpm_attestation`` block: each check run separately (a broken field
fails the checks that need it, never raises), and the baseline captured from a trusted one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from nomyo_native import _core
from nomyo_native.attestation._aik import (
    AikPin,
    aik_residency_problem,
    fingerprint_of,
    parse_trusted_aik,
)
from nomyo_native.attestation._baseline import BASELINE_FORMAT, BaselineError, load_baseline
from nomyo_native.attestation._pcr import (
    PcrValues,
    check_baseline,
    check_pcr_digest,
    format_selection,
    normalize_values,
    parse_pcr_banks,
    values_to_json,
)
from nomyo_native.attestation._result import (
    CHECK_NAMES,
    AttestationResult,
    Binding,
    CheckName,
    CheckResult,
)
from nomyo_native.attestation._wire import (
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    Malformed,
    Parsed,
    Structure,
    decode_b64,
    parse_field,
    parse_structure,
)


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
    pin = parse_trusted_aik(trusted_aik) if trusted_aik is not None else None
    if server_key_fingerprint is not None and not isinstance(server_key_fingerprint, str):
        raise TypeError("server_key_fingerprint must be a str")
    return _Verifier(tpm_attestation, payload_id, baseline, pin, server_key_fingerprint).run()


def capture_baseline(
    tpm_attestation: Mapping[str, Any], payload_id: str | None = None
) -> dict[str, Any]:
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
    values = normalize_values(tpm_attestation["pcr_values"])
    return {
        "format": BASELINE_FORMAT,
        "pcr_banks": result.pcr_banks,
        "pcr_values": values_to_json(values),
        "aik_fingerprint": result.aik_fingerprint,
    }


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


def _contained(name: str, check: Callable[..., CheckResult], *args: Any) -> CheckResult:
    """Run one check; an unexpected error fails it instead of escaping."""
    try:
        return check(*args)
    except Exception as exc:
        return CheckResult(name, False, f"could not be evaluated ({type(exc).__name__})")


class _Verifier:
    def __init__(
        self,
        block: Any,
        payload_id: str,
        baseline: PcrValues | None,
        pin: AikPin | None,
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

        aik = parse_field(lambda: self._field_struct("aik_pubkey_b64"))
        quote = parse_field(lambda: self._field_struct("quote_b64"))
        signature = parse_field(lambda: self._field_struct("signature_b64"))
        selection = parse_field(lambda: self._field_json("pcr_banks", parse_pcr_banks))
        values = parse_field(lambda: self._field_json("pcr_values", normalize_values))

        fingerprint = None
        if aik.value is not None:
            fingerprint = fingerprint_of(aik.value.fields["public_area"])
        return AttestationResult(
            signature=_contained("signature", self._check_signature, aik, quote, signature),
            magic_and_type=_contained("magic_and_type", self._check_magic_and_type, quote),
            qualifying_data=_contained("qualifying_data", self._check_qualifying_data, quote),
            pcr_digest=_contained("pcr_digest", check_pcr_digest, quote, selection, values),
            pcr_baseline=_contained("pcr_baseline", check_baseline, self.baseline, quote, values),
            aik_trusted=_contained("aik_trusted", self._check_aik, aik),
            available=True,
            aik_fingerprint=fingerprint,
            pcr_banks=format_selection(selection.value) if selection.value else None,
            binding=self._binding(quote),
        )

    # -- decoding --

    def _field_json(self, field: str, parse: Callable[[Any], Any]) -> Any:
        if field not in self.block:
            raise Malformed(f"{field} is missing")
        try:
            return parse(self.block[field])
        except ValueError as exc:
            raise Malformed(f"{field}: {exc}") from None

    def _field_struct(self, field: str) -> Structure:
        if field not in self.block:
            raise Malformed(f"{field} is missing")
        raw = decode_b64(field, self.block[field])
        return Structure(raw, parse_structure(field, raw))

    # -- checks --

    def _check_signature(self, aik: Parsed, quote: Parsed, sig: Parsed) -> CheckResult:
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

    def _check_magic_and_type(self, quote: Parsed) -> CheckResult:
        name = "magic_and_type"
        if quote.error:
            return CheckResult(name, False, quote.error)
        attest = quote.value.fields
        magic, st = attest["magic"], attest["type"]
        if magic != TPM_GENERATED_VALUE:
            return CheckResult(name, False, f"magic is {magic:#010x}, not TPM_GENERATED_VALUE")
        if st != TPM_ST_ATTEST_QUOTE:
            return CheckResult(name, False, f"attest type is {st:#06x}, not TPM_ST_ATTEST_QUOTE")
        return CheckResult(name, True, "TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE")

    def _binding(self, quote: Parsed) -> Binding | None:
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

    def _check_qualifying_data(self, quote: Parsed) -> CheckResult:
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

    def _check_aik(self, aik: Parsed) -> CheckResult:
        name = "aik_trusted"
        if self.pin is None:
            return CheckResult(
                name, None, "not run: no trusted_aik pinned (an ephemeral AIK proves no hardware)"
            )
        if aik.error:
            return CheckResult(name, False, aik.error)
        if self.pin.fingerprint is not None:
            matches = fingerprint_of(aik.value.fields["public_area"]) == self.pin.fingerprint
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
        return _whole_block(checks, available=available)

    def _not_available(self) -> AttestationResult:
        return _NOT_AVAILABLE


def _whole_block(checks: Mapping[CheckName, CheckResult], *, available: bool) -> AttestationResult:
    """A result whose checks all come from one verdict on the whole block."""
    return AttestationResult(
        signature=checks["signature"],
        magic_and_type=checks["magic_and_type"],
        qualifying_data=checks["qualifying_data"],
        pcr_digest=checks["pcr_digest"],
        pcr_baseline=checks["pcr_baseline"],
        aik_trusted=checks["aik_trusted"],
        available=available,
    )


# The verdict on a server with no TPM (most answers): always the same, and immutable.
_NOT_AVAILABLE = _whole_block(
    {name: CheckResult(name, None, "not run: the server reported no TPM") for name in CHECK_NAMES},
    available=False,
)
