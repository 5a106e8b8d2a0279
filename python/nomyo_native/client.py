"""SecureCompletionClient: the async client of nomyo 0.2.9's API, a thin facade.

Every decision (options, key lifecycle, trust, retries, sealing, opening, binding, attestation)
is made by the protocol layer (``_protocol``, ``_retry``, ``_trust``, ``_keys``,
``_client_base``); this class runs those steps in order on the event loop, with
``_async_driver.AsyncDriver`` moving the bytes. Secret operations (keygen, seal, open) are
calls into the Rust core, run off the event loop thread (the core releases the GIL), except
where a hand-off would cost more than the call stalls the loop: sealing a small payload, and
sealing and opening a lone request's (``_loop_calls``). Key generation never runs on the
loop. Python only ever holds key handles, the envelope ciphertext and the final response
dict.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

import httpx2

from nomyo_native import _core, _http_edge, _protocol
from nomyo_native._async_driver import AsyncDriver
from nomyo_native._client_base import Checked, ClientBase, Sealer
from nomyo_native._config import FROM_TIMEOUT, ClientOptions
from nomyo_native._constants import (
    DEFAULT_KEY_ROTATION_INTERVAL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_ROUTER_URL,
    DEFAULT_TIMEOUT,
)
from nomyo_native._keyring import KeyRing
from nomyo_native._loop_calls import LoopCalls
from nomyo_native._protocol import VALID_SECURITY_TIERS, validate_security_tier
from nomyo_native._retry import RETRYABLE_STATUS_CODES
from nomyo_native._workers import run_blocking
from nomyo_native.attestation import ATTESTATION_POLICIES
from nomyo_native.types import ChatCompletion

__all__ = [
    "ATTESTATION_POLICIES",
    "DEFAULT_KEY_ROTATION_INTERVAL",
    "DEFAULT_TIMEOUT",
    "RETRYABLE_STATUS_CODES",
    "VALID_SECURITY_TIERS",
    "SecureCompletionClient",
    "validate_security_tier",
]

logger = logging.getLogger(__name__)


class _Lifecycle:
    """Closing and disposing an async client, and its context managers."""

    _closed: bool
    _disposed: bool
    _driver: AsyncDriver
    _keys: KeyRing

    async def aclose(self) -> None:
        """Close the pooled connections (keys are kept; see :meth:`dispose`)."""
        self._closed = True
        await self._driver.aclose()

    def close(self) -> None:
        """Close the pooled connections from synchronous code."""
        self._closed = True
        self._driver.close()

    def dispose(self) -> None:
        """Wipe every key handle now and close the connections; the client is then unusable."""
        self._disposed = True
        self._keys.wipe_all()
        self.close()
        logger.debug("client disposed: key pairs wiped")

    async def adispose(self) -> None:
        self._disposed = True
        self._keys.wipe_all()
        await self.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _AsyncKeys(ClientBase):
    """The key pair made, loaded or rotated off the event loop thread."""

    async def agenerate_keys(
        self, save_to_file: bool = False, key_dir: str = "client_keys", password: str | None = None
    ) -> None:
        """:meth:`generate_keys` off the event loop thread."""
        self._check_usable()
        await run_blocking(self._generate_and_install, save_to_file, key_dir, password)

    async def aload_keys(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None = None,
        password: str | None = None,
    ) -> None:
        """:meth:`load_keys` off the event loop thread."""
        self._check_usable()
        await run_blocking(self._load_and_install, private_key_path, public_key_path, password)

    async def _ensure_keys(self) -> None:
        """Load or generate the key pair on first use; rotate when the interval has passed."""
        if self._keys_ready():
            return
        async with self._keys.creation_lock(asyncio.get_running_loop(), asyncio.Lock):
            if not self._keys_ready():
                await run_blocking(self._refresh_keys)


class _Envelopes(ClientBase):
    """nomyo's explicit envelope calls, sealing and opening off the event loop thread."""

    if TYPE_CHECKING:

        async def _server_public_key(self) -> _core.ServerPublicKey: ...

    async def encrypt_payload(self, payload: dict[str, Any]) -> bytes:
        """Seal ``payload`` to the server key: the request envelope JSON (PROTOCOL.md s.2)."""
        self._check_usable()
        _protocol.validate_payload(payload)
        server_key = await self._server_public_key()
        return await run_blocking(_protocol.seal_payload, payload, server_key)

    async def decrypt_response(
        self,
        encrypted_response: bytes,
        payload_id: str,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
    ) -> ChatCompletion:
        """Open a response envelope with the current key pair, check the payload id binding,
        fill ``_metadata`` and apply the attestation policy (``require_payload_echo`` overrides
        the client's setting for this call)."""
        self._check_usable()
        _protocol.validate_encrypted_response(encrypted_response)
        policy = self._policy_for(attestation, None)
        body = bytes(encrypted_response)
        keypair = self._require_keypair()
        try:
            # The answer goes from the open straight into _finish (a finished coroutine keeps
            # no result): no local holds a refused one.
            opening = run_blocking(_protocol.open_response, body, payload_id, keypair)
            return self._finish(
                await opening, payload_id, policy, None, self._server_key, require_payload_echo
            )
        finally:
            self._keys.release(keypair)


