"""One secure completion attempt for the SDK transport, on a ``SecureCompletionClient``.

The seam between the transport and the client: the body comes sealed from a
``_core.RequestBody`` (the SDK's bytes, never a dict), is POSTed once (retries belong to the
SDK, so the client runs with ``max_retries=0``), and the answer is opened, bound to its payload
id, given its ``_metadata`` and judged by the attestation policy exactly as
``send_secure_request`` does for a dict payload.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from nomyo_native import _core
from nomyo_native.client import COMPLETION_PATH, SecureCompletionClient
from nomyo_native.errors import PayloadTooLargeError, SecurityError

T = TypeVar("T")


async def _seal(body: _core.RequestBody, server_key: _core.ServerPublicKey) -> bytes:
    try:
        return await asyncio.to_thread(body.seal, server_key)
    except _core.PayloadTooLargeError as exc:
        raise PayloadTooLargeError(f"Payload too large: {exc}") from None
    except _core.CoreError:
        raise SecurityError("Encryption operation failed") from None


async def exchange(
    client: SecureCompletionClient,
    body: _core.RequestBody,
    api_key: str | None,
    tier: str | None,
) -> dict[str, Any]:
    """Seal ``body``, POST it once, open and check the answer: the completion dict, or the
    client's typed exception (APIError with status and Retry-After, APIConnectionError,
    SecurityError)."""
    client._check_usable()
    payload_id = str(uuid.uuid4())
    policy = client._policy_for(None, tier)
    server_key = await client._server_public_key()
    await client._ensure_keys()
    keypair = client._keys.acquire()
    try:
        headers = {
            "X-Payload-ID": payload_id,
            "X-Public-Key": client._public_key_header(keypair),
            "Content-Type": "application/octet-stream",
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if tier:
            headers["X-Security-Tier"] = tier

        async def sealed() -> bytes:
            return await _seal(body, server_key)

        data = await client._request(
            "POST", COMPLETION_PATH, headers, sealed, _core.MAX_ENVELOPE_BYTES, tier
        )
        response = await client._open(data, payload_id, keypair)
    finally:
        body.wipe()
        client._keys.release(keypair)
    client._finish(response["_metadata"], payload_id, policy, tier, server_key)
    return response


class LoopThread:
    """A private event loop on a daemon thread, for the blocking transport (the client's
    machinery is asynchronous)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nomyo-native-openai", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("the transport is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
