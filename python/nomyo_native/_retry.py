"""Which failures are worth another attempt, and how long to wait first (no I/O here).

The drivers report each attempt's outcome; :class:`RetryPolicy` answers with a delay or with
"stop" (``None``), and the driver sleeps or raises. Retried: 429, 500, 502, 503, 504 and
network failures, timeouts included (PROTOCOL.md section 4). Never retried, because another
attempt gets the same answer: a failed certificate or hostname check, a request our own HTTP
layer refused to encode, a 503 that says tier ``maximum`` needs a TPM the server does not
have, and a ``Retry-After`` longer than the caller allows.
"""

from __future__ import annotations

import logging
import random
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from nomyo_native._option_hints import option
from nomyo_native.errors import APIError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "RETRYABLE_STATUS_CODES",
    "RetryPolicy",
    "is_permanent_tpm_refusal",
    "parse_retry_after",
    "tls_verification_failure",
]

logger = logging.getLogger("nomyo_native.client")

RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})

_NAMES_TPM = re.compile(r"\bTPM\b", re.IGNORECASE)
# A server saying its TPM is only momentarily unusable is genuine unavailability.
_TRANSIENT = re.compile(r"temporar|try again|retry|busy|overload", re.IGNORECASE)


def tls_verification_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate (or hostname) verification error behind ``exc``, if that is the cause.

    httpx2 and httpcore2 wrap it in their own ``ConnectError``; the original is on the chain.
    """
    # The decision layer imports no networking: an SSL error exists only once a driver has
    # imported ssl, so without it loaded there is none to find.
    ssl_module = sys.modules.get("ssl")
    if ssl_module is None:
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl_module.SSLCertVerificationError):
            return cast("ssl.SSLCertVerificationError", current)
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


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    ``now`` is wall-clock time (an HTTP-date is an absolute time).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        # Imported here: email.utils imports socket (for its message ids), and the decision
        # layer loads nothing of the network until a server actually sends an HTTP-date.
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` more attempts after the first, exponential backoff with jitter between
    ``retry_backoff`` and ``max_backoff`` seconds, and a server's ``Retry-After`` obeyed up to
    ``max_retry_after`` seconds."""

    max_retries: int = 2
    retry_backoff: float = 1.0
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def backoff(self, retry_index: int) -> float:
        """Full-ish jitter: between half and all of the exponential ceiling."""
        ceiling = min(self.max_backoff, self.retry_backoff * (2**retry_index))
        return random.uniform(ceiling / 2, ceiling)

    def after_failure(self, attempt: int, *, permanent: bool) -> float | None:
        """After a network failure or a missed deadline on ``attempt`` (0-based): the delay
        before the next attempt, or None to give up (last attempt, or nothing would change)."""
        if permanent or attempt + 1 >= self.attempts:
            return None
        return self.backoff(attempt)

    def after_status(self, attempt: int, error: APIError, tier: str | None) -> float | None:
        """After a non-200 answer (``error``, with its ``retry_after``): the delay before the
        next attempt, or None to give up. A permanent refusal gets a hint saying why."""
        if is_permanent_tpm_refusal(error, tier):
            error.add_hint(
                "not retried: this server cannot serve tier 'maximum'; use "
                f"{option('security_tier', 'high')} or a server with a TPM"
            )
            return None
        if error.status_code not in RETRYABLE_STATUS_CODES or attempt + 1 >= self.attempts:
            return None
        if error.retry_after is None:
            return self.backoff(attempt)
        if error.retry_after > self.max_retry_after:
            logger.debug("Retry-After %.1f s exceeds the bound; not retrying", error.retry_after)
            return None
        return error.retry_after