class SecureCompletionClient(_Lifecycle, _AsyncKeys, _Envelopes):
    """Client for ``/v1/chat/secure_completion`` (same constructor and methods as nomyo 0.2.9).

    Extra keyword-only options harden and tune it: ``api_key`` (else ``NOMYO_API_KEY``),
    ``timeout`` (each connect/read/write) and ``deadline`` (one whole attempt, by default a
    numeric ``timeout``), ``verify``/``ca_bundle`` (TLS verification is never off for https),
    ``server_key_fingerprint`` (pin), ``server_key_pin_file`` (trust on first use),
    ``key_size``, ``key_dir``/``key_password`` (load-or-generate-and-save),
    ``key_rotation_interval`` (seconds, 0 disables), ``key_rotation_dir``/``key_rotation_password``,
    ``attestation`` (``"off"``/``"auto"``/``"bound"``/``"require"``; unset, tier ``maximum``
    requires ``"require"`` with a ``trusted_aik`` and ``"bound"`` without), ``pcr_baseline``,
    ``trusted_aik`` (or ``aik_pin_file``: the AIK enrolled for this server with
    ``nomyo-native attest enroll``),
    ``retry_backoff``/``max_backoff``/``max_retry_after`` (seconds), and for tests or custom
    runtimes ``transport`` (an httpx2 transport), ``sleep`` and ``clock``.

    The client's own pair (generated in memory, or loaded from or first saved to ``key_dir``)
    rotates after ``key_rotation_interval``, in memory: a rotated pair is saved only to
    ``key_rotation_dir`` when given (never ``key_dir`` itself, nor a directory ``generate_keys``
    saved to: a rotation never overwrites the user's pair), and the files in ``key_dir`` are
    never overwritten. Pairs
    installed with ``load_keys`` are never rotated automatically. With no ``key_dir``, the
    first pair is generated in the background from construction on, so that the first request
    does not wait for it (``background_keygen=False`` or ``NOMYO_BACKGROUND_KEYGEN=0`` turns
    that off; ``load_keys``/``generate_keys`` discard it). A lone request's seal and open run
    on the loop thread (~1.5 ms for a small one, instead of two thread hand-offs;
    ``crypto_on_loop=False`` keeps them on workers: ``_loop_calls``). ``require_payload_echo=True``
    refuses a response that does not echo the request's payload id (tier ``maximum`` always
    needs the echo or a TPM quote bound to it).
    ``secure_memory`` is accepted for compatibility: the core holds every secret in locked,
    wiped memory whatever its value.
    """

    def __init__(
        self,
        router_url: str = DEFAULT_ROUTER_URL,
        allow_http: bool = False,
        secure_memory: bool = True,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        api_key: str | None = None,
        timeout: float | httpx2.Timeout | None = DEFAULT_TIMEOUT,
        deadline: float | None = FROM_TIMEOUT,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        ca_bundle: str | os.PathLike[str] | None = None,
        server_key_fingerprint: str | None = None,
        server_key_pin_file: str | os.PathLike[str] | None = None,
        key_size: int = 4096,
        key_dir: str | os.PathLike[str] | None = None,
        key_password: str | None = None,
        key_rotation_interval: float = DEFAULT_KEY_ROTATION_INTERVAL,
        key_rotation_dir: str | os.PathLike[str] | None = None,
        key_rotation_password: str | None = None,
        attestation: str | None = None,
        pcr_baseline: dict[str, Any] | str | os.PathLike[str] | None = None,
        trusted_aik: Any = None,
        aik_pin_file: str | os.PathLike[str] | None = None,
        retry_backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        require_payload_echo: bool = False,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        background_keygen: bool | None = None,
        crypto_on_loop: bool = True,
        _keyring: KeyRing | None = None,
    ) -> None:
        # The signature is the option list (nomyo's four positional parameters first).
        arguments = dict(locals())
        del arguments["self"]
        self._setup(ClientOptions(**arguments), _http_edge)
        self._loop_calls = LoopCalls(crypto_on_loop)
        self._driver = AsyncDriver(
            timeout=timeout,
            ssl_context=self._ssl_context,
            auth=self._url.auth,
            transport=transport,
            sleep=sleep,
        )

    def clone_for(self, router_url: str) -> SecureCompletionClient:
        """A client for another base URL sharing this one's key pair and options (but not the
        server-key pin, which belongs to this URL's server)."""
        options = self._sibling_options(router_url)
        return SecureCompletionClient(**options.__dict__)

    # ---- requests ----------------------------------------------------------------------------

    def _state(self) -> Any:
        return self._driver.state()

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Callable[[], Awaitable[bytes]] | None,
        ok_cap: int,
        tier: str | None = None,
    ) -> bytes | bytearray | memoryview:
        """One logical request with retries; returns the 200 body or raises the mapped error.

        ``body`` is called for every attempt, so every attempt is sealed afresh.
        """
        url, headers = self._target(path, headers)
        for attempt in range(self._retry.attempts):
            content = await body() if body is not None else None
            started = self._attempt_starts(method, path, attempt)
            try:
                answer = await self._driver.send(
                    method, url, headers, content, ok_cap, self._deadline
                )
            except self._send_failures as exc:
                delay = self._after_failure(attempt, exc, started)
            else:
                delay = self._after_answer((method, path, headers, tier), attempt, answer, started)
                if delay is None:
                    return answer.body
            await self._driver.sleep(self._retry_delay(method, path, attempt, delay))
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch_server_public_key(self) -> str:
        """The server's public key PEM, fetched once over verified HTTPS and cached; checked
        against ``server_key_fingerprint`` and the pin file when set."""
        return (await self._server_public_key()).pem

    async def _server_public_key(self) -> _core.ServerPublicKey:
        cached = self._server_key
        if cached is not None:
            return cached
        self._check_transport_policy()
        async with self._driver.state().server_key_lock:
            if self._server_key is not None:
                return self._server_key
            body = await self._request(
                "GET",
                _protocol.PUBLIC_KEY_PATH,
                {"Accept": "text/plain"},
                None,
                _protocol.MAX_PUBLIC_KEY_BYTES,
            )
            key = self._accept_server_key(body)
            await run_blocking(self._check_pin_file, key.fingerprint)
            self._cache_server_key(key)
            return key

    async def send_secure_request(
        self,
        payload: dict[str, Any],
        payload_id: str,
        api_key: str | None = None,
        security_tier: str | None = None,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
    ) -> ChatCompletion:
        """Seal ``payload``, POST it (with retries), open and check the response
        (``require_payload_echo`` overrides the client's setting for this call)."""
        checked = self._check_request(payload_id, api_key, security_tier, attestation, payload)
        seal = functools.partial(_protocol.seal_payload, payload)
        # Asked at each seal, not now: the caller's payload may grow before an attempt seals it.
        here = functools.partial(self._loop_calls.seal_payload_here, payload)
        return await self._send(seal, payload_id, checked, require_payload_echo, here)

    async def send_sealed_request(
        self,
        seal: Sealer,
        payload_id: str,
        api_key: str | None = None,
        security_tier: str | None = None,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
        plaintext_bytes: int | None = None,
    ) -> ChatCompletion:
        """:meth:`send_secure_request` for a request the caller seals: ``seal(server_key)``
        returns the envelope, afresh for every attempt (e.g. ``_core.RequestBody.seal``, the
        openai SDK's request bytes read into locked memory). ``plaintext_bytes``: the size of
        what ``seal`` encrypts, when the caller knows it, so that a small (or lone) request
        is sealed on the event loop thread (``_loop_calls``; else on a worker)."""
        checked = self._check_request(payload_id, api_key, security_tier, attestation)
        size = plaintext_bytes
        here = None if size is None else functools.partial(self._loop_calls.seal_bytes_here, size)
        return await self._send(seal, payload_id, checked, require_payload_echo, here)

    async def _send(
        self,
        seal: Sealer,
        payload_id: str,
        checked: Checked,
        require_echo: bool | None,
        seal_here: Callable[[], bool] | None,
    ) -> ChatCompletion:
        """``seal_here``: whether the payload is, right now, to be sealed on the loop thread;
        the response is opened there too when this is the lone request in flight, counted
        from the start, key fetch and generation included (both: ``_loop_calls``)."""
        tier, bearer, policy = checked
        with self._loop_calls.counted():
            server_key = await self._server_public_key()
            await self._ensure_keys()
            keypair = self._keys.acquire()
            try:
                headers = self._completion_headers(payload_id, keypair, bearer, tier)

                async def seal_fresh() -> bytes:
                    if seal_here is not None and seal_here():
                        return seal(server_key)
                    return await run_blocking(seal, server_key)

                body = await self._request(
                    "POST",
                    _protocol.COMPLETION_PATH,
                    headers,
                    seal_fresh,
                    _core.MAX_ENVELOPE_BYTES,
                    tier,
                )
                # As in decrypt_response: no local holds a refused answer.
                opening = self._loop_calls.open(body, payload_id, keypair)
                return self._finish(
                    await opening, payload_id, policy, tier, server_key, require_echo
                )
            finally:
                self._keys.release(keypair)

    def __repr__(self) -> str:
        return f"<SecureCompletionClient {self._shown_url} closed={self._closed}>"
