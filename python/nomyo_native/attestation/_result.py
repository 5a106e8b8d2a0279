"""The result model: what :func:`verify_attestation` proved, one :class:`CheckResult` per
check, and the verdicts built from them (``bound``, ``hardware_rooted``, ``verified``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from nomyo_native.types import AttestationChecks, AttestationVerification, CheckOutcome

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


@dataclass(frozen=True)
class CheckResult:
    """One verification step: ``passed`` is None when the step was not run."""

    name: str
    passed: bool | None
    detail: str

    def to_dict(self) -> CheckOutcome:
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

    @cached_property
    def _verdicts(self) -> tuple[bool, bool, bool, Literal["none", "bound", "rooted"], str]:
        # Worked out once per result (the fields never change): one is shared by every
        # answer from a server without a TPM.
        return self.verified, self.bound, self.hardware_rooted, self.level, self.summary

    def to_dict(self) -> AttestationVerification:
        """The record stored in ``_metadata["attestation_verification"]`` (JSON-safe), new
        for each call."""
        verified, bound, hardware_rooted, level, summary = self._verdicts
        return {
            "verified": verified,
            "bound": bound,
            "hardware_rooted": hardware_rooted,
            "level": level,
            "available": self.available,
            "summary": summary,
            "aik_fingerprint": self.aik_fingerprint,
            "pcr_banks": self.pcr_banks,
            "binding": self.binding,
            "checks": self._checks_dict(),
        }

    def _checks_dict(self) -> AttestationChecks:
        # Spelled out, in CHECK_NAMES order, so that the type checker sees every check's key.
        return {
            "signature": self.signature.to_dict(),
            "magic_and_type": self.magic_and_type.to_dict(),
            "qualifying_data": self.qualifying_data.to_dict(),
            "pcr_digest": self.pcr_digest.to_dict(),
            "pcr_baseline": self.pcr_baseline.to_dict(),
            "aik_trusted": self.aik_trusted.to_dict(),
        }
