"""One secure completion attempt for the SDK transport, on our async or blocking client.

The body comes sealed from a ``_core.RequestBody`` (the SDK's bytes, never a dict) instead of
``_protocol.seal_payload``; everything else is ``send_secure_request``'s steps from the
protocol layer (``ClientBase``): headers, one POST through the client's driver (retries belong
to the SDK, so the client runs with ``max_retries=0``), ``_protocol.open_response`` (open,
payload id, ``_metadata``) and the attestation policy and binding check.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from nomyo_native import _core, _protocol
from nomyo_native._base import ClientBase
from nomyo_native._sync_client import SyncCompletionClient
from nomyo_native.client import SecureCompletionClient
from nomyo_native.errors import SecurityError


def _seal(body: _core.RequestBody, server_key: _core.ServerPublicKey) -> bytes:
    try:
        return body.seal(server_key)
    except _core.CryptoError:
        raise SecurityError("Encryption operation failed") from None


def _headers(
    client: ClientBase, keypair: _core.ClientKeyPair, api_key: str | None, tier: str | None
) -> tuple[str, dict[str, str]]:
    payload_id = str(uuid.uuid4())
    return payload_id, client._completion_headers(payload_id, keypair, api_key, tier)


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
    policy = client._policy_for(None, tier)
    server_key = await client._server_public_key()
    await client._ensure_keys()
    keypair = client._keys.acquire()
    try:
        payload_id, headers = _headers(client, keypair, api_key, tier)

        async def sealed() -> bytes:
            return await asyncio.to_thread(_seal, body, server_key)

        data = await client._request(
            "POST", _protocol.COMPLETION_PATH, headers, sealed, _core.MAX_ENVELOPE_BYTES, tier
        )
        response = await asyncio.to_thread(_protocol.open_response, data, payload_id, keypair)
    finally:
        body.wipe()
        client._keys.release(keypair)
    client._finish(response, payload_id, policy, tier, server_key)  # raises when refused
    return response


def exchange_blocking(
    client: SyncCompletionClient,
    body: _core.RequestBody,
    api_key: str | None,
    tier: str | None,
) -> dict[str, Any]:
    """:func:`exchange` in the calling thread, on the blocking client."""
    client._check_usable()
    policy = client._policy_for(None, tier)
    server_key = client._server_public_key()
    client._ensure_keys()
    keypair = client._keys.acquire()
    try:
        payload_id, headers = _headers(client, keypair, api_key, tier)
        data = client._request(
            "POST",
            _protocol.COMPLETION_PATH,
            headers,
            lambda: _seal(body, server_key),
            _core.MAX_ENVELOPE_BYTES,
            tier,
        )
        response = _protocol.open_response(data, payload_id, keypair)
    finally:
        body.wipe()
        client._keys.release(keypair)
    client._finish(response, payload_id, policy, tier, server_key)  # raises when refused
    return response
