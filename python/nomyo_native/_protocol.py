"""The secure completion protocol with no I/O: requests built, responses finished.

Everything here is a function of its arguments (PROTOCOL.md sections 2-4): the request's
headers and sealed body, the response opened and checked (payload-id binding, the client's
``_metadata``), a non-200 answer turned into the typed exception, a failed attempt turned into
the connection error. The drivers (``_async_driver``, ``_sync_driver``) move bytes; the clients
decide with these functions. Sealing and opening run in the Rust core, which releases the GIL:
an async caller runs them off its event loop thread.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import urllib.parse
from typing import Any, Final, NamedTuple

from nomyo_native import _body_buffers, _core
from nomyo_native._constants import COMPLETION_PATH, PUBLIC_KEY_PATH, SECURITY_TIERS
from nomyo_native._option_hints import option
from nomyo_native._payload_binding import CLIENT_METADATA_KEYS, echo_matches
from nomyo_native._retry import tls_verification_failure
from nomyo_native.errors import (
    OPAQUE_CRYPTO_MESSAGE,
    APIConnectionError,
    APIError,
    AuthenticationError,
    CryptoError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    ResponseFormatError,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)

__all__ = [
    "COMPLETION_PATH",
    "MAX_ERROR_BODY_BYTES",
    "MAX_PUBLIC_KEY_BYTES",
    "PUBLIC_KEY_PATH",
    "VALID_SECURITY_TIERS",
    "Answer",
    "build_response",
    "completion_headers",
    "connection_error",
    "deadline_error",
    "decrypt_response",
    "error_from_response",
    "locally_refused_error",
    "open_response",
    "parse_server_key",
    "seal_payload",
    "status_error",
    "validate_payload",
    "validate_security_tier",
]

logger = logging.getLogger("nomyo_native.client")


class Answer(NamedTuple):
    """What one attempt got back: status, the body (wire bytes, capped; a large one as a view
    of the buffer it was received into, see ``_body_buffers``), Retry-After s."""

    status: int
    body: bytes | bytearray | memoryview
    retry_after: float | None


VALID_SECURITY_TIERS: Final = SECURITY_TIERS
# Error bodies and the server key are small; a response envelope is capped by the core.
MAX_ERROR_BODY_BYTES: Final = 64 * 1024
MAX_PUBLIC_KEY_BYTES: Final = 64 * 1024


# ---- requests --------------------------------------------------------------------------------


def validate_security_tier(security_tier: str | None) -> str | None:
    if security_tier is None:
        return None
    if security_tier not in VALID_SECURITY_TIERS:
        raise ValueError(
            f"Invalid security_tier: {security_tier!r}. "
            f"Must be one of: {', '.join(VALID_SECURITY_TIERS)}"
        )
    return security_tier


def validate_payload(payload: Any) -> None:
    """A non-empty dict without streaming, checked before anything is sealed."""
    if not isinstance(payload, dict):
        raise ValueError("Payload must be a dictionary")
    if not payload:
        raise ValueError("Payload cannot be empty")
    stream = payload.get("stream")
    if stream is not None and stream is not False:
        # NOMYO servers answer 400 to any stream but JSON false or null (nomyo 0.2.9 documents
        # as much): refuse it before the prompt is sealed and sent for nothing. Identity, not
        # truth: 0, "" and [] are JSON values a server refuses too.
        raise InvalidRequestError(
            "stream=True is not supported: the secure completion protocol has no streaming "
            "(each answer is one encrypted response); leave stream out or set it to False",
            None,
        )


def completion_headers(
    payload_id: str, quoted_public_key: str, bearer: str | None, tier: str | None
) -> dict[str, str]:
    """The headers of a completion request (section 2); ``quoted_public_key`` is the client's
    public key PEM, percent-encoded (see :func:`quote_public_key`)."""
    headers = {
        "X-Payload-ID": payload_id,
        "X-Public-Key": quoted_public_key,
        "Content-Type": "application/octet-stream",
    }
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    if tier:
        headers["X-Security-Tier"] = tier
    return headers


def quote_public_key(keypair: _core.ClientKeyPair) -> str:
    """The ``X-Public-Key`` value: costly for a 4096-bit key, so callers cache it per pair."""
    return urllib.parse.quote(keypair.public_key_pem)


def seal_payload(payload: dict[str, Any], server_key: _core.ServerPublicKey) -> bytes:
    """The request envelope JSON: ``payload`` sealed to ``server_key`` in the core, which
    raises the package's own errors (``RequestTooLargeError``, a ``PayloadTooLargeError``;
    ``TypeError``/``ValueError`` naming a value JSON cannot hold)."""
    started = time.perf_counter()
    envelope = _core.seal(payload, server_key)
    logger.debug(
        "sealed request: %d bytes in %.1f ms",
        len(envelope),
        (time.perf_counter() - started) * 1000,
    )
    return envelope


def parse_server_key(body: bytes) -> _core.ServerPublicKey:
    """The server key from a ``/pki/public_key`` answer (trust is checked by ``_trust``)."""
    try:
        return _core.ServerPublicKey.from_pem(body)
    except _core.KeyFormatError as exc:
        raise ResponseFormatError(f"Server returned an invalid public key: {exc}") from None


def validate_encrypted_response(encrypted_response: object) -> None:
    """``decrypt_response``'s argument: non-empty bytes."""
    if not encrypted_response:
        raise ValueError("Empty encrypted response")
    if not isinstance(encrypted_response, (bytes, bytearray)):
        raise ValueError("Encrypted response must be bytes")


