"""What the adversarial review of the client split found the two drivers doing differently:
the async client and the sync one must refuse, fail and report alike."""

from __future__ import annotations

import httpx2
import pytest

import nomyo_native as nomyo


def test_a_sync_only_transport_is_refused_by_the_async_client_at_construction():
    # The sync client refuses an async transport up front; the async client must not accept a
    # sync one only to fail at the first request with an AttributeError.
    with pytest.raises(TypeError, match="asynchronous httpx2 transport"):
        nomyo.SecureChatCompletion(transport=httpx2.HTTPTransport())
    with pytest.raises(TypeError, match="asynchronous httpx2 transport"):
        nomyo.SecureCompletionClient(transport=httpx2.HTTPTransport())


def test_a_transport_of_both_kinds_serves_either_client():
    transport = httpx2.MockTransport(lambda request: httpx2.Response(500))
    for cls in (nomyo.SecureChatCompletion, nomyo.SyncSecureChatCompletion):
        cls(transport=transport).close()
