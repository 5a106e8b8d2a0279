"""Whom the client trusts, decided without network I/O: the https rule, the server-key pin and
pin file, and the attestation trust (baseline, AIK, policy).

The server key fetched over verified TLS is the trust anchor of every request, so plain http
needs ``allow_http=True`` (and ``_tls`` never turns verification off).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nomyo_native import _core
from nomyo_native._option_hints import option
from nomyo_native._payload_binding import enforce_binding
from nomyo_native._urls import redact_url
from nomyo_native.attestation import (
    ATTESTATION_POLICIES,
    apply_attestation_policy,
    resolve_policy,
)
from nomyo_native.errors import SecurityError
from nomyo_native.types import AttestationVerification

if TYPE_CHECKING:
    # Built by the caller (it normalizes origins with httpx2's URL parser): used, not made.
    from nomyo_native._pinfile import PinFile

__all__ = [
    "AttestationTrust",
    "ServerKeyTrust",
    "enrolled_trusted_aik",
    "normalize_fingerprint",
    "re_enroll_hint",
    "validate_attestation_policy",
    "warn_plain_http",
]

logger = logging.getLogger("nomyo_native.client")

# The attestation record under attestation="off": the client's own, so that a verdict the
# server wrote into _metadata never survives.
_NOT_CHECKED: AttestationVerification = {
    "verified": False,
    "bound": False,
    "hardware_rooted": False,
    "level": "none",
    "available": None,
    "summary": "not checked: attestation='off'",
    "reason": "attestation policy 'off'",
}


_FINGERPRINT_HEX_LEN = 64


def normalize_fingerprint(value: str) -> str:
    """``"sha256:<64 hex>"`` in lower case; colons inside the hex are tolerated."""
    if not isinstance(value, str):
        raise TypeError(f"{option('server_key_fingerprint', 'sha256:<hex>')} must be a str")
    algo, sep, digest = value.strip().partition(":")
    digest = digest.replace(":", "").lower()
    if (
        not sep
        or algo.lower() != "sha256"
        or len(digest) != _FINGERPRINT_HEX_LEN
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise ValueError(
            f"{option('server_key_fingerprint', 'sha256:<64 hex digits>')} expected, got "
            f"{value[:80]!r}; get the server's with: nomyo-native pin URL"
        )
    return "sha256:" + digest


# ---- transport -----------------------------------------------------------------------------------


def check_transport_policy(https: bool, allow_http: bool, shown_url: str) -> None:
    """Plain http is refused unless the caller allowed it (local development only)."""
    if not https and not allow_http:
        raise SecurityError(
            "Server public key must be fetched over HTTPS to prevent MITM attacks. "
            f"For local development only, pass {option('allow_http')} to allow {shown_url}"
        )


def warn_plain_http(https: bool, allow_http: bool) -> None:
    """Say loudly, once per client, that plain http was allowed."""
    if https:
        return
    if allow_http:
        warnings.warn(
            "WARNING: Using HTTP instead of HTTPS. This is INSECURE and must only be used "
            "for local development: a man in the middle can swap the server key.",
            UserWarning,
            stacklevel=4,
        )
    else:
        logger.debug("non-HTTPS URL without allow_http: requests will be refused")


# ---- the server key --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerKeyTrust:
    """The server key a client accepts: the pinned fingerprint, and/or the one recorded for
    this origin in a trust-on-first-use pin file."""

    router_url: str
    shown_url: str
    pin: str | None
    pin_file: PinFile | None

    def check_pin(self, key: _core.ServerPublicKey) -> None:
        """Refuse a key whose fingerprint is not the pinned one (no I/O)."""
        if self.pin is not None and key.fingerprint != self.pin:
            raise SecurityError(
                f"Server public key fingerprint {key.fingerprint} does not match the pinned "
                f"{self.pin} ({option('server_key_fingerprint', self.pin)}): refusing "
                "to encrypt anything to it. If the server's key really changed (a local "
                "endpoint makes a new one at every start unless --key-file keeps it), "
                f"check it with: nomyo-native pin {self.shown_url}"
            )

    def check_pin_file(self, fingerprint: str) -> None:
        """Trust on first use: record the fingerprint, refuse a different one later (file
        I/O under a lock: async callers run it in a worker thread)."""
        if self.pin_file is not None:
            self.pin_file.check(self.router_url, fingerprint)


# ---- attestation -----------------------------------------------------------------------------


def validate_attestation_policy(policy: str) -> str:
    if policy not in ATTESTATION_POLICIES:
        raise ValueError(
            f"Invalid attestation policy: {policy!r}. "
            f"Must be one of: {', '.join(ATTESTATION_POLICIES)}"
        )
    return policy


def enrolled_trusted_aik(
    enrolled: str | None, pin_file: str | os.PathLike[str], router_url: str, trusted_aik: Any
) -> str:
    """The attestation key ``enrolled`` for ``router_url`` in ``pin_file``: refused now (before
    any prompt is sent) when the server is not enrolled or a different ``trusted_aik`` was also
    given."""
    if enrolled is None:
        shown = redact_url(router_url)
        raise ValueError(
            f"{shown} has no attestation key enrolled in {pin_file}: run "
            f"'nomyo-native attest enroll {shown} --pin-file {pin_file}' first"
        )
    if trusted_aik is not None:
        if isinstance(trusted_aik, bytes):
            trusted_aik = trusted_aik.decode("ascii", "replace")
        if str(trusted_aik).strip().lower() != enrolled:
            raise ValueError(
                "trusted_aik differs from the attestation key enrolled in aik_pin_file"
            )
    return enrolled


def re_enroll_hint(pin_file: str | os.PathLike[str], origin: str) -> str:
    """Said when a quote's key is not the one enrolled for ``origin`` (the base URL's pin-file
    key): a TPM reset or replacement changes it."""
    return (
        f"The attestation key enrolled for {origin} in {pin_file} did not sign this quote (the "
        f"server's TPM was reset or replaced, or someone is in the middle). If the change is "
        f"expected, remove the line for {origin} from {pin_file} and run 'nomyo-native attest "
        f"enroll {origin} --pin-file {pin_file}' again."
    )


@dataclass(slots=True)
class AttestationTrust:
    """What a response's TPM quote is checked against, and the policy applied to it."""

    explicit_policy: str | None
    pcr_baseline: dict[str, Any] | None
    trusted_aik: Any
    untrusted_key_hint: str | None
    require_payload_echo: bool

    def policy_for(self, attestation: str | None, security_tier: str | None) -> str:
        """The policy of one request: the call's, else the client's, else the tier's."""
        if attestation is not None:
            validate_attestation_policy(attestation)
        explicit = attestation if attestation is not None else self.explicit_policy
        return resolve_policy(explicit, security_tier, has_anchor=self.trusted_aik is not None)

    def judge(
        self,
        metadata: dict[str, Any],
        payload_id: str,
        policy: str,
        tier: str | None,
        sealed_to: _core.ServerPublicKey | None,
        require_echo: bool | None = None,
    ) -> None:
        """Attestation policy, then binding: raises SecurityError when the response must not
        be handed out (the decrypted content is then dropped)."""
        if policy == "off":
            metadata["attestation_verification"] = _NOT_CHECKED.copy()
        else:
            apply_attestation_policy(
                metadata,
                payload_id,
                policy,
                pcr_baseline=self.pcr_baseline,
                trusted_aik=self.trusted_aik,
                # The key this request was encrypted to: a quote relayed from another server is
                # bound to that server's key and fails (the attestation extension).
                server_key_fingerprint=sealed_to.fingerprint if sealed_to is not None else None,
                untrusted_key_hint=self.untrusted_key_hint,
            )
        if require_echo is None:
            require_echo = self.require_payload_echo
        enforce_binding(metadata, tier=tier, require_echo=require_echo)
