"""Is this response the answer to this request? The payload-id binding of a decrypted response.

A response is *bound* when the server echoed the request's ``X-Payload-ID`` in
``_metadata.payload_id`` (PROTOCOL.md section 3), or when it carries a TPM quote whose
qualifying data is derived from that id and whose signature checks (section 5). An unbound
response may be a replay of another answer encrypted to the same client key. The client records
what it found in ``_metadata["payload_id_verified"]`` and refuses an unbound response when the
caller asked for binding (``require_payload_echo=True``) or the tier is ``maximum``.

Every ``_metadata`` field the client computes is written by the client, whatever the server put
under that name: a server must not be able to pre-fill a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nomyo_native.errors import SecurityError

__all__ = ["CLIENT_METADATA_KEYS", "echo_matches", "enforce_binding", "quote_binds"]

# Written by the client on every response, never taken from the server.
CLIENT_METADATA_KEYS = (
    "payload_id",
    "payload_id_verified",
    "processed_at",
    "is_encrypted",
    "encryption_algorithm",
    "attestation_verification",
)

# The checks that together bind a quote to the payload id: a valid signature over a TPM quote
# structure whose qualifying data is SHA-256(payload_id)[:16].
_BINDING_CHECKS = ("signature", "magic_and_type", "qualifying_data")


def echo_matches(metadata: Mapping[str, Any], payload_id: str) -> bool:
    """True when the server echoed ``payload_id``; False when it sent none.

    A different value (of any type) is a replay or mix-up: :class:`SecurityError`.
    """
    echoed = metadata.get("payload_id")
    if echoed is None:
        return False
    if not isinstance(echoed, str) or echoed != payload_id:
        raise SecurityError(
            "Response payload_id does not match the request's (replay or mix-up): refused"
        )
    return True


def quote_binds(verification: Any) -> bool:
    """True when the client's attestation record shows a quote bound to the payload id."""
    if not isinstance(verification, Mapping):
        return False
    if verification.get("bound") is True:
        return True
    checks = verification.get("checks")
    if not isinstance(checks, Mapping):
        return False
    for name in _BINDING_CHECKS:
        check = checks.get(name)
        if not isinstance(check, Mapping) or check.get("passed") is not True:
            return False
    return True


def enforce_binding(metadata: Mapping[str, Any], *, tier: str | None, require_echo: bool) -> None:
    """Refuse an unbound response when the caller or the tier demands binding."""
    if metadata.get("payload_id_verified") is True:
        return
    if require_echo:
        raise SecurityError(
            "Response refused: the server did not echo the request's payload_id, so it cannot "
            "be told apart from a replayed answer (require_payload_echo=True)"
        )
    if tier == "maximum" and not quote_binds(metadata.get("attestation_verification")):
        raise SecurityError(
            "Response refused: tier 'maximum' needs a response bound to this request, by the "
            "server's payload_id echo or by a TPM quote over it, and this one has neither"
        )
