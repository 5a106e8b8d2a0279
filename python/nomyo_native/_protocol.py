"""The secure completion protocol with no I/O: requests built, responses finished.

Everything here is a function of its arguments (PROTOCOL.md sections 2-4): the request's
headers and sealed body, the response opened and checked (payload-id binding, the client's
``_metadata``), a non-200 answer turned into the typed exception, a failed attempt turned into
the connection error. The drivers (``_async_driver``, ``_sync_driver``) move bytes; the clients
decide with these functions. Sealing and opening run in the Rust core, which releases the GIL:
an async caller runs them off its event loop thread.
"""

from __future__ import annotations

import logging
import time
import traceback
import urllib.parse
from typing import Any, Final, NamedTuple, overload

from nomyo_native import _body_buffers, _core
from nomyo_native._constants import COMPLETION_PATH, PUBLIC_KEY_PATH, SECURITY_TIERS
from nomyo_native._payload_binding import CLIENT_METADATA_KEYS, echo_matches
from nomyo_native._protocol_errors import (
    connection_error,
    deadline_error,
    error_from_response,
    locally_refused_error,
    status_error,
)
from nomyo_native.errors import (
    OPAQUE_CRYPTO_MESSAGE,
    CryptoError,
    InvalidRequestError,
    ResponseFormatError,
    SecurityError,
)

__all__ = [
    "COMPLETION_PATH",
    "MAX_ERROR_BODY_BYTES",
    "MAX_PUBLIC_KEY_BYTES",
    "PUBLIC_KEY_PATH",
    "VALID_SECURITY_TIERS",
    "Answer",
    "build_response",
    "build_response_within",
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


def build_response_within(
    opened: _core.OpenedEnvelope, payload_id: str, seconds: float
) -> dict[str, Any] | None:
    """:func:`build_response` if the build ends within ``seconds``, else ``None`` with
    ``opened``'s plaintext kept for :func:`build_response` (``OpenedEnvelope.build_within``)."""
    started = time.perf_counter()
    answer = _with_metadata(_built_within(opened, seconds), payload_id)  # as in open_response
    if answer is None:
        logger.debug(
            "building a response of %d bytes would take longer than %.1f ms: handed on",
            opened.plaintext_bytes,
            seconds * 1000,
        )
        return None
    logger.debug(
        "built response: %d bytes in %.1f ms",
        opened.plaintext_bytes,
        (time.perf_counter() - started) * 1000,
    )
    return answer


def _built(opened: _core.OpenedEnvelope) -> _Opened:
    with _opening_errors:
        return opened.build()


def _built_within(opened: _core.OpenedEnvelope, seconds: float) -> _Opened | None:
    with _opening_errors:
        return opened.build_within(seconds)


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


@overload
def _with_metadata(opened: _Opened, payload_id: str) -> dict[str, Any]: ...


@overload
def _with_metadata(opened: _Opened | None, payload_id: str) -> dict[str, Any] | None: ...


def _with_metadata(opened: _Opened | None, payload_id: str) -> dict[str, Any] | None:
    """The opened payload, which must be a JSON object, with the client's ``_metadata`` fields
    (``None`` for a build that gave up: ``build_within``'s ``None``).

    A refused answer does not outlive the refusal: the frames of a traceback keep their locals,
    and error reporters that record them (Sentry's default) would send the decrypted answer
    on. So the frames the refusal came through are cleared, this one drops the answer before
    it raises, and no caller holds the answer in a local of its own."""
    if opened is None:
        return None
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
