"""Property: no request, however malformed, makes the endpoint answer 500 or lose its footing.
Driven in-process through the ASGI app (no sockets), so hypothesis can try many shapes fast."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomyo_native.server.app import EndpointState, create_app
from nomyo_native.server.backends import EchoBackend
from nomyo_native.server.policy import ApiKeyPolicy, TierPolicy

from .wire import PATH, open_response, public_pem, seal

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def app_client(server_key):
    state = EndpointState(
        server_key=server_key,
        backend=EchoBackend(),
        api_keys=ApiKeyPolicy(),
        tier_policy=TierPolicy(),
        max_body_bytes=64 * 1024,
    )
    app = create_app(state)

    def post(headers: dict, content: bytes) -> httpx2.Response:
        async def send() -> httpx2.Response:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://asgi") as client:
                return await client.post(PATH, headers=headers, content=content)

        return asyncio.run(send())

    return post


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
b64_text = st.binary(max_size=600).map(lambda raw: base64.b64encode(raw).decode())
field_values = json_values | b64_text | st.sampled_from(["1.0", "hybrid-aes256-rsa4096"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "version",
                "algorithm",
                "encrypted_payload",
                "encrypted_aes_key",
                "key_algorithm",
                "payload_algorithm",
            ]
        ),
        field_values,
    ),
    inner=st.dictionaries(st.sampled_from(["ciphertext", "nonce", "tag"]), field_values),
)
def test_random_envelopes_get_400(app_client, server_key, client_key, fields, inner):
    envelope, _ = seal(CHAT, server_key.public_key_pem)
    envelope.update(fields)
    if isinstance(envelope.get("encrypted_payload"), dict):
        envelope["encrypted_payload"].update(inner)
    headers = {"X-Payload-ID": "fuzz", "X-Public-Key": urllib.parse.quote(public_pem(client_key))}
    response = app_client(headers, json.dumps(envelope).encode())
    if response.status_code == 200:
        # Only a still-valid envelope may succeed, and then it must be a real answer.
        assert open_response(response.content, client_key)[0]["_metadata"]["payload_id"] == "fuzz"
    else:
        assert response.status_code == 400
        assert response.json()["detail"]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=2000),
    payload_id=st.one_of(
        st.just("fuzz"), st.text(max_size=40).filter(lambda s: "\r" not in s and "\n" not in s)
    ),
    # A valid client key most of the time, so that the body and tier are reached too.
    use_real_key=st.booleans(),
    junk_key=st.text(max_size=200).filter(lambda s: "\r" not in s and "\n" not in s),
    tier=st.sampled_from([None, "standard", "high", "maximum", "bogus"]),
)
def test_random_headers_and_bodies_never_500(
    app_client, client_key, body, payload_id, use_real_key, junk_key, tier
):
    public_key = urllib.parse.quote(public_pem(client_key)) if use_real_key else junk_key
    headers = {"X-Payload-ID": payload_id, "X-Public-Key": public_key}
    if tier is not None:
        headers["X-Security-Tier"] = tier
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}
    response = app_client(encoded, body)
    assert response.status_code in (400, 503)
    assert response.json()["detail"]
