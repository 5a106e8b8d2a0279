"""The exception tree of PROTOCOL.md section 4, with the names and bases of nomyo 0.2.9.

Every HTTP-level error derives from :class:`APIError` and carries ``status_code`` and
``error_details``. :class:`APIConnectionError` and :class:`SecurityError` stand apart, as in the
reference client, so that ``except APIError`` means the same thing in both.

A few extra classes make our stricter checks precise while staying catchable the way the
reference's errors are (a malformed response envelope is a ``SecurityError`` *and* a
``ValueError``, as the reference raised ``ValueError`` for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "ClientClosedError",
    "CoreError",
    "CryptoError",
    "EnvelopeError",
    "ForbiddenError",
    "InsecureKeyFileError",
    "InvalidRequestError",
    "KeyDisposedError",
    "KeyFormatError",
    "KeyLoadError",
    "KeyPasswordError",
    "KeyPermissionError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseFormatError",
    "ResponseTooLargeError",
    "SecurityError",
    "ServerError",
    "ServiceUnavailableError",
    "SizeLimitError",
    "TpmFormatError",
    "UnsupportedContentEncodingError",
]

OPAQUE_CRYPTO_MESSAGE = "Decryption failed: integrity check or authentication failed"


_MIN_REDACTED_LEN = 4


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (JSON-like) with every string's occurrences of ``secrets`` replaced."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value


class _DefaultStatus:
    """Marks "status_code not given" so that an explicit ``None`` (nothing was sent) survives."""

    def __repr__(self) -> str:
        return "<the class's status>"


_DEFAULT_STATUS: Any = _DefaultStatus()


class SecurityError(Exception):
    """A security violation: crypto failure, pin mismatch, replay, insecure transport."""


class ResponseFormatError(SecurityError, ValueError):
    """The response envelope is malformed or names an unsupported version/algorithm.

    A ``ValueError`` too, because nomyo 0.2.9 raised ``ValueError`` for these.
    """


class UnsupportedContentEncodingError(ResponseFormatError):
    """The server compressed a response (``Content-Encoding`` other than ``identity``).

    The client asks for ``identity`` and never runs a decoder: a few KiB of gzip can inflate to
    gigabytes, and an envelope is incompressible ciphertext anyway.
    """


class InsecureKeyFileError(SecurityError):
    """A private key file is readable or writable by group or others."""


class KeyLoadError(ValueError):
    """A key file is malformed, not RSA, too short, or its password is missing or wrong."""


class PayloadTooLargeError(ValueError):
    """The serialized request exceeds 10 MiB (nomyo 0.2.9 raised ``ValueError``)."""


class ClientClosedError(RuntimeError):
    """The client was closed or disposed and cannot send requests any more."""


# ---- errors of the native core ------------------------------------------------------------
# `nomyo_native._core` raises these classes itself (mapped once, in rust/src/error.rs), so each
# is already the class a user catches: a crypto failure is a SecurityError, a malformed response
# a ResponseFormatError, a bad key file a KeyLoadError... `CoreError` marks where they came from,
# and `_core` keeps its old names for them (`_core.CryptoError is CryptoError`).


class CoreError(Exception):
    """Base of every error the native core raises."""


class CryptoError(CoreError, SecurityError):
    """Unwrapping or authentication failed. Opaque: one message for every cause."""


class EnvelopeError(CoreError, ResponseFormatError):
    """The response envelope (or the JSON inside it) is malformed or unsupported."""


class SizeLimitError(CoreError, ValueError):
    """A size cap was exceeded, in either direction (``_core.PayloadTooLargeError``)."""


class RequestTooLargeError(SizeLimitError, PayloadTooLargeError):
    """Sealing: the serialized request exceeds the plaintext cap (nomyo's ``ValueError``)."""


class ResponseTooLargeError(SizeLimitError, ResponseFormatError):
    """Opening: the response envelope exceeds its cap, a malformed response like any other."""


class KeyFormatError(CoreError, KeyLoadError):
    """A key is malformed, not RSA, or too short."""


class KeyPasswordError(CoreError, KeyLoadError):
    """A key password is missing, wrong or too short."""


class KeyPermissionError(CoreError, InsecureKeyFileError):
    """A private key file is readable or writable by group or others."""


class KeyDisposedError(CoreError, ClientClosedError):
    """The key pair was wiped (its client disposed) and can no longer be used."""


class TpmFormatError(CoreError, ValueError):
    """A TPM structure is malformed or unsupported, or its signature does not verify."""


class APIError(Exception):
    """Base of every error the endpoint reports through an HTTP status."""

    default_status: int | None = None

    def __init__(
        self,
        message: str,
        status_code: int | None = _DEFAULT_STATUS,
        error_details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        # Left out: the class's status (400 for InvalidRequestError...). An explicit None says
        # the client refused the request itself and nothing reached the server.
        self.status_code = self.default_status if status_code is _DEFAULT_STATUS else status_code
        self.error_details = error_details
        # Seconds the server asked to wait (Retry-After), when it said so.
        self.retry_after: float | None = None
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def redact(self, secrets: Iterable[str]) -> None:
        """Replace every occurrence of ``secrets`` (what the request carried: API key, URL
        password) in the message and ``error_details`` by ``***``; the server wrote both."""
        # Shorter strings would mangle ordinary words and protect nothing.
        wanted = sorted({s for s in secrets if len(s) >= _MIN_REDACTED_LEN}, key=len, reverse=True)
        if not wanted:
            return
        self.message = _scrub(self.message, wanted)
        self.args = tuple(_scrub(arg, wanted) for arg in self.args)
        self.error_details = _scrub(self.error_details, wanted)

    def add_hint(self, hint: str) -> None:
        """Append advice the client can give (e.g. which option to change) to the message."""
        self.message = f"{self.message} ({hint})"
        self.args = (self.message, *self.args[1:])


class InvalidRequestError(APIError):
    """HTTP 400: the endpoint refused the request."""

    default_status = 400


class AuthenticationError(APIError):
    """HTTP 401: missing or invalid API key."""

    default_status = 401


class ForbiddenError(APIError):
    """HTTP 403: e.g. the model is not allowed for the requested security tier."""

    default_status = 403


class RateLimitError(APIError):
    """HTTP 429: rate limit exceeded (retried, honouring ``Retry-After``)."""

    default_status = 429


class ServerError(APIError):
    """HTTP 500: the endpoint failed internally (retried)."""

    default_status = 500


class ServiceUnavailableError(APIError):
    """HTTP 503: backend down, or tier ``maximum`` without a TPM (retried)."""

    default_status = 503


class APIConnectionError(ConnectionError):
    """The endpoint could not be reached (connect, TLS, timeout, dropped connection).

    A ``ConnectionError`` too, because nomyo 0.2.9 raised the built-in one when the server key
    could not be fetched.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.message = message
        self.status_code = status_code
        self.error_details: dict[str, Any] | None = None
        super().__init__(message)

    def __str__(self) -> str:
        return self.message
