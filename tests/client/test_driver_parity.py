"""What the adversarial review of the client split found the two drivers doing differently:
the async client and the sync one must refuse, fail and report alike."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse

import httpx2
import pytest

import nomyo_native as nomyo

from .disclosure import everything_said_about


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


NAME, PASSWORD = "proxyuser7", "Pw0rd-5ecret@x"
BASIC_TOKEN = base64.b64encode(f"{NAME}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("status", [400, 401, 403, 500])
def test_a_server_quoting_the_basic_credentials_of_the_url_gets_them_scrubbed(kind, status):
    # The URL's user:password go out as an Authorization: Basic header; a server that quotes
    # the header it got (as one quoting a bearer token does) must not put them, base64 or not,
    # into the exception.
    def answer(request: httpx2.Request) -> httpx2.Response:
        quoted = request.headers.get("authorization", "")
        assert quoted == f"Basic {BASIC_TOKEN}"
        return httpx2.Response(status, json={"detail": f"credentials refused: {quoted}"})

    url = f"https://{NAME}:{urllib.parse.quote(PASSWORD, safe='')}@peer.test"
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    chat = cls(base_url=url, max_retries=0, transport=httpx2.MockTransport(answer))
    with pytest.raises(nomyo.APIError) as caught:
        call = chat.client.fetch_server_public_key()
        if kind == "async":
            asyncio.run(call)
    said = everything_said_about(caught.value)
    assert caught.value.status_code == status
    assert "credentials refused" in said
    for secret in (BASIC_TOKEN, PASSWORD, NAME):
        assert secret not in said
