"""Which failures are worth another attempt (no I/O here: the client's request loop asks).

Retried: 429, 500, 502, 503, 504 and network failures (PROTOCOL.md section 4). Never retried,
because another attempt gets the same answer: a failed certificate or hostname check, a request
our own HTTP layer refused to encode, and a 503 that says tier ``maximum`` needs a TPM the
server does not have.
"""

from __future__ import annotations

import re
import ssl

from nomyo_native.errors import APIError

__all__ = ["RETRYABLE_STATUS_CODES", "is_permanent_tpm_refusal", "tls_verification_failure"]

RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})

_NAMES_TPM = re.compile(r"\bTPM\b", re.IGNORECASE)
# A server saying its TPM is only momentarily unusable is genuine unavailability.
_TRANSIENT = re.compile(r"temporar|try again|retry|busy|overload", re.IGNORECASE)


def tls_verification_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate (or hostname) verification error behind ``exc``, if that is the cause.

    httpx2 and httpcore2 wrap it in their own ``ConnectError``; the original is on the chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def is_permanent_tpm_refusal(error: APIError, tier: str | None) -> bool:
    """A 503 answering a ``maximum`` request because the server has no TPM to quote with.

    Retrying cannot conjure a TPM. A 503 that does not name the TPM, one that calls the state
    temporary, or one with ``Retry-After`` (the server itself says to come back) stays
    retryable.
    """
    if error.status_code != 503 or tier != "maximum" or error.retry_after is not None:
        return False
    detail = error.error_details.get("detail") if error.error_details else None
    if not isinstance(detail, str):
        return False
    return bool(_NAMES_TPM.search(detail)) and not _TRANSIENT.search(detail)
