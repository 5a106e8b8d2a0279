"""One secure completion attempt for the SDK transport, on our async or blocking client.

The clients' ``send_sealed_request`` is ``send_secure_request`` for a body the caller seals:
here ``_core.RequestBody.seal`` (the SDK's bytes in locked memory, never a dict), with the
same headers, the driver's one POST (retries belong to the SDK, so the clients run with
``max_retries=0``), ``_metadata``, attestation policy and binding check. The body is wiped
whatever happens.
"""

from __future__ import annotations

import uuid

from nomyo_native import _core
from nomyo_native._sync_client import SyncCompletionClient
from nomyo_native.client import SecureCompletionClient
from nomyo_native.types import ChatCompletion


async def exchange(
    client: SecureCompletionClient,
    body: _core.RequestBody,
    api_key: str | None,
    tier: str | None,
) -> ChatCompletion:
    """Seal ``body``, POST it once, open and check the answer: the completion, or the
    client's typed exception (APIError with status and Retry-After, APIConnectionError,
    SecurityError)."""
    # The body's size lets the client seal a small (or lone) request on the loop thread, as it
    # seals a payload of its own (_loop_calls).
    try:
        return await client.send_sealed_request(
            body.seal, str(uuid.uuid4()), api_key, tier, plaintext_bytes=body.size
        )
    finally:
        body.wipe()


def exchange_blocking(
    client: SyncCompletionClient,
    body: _core.RequestBody,
    api_key: str | None,
    tier: str | None,
) -> ChatCompletion:
    """:func:`exchange` in the calling thread, on the blocking client."""
    try:
        return client.send_sealed_request(body.seal, str(uuid.uuid4()), api_key, tier)
    finally:
        body.wipe()
