"""What the transport hands the SDK, before it becomes an httpx/httpx2 response object.

A decrypted completion travels as the dict the core built (never as bytes); errors travel as
OpenAI-shaped JSON bodies ({"error": {"message", "type", "code"}}) with the status and
Retry-After kept, so the SDK raises its usual exception classes and applies its own retry rules.
``x-should-retry: false`` marks every answer no retry can change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nomyo_native._retry import RETRYABLE_STATUS_CODES
from nomyo_native.errors import APIError
from nomyo_native.openai._gate import Refusal

JSON_TYPE = "application/json"
# The status of a synthetic answer for a security failure (on SDKs that would retry an
# exception): a 4xx no SDK class claims, so the SDK raises its plain APIStatusError.
SECURITY_STATUS = 495

# The OpenAI error type for each NOMYO status (PROTOCOL.md section 4).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable_error",
    504: "server_error",
}


@dataclass
class Answer:
    """Status, headers and either the decrypted completion (``payload``) or an error body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: Mapping[str, Any] | None = None
    body: bytes = b""


def error_body(message: str, error_type: str, code: str | None = None) -> bytes:
    """An OpenAI-shaped error body (the SDK quotes ``error.message`` in its exception)."""
    error = {"message": message, "type": error_type, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def _error_answer(
    status: int, message: str, error_type: str, *, retry: bool, code: str | None = None
) -> Answer:
    headers = [("content-type", JSON_TYPE)]
    if not retry:
        headers.append(("x-should-retry", "false"))
    return Answer(status, headers, body=error_body(message, error_type, code))


def refused(refusal: Refusal) -> Answer:
    """A request refused in the transport: never retried."""
    return _error_answer(refusal.status, refusal.message, refusal.error_type, retry=False)


def invalid_request(message: str) -> Answer:
    """A request the core or our checks refused before sealing (stream, bad JSON, size)."""
    return _error_answer(400, message, "invalid_request_error", retry=False)


def from_api_error(error: APIError, *, permanent: bool) -> Answer:
    """A NOMYO error status, kept with its Retry-After; ``permanent`` marks it not retried."""
    status = error.status_code if isinstance(error.status_code, int) else 500
    retry = status in RETRYABLE_STATUS_CODES and not permanent
    answer = _error_answer(status, str(error), _ERROR_TYPES.get(status, "api_error"), retry=retry)
    if retry and error.retry_after is not None and error.retry_after >= 0:
        # The SDK reads retry-after-ms first (to the millisecond), then retry-after (seconds).
        answer.headers.append(("retry-after-ms", str(round(error.retry_after * 1000))))
        answer.headers.append(("retry-after", str(math.ceil(error.retry_after))))
    return answer


def security_failure(error: BaseException) -> Answer:
    """A security failure as a synthetic, never-retried 4xx naming it (for SDKs that wrap any
    exception from the transport in a retried connection error)."""
    return _error_answer(
        SECURITY_STATUS,
        f"NOMYO security failure ({type(error).__name__}): {error}",
        "nomyo_security_error",
        retry=False,
        code=type(error).__name__,
    )


def client_closed(error: BaseException) -> Answer:
    """Our client was closed or disposed (the SDK's http_client closed): nothing was sent, and
    no retry can change it (for SDKs that would retry an exception)."""
    return _error_answer(
        400, f"{error}; nothing was sent", "nomyo_client_closed", retry=False, code="client_closed"
    )


def completion(payload: Mapping[str, Any]) -> Answer:
    """The decrypted completion, with its ``_metadata`` summarized as response headers."""
    headers = [("content-type", JSON_TYPE), *metadata_headers(payload.get("_metadata"))]
    return Answer(200, headers, payload=payload)


def metadata_headers(metadata: Any) -> list[tuple[str, str]]:
    """``_metadata``'s payload id and attestation verdict as ``x-nomyo-*`` headers (and the
    payload id as ``x-request-id``, which the SDK exposes as ``_request_id``)."""
    if not isinstance(metadata, dict):
        return []
    headers: list[tuple[str, str]] = []
    payload_id = metadata.get("payload_id")
    if isinstance(payload_id, str):
        headers += [("x-request-id", payload_id), ("x-nomyo-payload-id", payload_id)]
    verified = metadata.get("payload_id_verified")
    if isinstance(verified, bool):
        headers.append(("x-nomyo-payload-id-verified", str(verified).lower()))
    verdict = metadata.get("attestation_verification")
    if isinstance(verdict, dict):
        level = verdict.get("level")
        if isinstance(level, str):
            headers.append(("x-nomyo-attestation-level", level))
        if isinstance(verdict.get("verified"), bool):
            headers.append(("x-nomyo-attestation-verified", str(verdict["verified"]).lower()))
    tier = metadata.get("security_tier")
    if isinstance(tier, str) and tier.isascii() and tier.isprintable():
        headers.append(("x-nomyo-security-tier", tier))
    return headers
