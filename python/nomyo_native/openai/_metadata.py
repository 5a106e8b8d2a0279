"""``metadata(completion)``: a completion's ``_metadata``, however the SDK built its object.

The SDK's models accept unknown fields and keep them in pydantic's ``model_extra``, under their
own name (``_metadata``), in both the SDK's construct path (unvalidated, its default) and its
validation path (``_strict_response_validation=True``). The accessor reads that, or a plain
dict's key, or the response headers of a raw response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METADATA_KEY = "_metadata"


def metadata(completion: Any) -> dict[str, Any] | None:
    """The ``_metadata`` NOMYO attached to a chat completion (payload id, attestation verdict,
    encryption details), from an SDK ``ChatCompletion``, a dict, or a ``with_raw_response``
    result (then its ``x-nomyo-*`` headers); None when there is none."""
    if isinstance(completion, Mapping):
        found = completion.get(METADATA_KEY)
        return found if isinstance(found, dict) else None
    extra = getattr(completion, "model_extra", None)
    if isinstance(extra, dict) and isinstance(extra.get(METADATA_KEY), dict):
        found_extra: dict[str, Any] = extra[METADATA_KEY]
        return found_extra
    headers = getattr(completion, "headers", None)
    if headers is not None and hasattr(headers, "get"):
        return _from_headers(headers)
    return None


def _from_headers(headers: Any) -> dict[str, Any] | None:
    payload_id = headers.get("x-nomyo-payload-id")
    if payload_id is None:
        return None
    found: dict[str, Any] = {"payload_id": payload_id}
    verified = headers.get("x-nomyo-payload-id-verified")
    if verified is not None:
        found["payload_id_verified"] = verified == "true"
    level = headers.get("x-nomyo-attestation-level")
    if level is not None:
        found["attestation_verification"] = {
            "level": level,
            "verified": headers.get("x-nomyo-attestation-verified") == "true",
        }
    tier = headers.get("x-nomyo-security-tier")
    if tier is not None:
        found["security_tier"] = tier
    return found
