"""The blocking twin of ``SecureCompletionClient``: the same decisions (``_client_base``), the
same steps in the same order, on the sync driver (``_sync_driver``) in the caller's thread.

No event loop and no helper thread: sealing, opening and key generation run in the calling
thread (the core releases the GIL, so other threads keep running).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from nomyo_native import _core, _http_edge, _protocol
from nomyo_native._client_base import Checked, ClientBase, Sealer
from nomyo_native._config import ClientOptions
from nomyo_native._sync_driver import SyncDriver
from nomyo_native.types import ChatCompletion

__all__ = ["SyncCompletionClient"]

logger = logging.getLogger("nomyo_native.client")


class SyncCompletionClient(ClientBase):
    """A blocking secure completion client (the options of ``SecureCompletionClient``; a
    ``transport`` must be a sync httpx2 transport and ``sleep`` a plain callable)."""

    def __init__(self, options: ClientOptions) -> None:
        self._setup(options, _http_edge)
        self._driver = SyncDriver(
            timeout=options.timeout,
            ssl_context=self._ssl_context,
            auth=self._url.auth,
            transport=options.transport,
            sleep=options.sleep,
        )

    def clone_for(self, router_url: str) -> SyncCompletionClient:
        """A client for another base URL sharing this one's key pair and options."""
        return SyncCompletionClient(self._sibling_options(router_url))

    def _ensure_keys(self) -> None:
        if not self._keys_ready():
            self._refresh_keys()

    def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Callable[[], bytes] | None,
        ok_cap: int,
        tier: str | None = None,
    ) -> bytes | bytearray | memoryview:
        """One logical request with retries (see ``SecureCompletionClient._request``)."""
        url, headers = self._target(path, headers)
        for attempt in range(self._retry.attempts):
            content = body() if body is not None else None
            started = self._attempt_starts(method, path, attempt)
            try:
                answer = self._driver.send(method, url, headers, content, ok_cap, self._deadline)
            except self._send_failures as exc:
                delay = self._after_failure(attempt, exc, started)
            else:
                delay = self._after_answer((method, path, headers, tier), attempt, answer, started)
                if delay is None:
                    return answer.body
            self._driver.sleep(self._retry_delay(method, path, attempt, delay))
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch_server_public_key(self) -> str:
        return self._server_public_key().pem

    def _server_public_key(self) -> _core.ServerPublicKey:
        cached = self._server_key
        if cached is not None:
            return cached
        self._check_transport_policy()
        with self._driver.server_key_lock:
            if self._server_key is not None:
                return self._server_key
            body = self._request(
                "GET",
                _protocol.PUBLIC_KEY_PATH,
                {"Accept": "text/plain"},
                None,
                _protocol.MAX_PUBLIC_KEY_BYTES,
            )
            key = self._accept_server_key(body)
            self._check_pin_file(key.fingerprint)
            self._cache_server_key(key)
            return key

    def encrypt_payload(self, payload: dict[str, Any]) -> bytes:
        """``SecureCompletionClient.encrypt_payload``, blocking."""
        self._check_usable()
        _protocol.validate_payload(payload)
        return _protocol.seal_payload(payload, self._server_public_key())

    def decrypt_response(
        self,
        encrypted_response: bytes,
        payload_id: str,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
    ) -> ChatCompletion:
        """``SecureCompletionClient.decrypt_response``, blocking."""
        self._check_usable()
        _protocol.validate_encrypted_response(encrypted_response)
        policy = self._policy_for(attestation, None)
        keypair = self._require_keypair()
        try:
            # Straight from the open into _finish: no local holds a refused answer.
            return self._finish(
                _protocol.open_response(bytes(encrypted_response), payload_id, keypair),
                payload_id,
                policy,
                None,
                self._server_key,
                require_payload_echo,
            )
        finally:
            self._keys.release(keypair)

    def send_secure_request(
        self,
        payload: dict[str, Any],
        payload_id: str,
        api_key: str | None = None,
        security_tier: str | None = None,
        *,
        attestation: str | None = None,
        require_payload_echo: bool | None = None,
    ) -> ChatCompletion:
        """Seal ``payload``, POST it (with retries), open and check the response."""
        checked = self._check_request(payload_id, api_key, security_tier, attestation, payload)
        seal = functools.partial(_protocol.seal_payload, payload)
        return self._send(seal, payload_id, checked, require_payload_echo)

    def send_sealed_request(
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
        """``SecureCompletionClient.send_sealed_request``, blocking (``plaintext_bytes`` changes
        nothing here: this client seals and opens on the calling thread whatever the size)."""
        checked = self._check_request(payload_id, api_key, security_tier, attestation)
        return self._send(seal, payload_id, checked, require_payload_echo)

    def _send(
        self, seal: Sealer, payload_id: str, checked: Checked, require_echo: bool | None
    ) -> ChatCompletion:
        tier, bearer, policy = checked
        server_key = self._server_public_key()
        self._ensure_keys()
        keypair = self._keys.acquire()
        try:
            headers = self._completion_headers(payload_id, keypair, bearer, tier)
            body = self._request(
                "POST",
                _protocol.COMPLETION_PATH,
                headers,
                lambda: seal(server_key),
                _core.MAX_ENVELOPE_BYTES,
                tier,
            )
            # Straight from the open into _finish: no local holds a refused answer.
            return self._finish(
                _protocol.open_response(body, payload_id, keypair),
                payload_id,
                policy,
                tier,
                server_key,
                require_echo,
            )
        finally:
            self._keys.release(keypair)

    def close(self) -> None:
        """Close the pooled connections (keys are kept; see :meth:`dispose`)."""
        self._closed = True
        self._driver.close()

    def dispose(self) -> None:
        """Wipe every key handle now and close the connections; the client is then unusable."""
        self._disposed = True
        self._keys.wipe_all()
        self.close()

    def __repr__(self) -> str:
        return f"<SyncCompletionClient {self._shown_url} closed={self._closed}>"
