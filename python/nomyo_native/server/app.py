"""The ASGI app: ``GET /pki/public_key`` and ``POST /v1/chat/secure_completion``.

Every refusal is ``{"detail": ...}`` with the status of PROTOCOL.md section 4, and the
server keeps serving. Checks run cheapest first (auth, headers, size) so that bad requests
cost no RSA work. RSA and TPM work run in worker threads so the event loop stays free.
Nothing logged here contains keys, plaintext or API keys.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nomyo_native.server.backends import (
    Backend,
    BackendFailed,
    BackendRejected,
    BackendUnavailable,
)
from nomyo_native.server.crypto import (
    ClientKeyError,
    DecryptionFailed,
    EnvelopeError,
    ServerKey,
    open_request,
    parse_client_public_key,
    seal_response,
)
from nomyo_native.server.limits import BodyBudget, ConnectionLimits
from nomyo_native.server.policy import SECURITY_TIERS, ApiKeyPolicy, RateLimiter, TierPolicy
from nomyo_native.server.process_info import memory_protection
from nomyo_native.server.recording import KeyRecorder
from nomyo_native.server.request_log import RequestLog, RequestLogMiddleware
from nomyo_native.server.tpm import TpmError, TpmQuoter

logger = logging.getLogger("nomyo_native.server")

SECURE_COMPLETION_PATH = "/v1/chat/secure_completion"
PUBLIC_KEY_PATH = "/pki/public_key"
_PAYLOAD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class Refusal(Exception):
    """Ends a request with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


@dataclass
class EndpointState:
    """What the routes need; built by :mod:`nomyo_native.server.runner`."""

    server_key: ServerKey
    backend: Backend
    api_keys: ApiKeyPolicy
    tier_policy: TierPolicy
    max_body_bytes: int
    quoter: TpmQuoter | None = None
    tpm_scheme: str = "ecdsa"
    tpm_hash: str = "sha256"
    # PEM certificates that issued the TPM's EK certificate (served for enrollment).
    ek_chain_pem: tuple[str, ...] = ()
    recorder: KeyRecorder | None = None
    rate_limiter: RateLimiter | None = None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    # Method and path of every request received (tests check nothing arrived off-protocol).
    request_log: RequestLog = field(default_factory=RequestLog)
    body_budget: BodyBudget = field(init=False)

    def __post_init__(self) -> None:
        self.body_budget = BodyBudget(self.limits.max_inflight_body_bytes)


@dataclass
class _Reservation:
    """Body bytes one request holds in the shared :class:`BodyBudget` (given back at its end)."""

    size: int = 0


_CLOSE = {"Connection": "close"}


def _reserve(state: EndpointState, reservation: _Reservation, total: int) -> None:
    """Grow ``reservation`` to ``total`` bytes, or refuse with 503 when the budget is spent."""
    if total > reservation.size:
        if not state.body_budget.take(total - reservation.size):
            raise Refusal(
                503,
                "server busy: too many request bodies in transit; retry shortly",
                headers={"Retry-After": "1", **_CLOSE},
            )
        reservation.size = total


