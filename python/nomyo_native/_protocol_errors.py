"""Non-200 answers and failed attempts as the typed exceptions of PROTOCOL.md section 4, with
no I/O: the server's ``detail`` read from an error body (never trusted to be JSON), secrets
scrubbed from what the server wrote, and the advice a certificate failure or a base URL with a
path calls for. ``_protocol`` re-exports them.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from nomyo_native._option_hints import option
from nomyo_native._retry import tls_verification_failure
from nomyo_native.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)

__all__ = [
    "connection_error",
    "deadline_error",
    "error_from_response",
    "locally_refused_error",
    "status_error",
]


def _detail_of(body: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """The server's ``detail`` text and the error details, from an error body."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        raw_detail = parsed.get("detail")
        detail = raw_detail if isinstance(raw_detail, str) else None
        if detail is None and raw_detail is not None:
            detail = json.dumps(raw_detail)[:500]
        return detail, parsed
    text = body[:500].decode("utf-8", "replace").strip()
    return None, ({"body": text} if text else None)


# status -> (class, message template); "{}" is the server's detail or the fallback.
_STATUS_ERRORS: dict[int, tuple[type[APIError], str, str]] = {
    400: (InvalidRequestError, "Bad request: {}", "Unknown error"),
    401: (AuthenticationError, "{}", "Invalid API key or authentication failed"),
    403: (ForbiddenError, "Forbidden: {}", "Model not allowed for the requested security tier"),
    404: (APIError, "Endpoint not found: {}", "Secure inference not enabled"),
    429: (RateLimitError, "Rate limit exceeded: {}", "unknown"),
    500: (ServerError, "Server error: {}", "unknown"),
    503: (ServiceUnavailableError, "Service unavailable: {}", "unknown"),
}


def error_from_response(status: int, body: bytes) -> APIError:
    """Map a non-200 response to the exception of PROTOCOL.md section 4."""
    detail, details = _detail_of(body)
    known = _STATUS_ERRORS.get(status)
    if known is None:
        return APIError(f"Unexpected status code: {status} {detail or 'unknown'}", status, details)
    cls, template, fallback = known
    return cls(template.format(detail or fallback), status, details)


def status_error(
    status: int,
    body: bytes,
    retry_after: float | None,
    *,
    secrets: tuple[str, ...],
    shown_url: str,
) -> APIError:
    """:func:`error_from_response`, with ``secrets`` (what the request carried: API key, URL
    password) scrubbed from whatever the server wrote, and advice for a base URL with a path."""
    error = error_from_response(status, body)
    error.redact(secrets)
    error.retry_after = retry_after
    parts = urllib.parse.urlsplit(shown_url)
    if status == 404 and parts.path.rstrip("/"):
        # The common mistake: an OpenAI-style base URL ending in /v1.
        origin = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        error.add_hint(
            f"the base URL {shown_url} has a path, but it takes none: use "
            f"{option('base_url', origin)}, without /v1"
        )
    return error


# ---- failed attempts -------------------------------------------------------------------------


def connection_error(exc: BaseException, shown_url: str) -> APIConnectionError:
    """The error for a network failure: certificate failures say how to fix them."""
    tls_failure = tls_verification_failure(exc)
    if tls_failure is not None:
        reason = tls_failure.verify_message or tls_failure.reason or "verification failed"
        return APIConnectionError(
            f"TLS certificate verification failed for {shown_url} "
            f"(CERTIFICATE_VERIFY_FAILED: {reason}). If the server uses a private CA, trust "
            f"it with {option('ca_bundle', 'ca.pem')} (or SSL_CERT_FILE); check that the "
            "URL's host name is one the certificate names. Not retried."
        )
    return APIConnectionError(f"Failed to connect to {shown_url}: {type(exc).__name__}: {exc}")


def deadline_error(shown_url: str, deadline: float) -> APIConnectionError:
    """A peer that keeps trickling bytes never trips a per-read timeout; the per-attempt
    deadline bounds it, and the attempt counts as a network failure."""
    return APIConnectionError(
        f"Request to {shown_url} timed out: the attempt exceeded its {deadline:g} s deadline"
    )


def locally_refused_error() -> InvalidRequestError:
    """Our own HTTP layer refused the request (a header value it cannot send): no retry can
    change that. Raised with no context, as the refusal quotes the value (maybe a token)."""
    return InvalidRequestError(
        "the request was refused by the local HTTP layer before the server answered "
        "(a header value could not be encoded); not retried",
        None,
    )
