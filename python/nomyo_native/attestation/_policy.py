"""The client's attestation policy: which one a request runs under (:func:`resolve_policy`)
and what it does with a response (:func:`apply_attestation_policy`: record, or refuse)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nomyo_native._constants import ATTESTATION_POLICIES
from nomyo_native.attestation._verify import verify_attestation
from nomyo_native.types import AttestationVerification

# Said wherever "require" meets a client with nothing to root a quote in.
NO_TRUST_ANCHOR_HINT = (
    "attestation='require' needs a trust anchor for the server's attestation key, else no quote"
    " can ever be verified: pin it with trusted_aik='sha256:<fingerprint>' (the AIK fingerprint"
    " `nomyo-native serve --tpm swtpm` prints at start, or that `nomyo-native attest verify`"
    " shows for a response you trust), or enroll the server's key with `nomyo-native attest"
    " enroll URL --pin-file FILE` and pass aik_pin_file=FILE; or use attestation='bound' to"
    " require only a quote bound to each request"
)


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


def _record_unverified(metadata: dict[str, Any], reason: str, *, available: bool) -> None:
    verdict: AttestationVerification = {
        "verified": False,
        "bound": False,
        "hardware_rooted": False,
        "level": "none",
        "available": available,
        "summary": f"not verified: {reason}",
        "reason": reason,
    }
    metadata["attestation_verification"] = verdict


def _raise_security(message: str) -> None:
    # Imported here so that this module does not depend on the client package at import time.
    from nomyo_native.errors import SecurityError

    raise SecurityError(message)