async def _read_body(request: Request, state: EndpointState, reservation: _Reservation) -> bytes:
    """The whole body, within the size limit, the shared body budget, and the body deadlines
    (``body_timeout`` between chunks, ``request_timeout`` in total): 400, 503 or 408."""
    limit, limits = state.max_body_bytes, state.limits
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # "²".isdigit() is True too
            raise Refusal(400, "invalid Content-Length")
        if int(declared) > limit:
            raise Refusal(400, f"request body exceeds the limit of {limit} bytes", _CLOSE)
        # Reserved up front: a client announcing a large body cannot outbid the budget later.
        _reserve(state, reservation, int(declared))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.request_timeout
    chunks = request.stream().__aiter__()
    parts: list[bytes] = []
    size = 0
    while True:
        wait = min(limits.body_timeout, deadline - loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(chunks.__anext__(), wait)
        except StopAsyncIteration:
            break
        except ClientDisconnect:  # gone, or displaced at the connection cap: nobody to answer
            raise Refusal(400, "the client left before sending its whole body", _CLOSE) from None
        except TimeoutError:
            raise Refusal(408, "request body arrived too slowly", _CLOSE) from None
        size += len(chunk)
        if size > limit:
            raise Refusal(400, f"request body exceeds the limit of {limit} bytes", _CLOSE)
        _reserve(state, reservation, size)
        parts.append(chunk)
    if size == 0:
        raise Refusal(400, "request body is empty")
    return b"".join(parts)


def _parse_chat_request(plaintext: bytes) -> dict[str, Any]:
    try:
        chat = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "decrypted payload is not valid JSON") from None
    if not isinstance(chat, dict):
        raise Refusal(400, "decrypted payload must be a JSON object")
    model = chat.get("model")
    if not isinstance(model, str) or not model:
        raise Refusal(400, "'model' must be a non-empty string")
    messages = chat.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "'messages' must be a non-empty list")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise Refusal(400, "each message must be an object with a 'role'")
    # Like the NOMYO servers: a request that asks for a stream is refused, not quietly
    # answered in one piece (the caller's code would wait for chunks that never come).
    # Only JSON false or null (or no field) means no stream: 0 == False in Python, but a
    # number is not the boolean the protocol names.
    stream = chat.get("stream")
    if stream is not None and stream is not False:
        raise Refusal(
            400, "the secure completion protocol has no streaming: send 'stream': false or omit it"
        )
    return chat