# ---- responses -------------------------------------------------------------------------------

# What the core opens: the payload, the envelope's processed_at and its algorithm.
_Opened = tuple[Any, int | float | None, str]


def open_response(
    body: bytes | bytearray | memoryview, payload_id: str, keypair: _core.ClientKeyPair
) -> dict[str, Any]:
    """Open a response envelope with ``keypair`` and write the client's ``_metadata`` fields.
    ``body`` is done with once this returns: a received body's buffer goes back to be reused
    (``_body_buffers.release``; the view is released, whoever else holds it).

    Raises :class:`SecurityError` for a failed decryption (opaque), :class:`ResponseFormatError`
    for a malformed envelope or plaintext, and when the server echoed another payload id.
    """
    started, size = time.perf_counter(), len(body)
    # No local of this frame holds the answer: a refused one must not outlive the refusal in
    # the traceback's frames (see _with_metadata).
    answer = _with_metadata(_opened(body, keypair), payload_id)
    logger.debug(
        "opened response: %d bytes in %.1f ms", size, (time.perf_counter() - started) * 1000
    )
    return answer


def _opened(body: bytes | bytearray | memoryview, keypair: _core.ClientKeyPair) -> _Opened:
    with _opening_errors:
        try:
            return _core.open_envelope(body, keypair)
        finally:
            _body_buffers.release(body)  # the core has returned: nothing reads it any more


def decrypt_response(
    body: bytes | bytearray | memoryview, keypair: _core.ClientKeyPair, cost_limit: int
) -> _core.OpenedEnvelope:
    """:func:`open_response`'s first half: the envelope checked, unwrapped and decrypted, its
    plaintext still in locked memory, with the build's cost counted up to ``cost_limit``;
    :func:`build_response` is the second. ``body`` is done with once this returns. Raises as
    :func:`open_response` does."""
    with _opening_errors:
        try:
            return _core.decrypt_envelope(body, keypair, cost_limit)
        finally:
            _body_buffers.release(body)


def build_response(opened: _core.OpenedEnvelope, payload_id: str) -> dict[str, Any]:
    """:func:`open_response`'s second half: the payload built from ``opened``'s plaintext
    (which is wiped), with the client's ``_metadata`` fields. Raises as :func:`open_response`
    does."""
    started = time.perf_counter()
    answer = _with_metadata(_built(opened), payload_id)  # as in open_response
    logger.debug(
        "built response: %d bytes in %.1f ms",
        opened.plaintext_bytes,
        (time.perf_counter() - started) * 1000,
    )
    return answer


def _built(opened: _core.OpenedEnvelope) -> _Opened:
    with _opening_errors:
        return opened.build()


class _OpeningErrors:
    """The core's errors while opening a response, as the client raises them (a class rather
    than a generator: it runs on every response)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if isinstance(error, CryptoError):
            # The client's own opaque text and the plain SecurityError nomyo 0.2.9 callers
            # (and the retry model's exact-type checks) expect; the core's subclass would not.
            raise SecurityError(OPAQUE_CRYPTO_MESSAGE) from None
        if isinstance(error, ResponseFormatError):
            # EnvelopeError or ResponseTooLargeError: the same class nomyo callers catch, with
            # the client's prefix (the core names the field or the cap).
            raise ResponseFormatError(f"Invalid encrypted response: {error}") from None


_opening_errors = _OpeningErrors()


def _with_metadata(opened: _Opened, payload_id: str) -> dict[str, Any]:
    """The opened payload, which must be a JSON object, with the client's ``_metadata`` fields.

    A refused answer does not outlive the refusal: the frames of a traceback keep their locals,
    and error reporters that record them (Sentry's default) would send the decrypted answer
    on. So the frames the refusal came through are cleared, this one drops the answer before
    it raises, and no caller holds the answer in a local of its own."""
    payload, processed_at, algorithm = opened
    del opened
    try:
        return _metadata_added(payload, processed_at, algorithm, payload_id)
    except BaseException as refusal:
        del payload
        traceback.clear_frames(refusal.__traceback__)
        raise


def _metadata_added(
    payload: Any, processed_at: int | float | None, algorithm: str, payload_id: str
) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ResponseFormatError("Decrypted response is not a JSON object")
    metadata = payload.get("_metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise ResponseFormatError("Decrypted response has a non-object _metadata")
    verified = echo_matches(metadata, payload_id)
    for key in CLIENT_METADATA_KEYS:
        metadata.pop(key, None)  # ours to compute: nothing the server sent survives
    metadata.update(
        {
            # nomyo's field, always the request's own id; whether the server vouched for it is
            # payload_id_verified.
            "payload_id": payload_id,
            "payload_id_verified": verified,
            "processed_at": processed_at,
            "is_encrypted": True,
            "encryption_algorithm": algorithm,
        }
    )
    payload["_metadata"] = metadata
    return payload


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
