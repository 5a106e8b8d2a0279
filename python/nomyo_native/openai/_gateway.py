"""The SDK transport's decisions, shared by the httpx2 (openai 3.x) and httpx (2.x) flavours.

A request comes in as method, URL, headers and the SDK's body bytes; an :class:`Answer` (or an
exception the SDK treats as it should) goes out. Nothing is sent for a request refused here: the
path is checked first, then the body is read into locked memory by the core (which refuses
``stream``), and only then does the client fetch the server key and POST.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nomyo_native import _core
from nomyo_native._config import ClientOptions
from nomyo_native._protocol import validate_security_tier
from nomyo_native._retry import is_permanent_tpm_refusal, tls_verification_failure
from nomyo_native._sync_client import SyncCompletionClient
from nomyo_native.client import SecureCompletionClient
from nomyo_native.errors import (
    APIConnectionError,
    APIError,
    ClientClosedError,
    PayloadTooLargeError,
    SecurityError,
)
from nomyo_native.openai import _answers
from nomyo_native.openai._answers import Answer
from nomyo_native.openai._errors import as_openai_error, sdk_propagates_errors
from nomyo_native.openai._exchange import exchange, exchange_blocking
from nomyo_native.openai._gate import Gate, api_key_for, router_of, tier_for

logger = logging.getLogger("nomyo_native.openai")

DEBUG_WARNING = (
    "the openai SDK's logger is at DEBUG: the SDK can log every request's options, the prompt "
    "included (openai 2.x and early 3.x releases do), in plaintext before nomyo_native seals it. "
    "Raise the 'openai' logger above DEBUG (and unset OPENAI_LOG) for confidential prompts."
)
_debug_warned = False


def warn_if_sdk_logs_plaintext() -> None:
    """Warn once per process when the SDK's logger would log request bodies (when an HTTP
    client is made, and at each request in case the level changed since)."""
    global _debug_warned
    if _debug_warned or not logging.getLogger("openai").isEnabledFor(logging.DEBUG):
        return
    _debug_warned = True
    logger.warning(DEBUG_WARNING)
    warnings.warn(DEBUG_WARNING, RuntimeWarning, stacklevel=3)


class Failures(Protocol):
    """The HTTP library's own exceptions for a transient failure (the SDK retries them)."""

    def connect_error(self, message: str) -> Exception: ...

    def timeout_error(self, message: str) -> Exception: ...


@dataclass(frozen=True)
class Prepared:
    """A request the gateway will send: its body in locked memory, key and tier."""

    body: _core.RequestBody
    api_key: str | None
    tier: str | None


# What a send can fail with, each mapped to what the SDK must see (``_GatewayBase._failed``).
SEND_FAILURES = (
    SecurityError,
    APIError,
    APIConnectionError,
    PayloadTooLargeError,
    ClientClosedError,
)


class _GatewayBase:
    """The decisions shared by the async and the blocking gateway.

    ``options`` are the client's own (``api_key``, pins, ``ca_bundle``, attestation policy,
    ``key_dir``...) plus ``security_tier`` (the default tier; a request's ``X-Security-Tier``
    header overrides it). Retries are the SDK's: ``max_retries`` goes to the SDK, not here.
    """

    def __init__(self, base_url: str, failures: Failures, options: dict[str, Any]) -> None:
        if "max_retries" in options:
            raise TypeError(
                "max_retries is the openai SDK's option: pass it to OpenAI(...)/AsyncOpenAI(...); "
                "the transport sends each attempt once"
            )
        self.tier = validate_security_tier(options.pop("security_tier", None))
        self.router_url = router_of(base_url)
        self.gate = Gate(self.router_url)
        self._failures = failures

    def prepare(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, own_key: str | None
    ) -> Prepared | Answer:
        """Check the request and read its body into locked memory, or refuse it (nothing
        sent). ``headers`` must look names up case-insensitively."""
        warn_if_sdk_logs_plaintext()
        refusal = self.gate.check(method, url)
        if refusal is not None:
            return _answers.refused(refusal)
        try:
            tier = tier_for(self.tier, headers)
            api_key = api_key_for(own_key, headers)
            return Prepared(_core.RequestBody(body), api_key, tier)
        except (ValueError, TypeError, SecurityError) as exc:
            return _answers.invalid_request(str(exc))

    def _failed(self, error: Exception, tier: str | None) -> Answer:
        """What the SDK sees for a failed send (or the exception it must get)."""
        if isinstance(error, SecurityError):
            return self._security_failure(error)
        if isinstance(error, APIError):
            permanent = is_permanent_tpm_refusal(error, tier)
            return _answers.from_api_error(error, permanent=permanent)
        if isinstance(error, APIConnectionError):
            return self._connection_failure(error)
        if isinstance(error, ClientClosedError):
            if sdk_propagates_errors():
                raise as_openai_error(error) from None
            return _answers.client_closed(error)
        return _answers.invalid_request(str(error))

    def _security_failure(self, error: SecurityError) -> Answer:
        if sdk_propagates_errors():
            raise as_openai_error(error) from None
        return _answers.security_failure(error)

    def _connection_failure(self, error: APIConnectionError) -> Answer:
        cause = error.__cause__
        if cause is not None and tls_verification_failure(cause) is not None:
            # A certificate the client cannot verify is no blip: never retried.
            return self._security_failure(SecurityError(str(error)))
        if isinstance(cause, TimeoutError) or type(cause).__name__.endswith("Timeout"):
            raise self._failures.timeout_error(str(error)) from None
        raise self._failures.connect_error(str(error)) from None


class Gateway(_GatewayBase):
    """Serves ``POST <router>/v1/chat/completions`` through a ``SecureCompletionClient``."""

    def __init__(self, base_url: str, failures: Failures, **options: Any) -> None:
        super().__init__(base_url, failures, options)
        self.client = SecureCompletionClient(self.router_url, max_retries=0, **options)

    async def answer(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        """The answer to one SDK request (one attempt; raises for a transient failure)."""
        prepared = self.prepare(method, url, headers, body, self.client.api_key)
        if isinstance(prepared, Answer):
            return prepared
        try:
            payload = await exchange(self.client, prepared.body, prepared.api_key, prepared.tier)
        except SEND_FAILURES as exc:
            return self._failed(exc, prepared.tier)
        return _answers.completion(payload)

    async def aclose(self) -> None:
        await self.client.aclose()


class BlockingGateway(_GatewayBase):
    """The same in the calling thread, through the blocking ``SyncCompletionClient`` (a
    ``transport`` option is then a sync httpx2 transport)."""

    def __init__(self, base_url: str, failures: Failures, **options: Any) -> None:
        super().__init__(base_url, failures, options)
        self.client = SyncCompletionClient(ClientOptions(self.router_url, max_retries=0, **options))

    def answer(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        prepared = self.prepare(method, url, headers, body, self.client.api_key)
        if isinstance(prepared, Answer):
            return prepared
        try:
            payload = exchange_blocking(self.client, prepared.body, prepared.api_key, prepared.tier)
        except SEND_FAILURES as exc:
            return self._failed(exc, prepared.tier)
        return _answers.completion(payload)

    def close(self) -> None:
        self.client.close()