class SecureCompletionHandler:
    def __init__(self, state: EndpointState) -> None:
        self.state = state
        self.memory_protection = memory_protection()

    async def respond(self, request: Request) -> Response:
        started = time.perf_counter()
        payload_id = "-"
        reservation = _Reservation()
        try:
            payload_id, response = await self._handle(request, reservation)
            status = response.status_code
        except Refusal as refusal:
            status = refusal.status
            response = JSONResponse(
                {"detail": refusal.detail}, status_code=refusal.status, headers=refusal.headers
            )
        except Exception as exc:  # keep serving; never echo internals to the client
            status = 500
            logger.error("secure_completion failed internally: %s", type(exc).__name__)
            response = JSONResponse({"detail": "internal server error"}, status_code=500)
        finally:
            self.state.body_budget.give_back(reservation.size)
        logger.info(
            "secure_completion payload_id=%s status=%d %.1fms",
            payload_id if _PAYLOAD_ID.fullmatch(payload_id) else "-",
            status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def _handle(self, request: Request, reservation: _Reservation) -> tuple[str, Response]:
        state = self.state
        self._admit(request)
        payload_id, client_key, tier = self._request_headers(request.headers)

        body = await _read_body(request, state, reservation)
        try:
            opened = await run_in_threadpool(open_request, body, state.server_key)
        except EnvelopeError as exc:
            raise Refusal(400, f"malformed envelope: {exc}") from None
        except DecryptionFailed:
            raise Refusal(400, "decryption failed") from None
        chat = _parse_chat_request(opened.plaintext)
        forbidden = state.tier_policy.check(tier, chat["model"])
        if forbidden is not None:
            raise Refusal(403, forbidden)

        completion = await self._complete(chat)
        completion["_metadata"] = {
            "payload_id": payload_id,
            "processed_at": time.time(),
            "is_encrypted": True,
            "response_status": "success",
            "security_tier": tier,
            "memory_protection": dict(self.memory_protection),
            "cuda_device": {"available": False, "device_hash": None},
            "tpm_attestation": await self._attest(payload_id, tier),
        }
        try:
            # Strict JSON: NaN/Infinity would break every standards-following client parser.
            plaintext = json.dumps(completion, allow_nan=False).encode("utf-8")
        except (ValueError, TypeError):
            raise Refusal(502, "backend returned a completion that is not valid JSON") from None
        sealed = await run_in_threadpool(seal_response, plaintext, client_key)
        if state.recorder is not None:
            state.recorder.record(payload_id, opened.aes_key, sealed.aes_key)
        return payload_id, Response(sealed.body, media_type="application/json")

    def _admit(self, request: Request) -> None:
        """Refuse a caller without a valid API key (401) or over its rate limit (429)."""
        state = self.state
        authorization = request.headers.get("authorization")
        denied = state.api_keys.check(authorization)
        if denied is not None:
            raise Refusal(401, denied)
        if state.rate_limiter is not None:
            # Authenticated callers are limited per key, anonymous ones per address.
            if state.api_keys.enabled and authorization:
                caller = (
                    "key:" + hashlib.sha256(authorization.encode("utf-8", "replace")).hexdigest()
                )
            else:
                caller = "addr:" + (request.client.host if request.client else "unknown")
            wait = state.rate_limiter.acquire(caller)
            if wait is not None:
                raise Refusal(
                    429, "rate limit exceeded", headers={"Retry-After": str(math.ceil(wait))}
                )

    def _request_headers(self, headers: Headers) -> tuple[str, rsa.RSAPublicKey, str]:
        """The payload id, the client's public key and the security tier the headers carry
        (400 when one is missing or malformed; 503 for tier 'maximum' without a TPM)."""
        state = self.state
        payload_id = headers.get("x-payload-id")
        if not payload_id:
            raise Refusal(400, "missing X-Payload-ID header")
        if not _PAYLOAD_ID.fullmatch(payload_id):
            raise Refusal(400, "X-Payload-ID must be 1-128 characters of [A-Za-z0-9._:-]")
        public_key_header = headers.get("x-public-key")
        if not public_key_header:
            raise Refusal(400, "missing X-Public-Key header")
        try:
            client_key = parse_client_public_key(public_key_header)
        except ClientKeyError as exc:
            raise Refusal(400, str(exc)) from None
        tier = headers.get("x-security-tier") or state.tier_policy.default_tier
        if tier not in SECURITY_TIERS:
            raise Refusal(400, f"X-Security-Tier must be one of {', '.join(SECURITY_TIERS)}")
        if tier == "maximum" and state.quoter is None:
            raise Refusal(503, "security tier 'maximum' requires a TPM and this server has none")
        return payload_id, client_key, tier

    async def _complete(self, chat: dict[str, Any]) -> dict[str, Any]:
        try:
            completion = await self.state.backend.complete(chat)
        except BackendUnavailable as exc:
            raise Refusal(503, str(exc)) from None
        except BackendRejected as exc:
            raise Refusal(400, str(exc)) from None
        except BackendFailed as exc:
            raise Refusal(502, str(exc)) from None
        return completion

    async def _attest(self, payload_id: str, tier: str) -> dict[str, Any]:
        quoter = self.state.quoter
        if quoter is None:
            return {"is_available": False}
        try:
            # A persistent AIK also binds the server key (the extension); a fresh one does not.
            bind_key = self.state.server_key.fingerprint if quoter.persistent else None
            return await run_in_threadpool(
                functools.partial(
                    quoter.quote,
                    payload_id,
                    scheme=self.state.tpm_scheme,
                    hash_alg=self.state.tpm_hash,
                    server_key_fingerprint=bind_key,
                )
            )
        except TpmError as exc:
            logger.error("TPM quote failed: %s", exc)
            if tier == "maximum":
                raise Refusal(503, "TPM attestation is temporarily unavailable") from None
            return {"is_available": False}


def _public_key_route(state: EndpointState) -> Route:
    async def public_key(_: Request) -> Response:
        return PlainTextResponse(state.server_key.public_key_pem)

    return Route(PUBLIC_KEY_PATH, public_key, methods=["GET"])


def _health_route(state: EndpointState) -> Route:
    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "tpm": state.quoter is not None,
                "server_key_fingerprint": state.server_key.fingerprint,
            }
        )

    return Route("/health", health, methods=["GET"])


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(state: EndpointState) -> Starlette:
    """The endpoint as an ASGI app (serve it with uvicorn, or drive it with
    httpx2.ASGITransport)."""
    routes = [
        _public_key_route(state),
        Route(SECURE_COMPLETION_PATH, SecureCompletionHandler(state).respond, methods=["POST"]),
        _health_route(state),
    ]
    # The attestation extension (enrollment), imported here: it builds on this module.
    from nomyo_native.server.enrollment import enrollment_routes

    routes += enrollment_routes(state)
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception},
        middleware=[Middleware(RequestLogMiddleware, log=state.request_log)],
    )
