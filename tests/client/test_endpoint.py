"""The client against the local secure endpoint over HTTPS (self-signed CA, echo backend)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from typing import Any

import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native.server.backends import BackendFailed, BackendUnavailable, EchoBackend
from nomyo_native.server.policy import TierPolicy

from .test_transport import OPENAI_PARAMETERS, TOOLS

USER = [{"role": "user", "content": "What is the capital of France?"}]


class CountingTransport(httpx2.AsyncBaseTransport):
    """Real HTTPS to the endpoint, counting requests and optionally replaying a response."""

    def __init__(self, ca_path: Any) -> None:
        self._inner = httpx2.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=ca_path))
        self.calls: list[tuple[str, str]] = []
        self.replay_first_response = False
        self._first_body: bytes | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.append((request.method, request.url.path))
        response = await self._inner.handle_async_request(request)
        if request.method != "POST":
            return response
        body = await response.aread()
        if self._first_body is None:
            self._first_body = body
        elif self.replay_first_response:
            body = self._first_body
        return httpx2.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def posts(self) -> int:
        return sum(1 for method, _ in self.calls if method == "POST")


class ScriptedBackend(EchoBackend):
    """Echo, after failing with the given backend errors first (mapped to 503 / 502)."""

    name = "scripted"

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        return await super().complete(request)

    async def aclose(self) -> None:
        return None


def https_chat(endpoint: Any, **kwargs: Any) -> nomyo.SecureChatCompletion:
    kwargs.setdefault("key_size", 2048)
    if "transport" not in kwargs:
        kwargs.setdefault("ca_bundle", endpoint.ca_path)
    return nomyo.SecureChatCompletion(base_url=endpoint.base_url, **kwargs)


async def test_every_parameter_and_tools_over_https(secure_endpoint):
    async with https_chat(secure_endpoint) as chat:
        plain = await chat.create(model="Qwen/Qwen3-0.6B", messages=USER, **OPENAI_PARAMETERS)
        tooled = await chat.create(
            model="Qwen/Qwen3-0.6B",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=TOOLS,
            tool_choice="auto",
        )
        assert chat.client.server_key_fingerprint == secure_endpoint.server_key_fingerprint
    assert plain["choices"][0]["message"]["content"] == "What is the capital of France?"
    assert plain["model"] == "Qwen/Qwen3-0.6B"
    assert plain["usage"]["total_tokens"] > 0
    meta = plain["_metadata"]
    assert meta["is_encrypted"] is True and meta["response_status"] == "success"
    assert meta["encryption_algorithm"] == "hybrid-aes256-rsa4096"
    assert uuid.UUID(meta["payload_id"]).version == 4
    assert isinstance(meta["processed_at"], (int, float))
    call = tooled["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Weather in Paris?"}
    assert tooled["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("tier", ["standard", "high"])
async def test_tiers_without_tpm(secure_endpoint, tier):
    async with https_chat(secure_endpoint) as chat:
        reply = await chat.create(model="m", messages=USER, security_tier=tier)
    assert reply["_metadata"]["security_tier"] == tier
    assert reply["_metadata"]["tpm_attestation"] == {"is_available": False}
    assert reply["_metadata"]["attestation_verification"]["verified"] is False


async def test_maximum_without_tpm_is_service_unavailable(secure_endpoint):
    async with https_chat(secure_endpoint, max_retries=0) as chat:
        with pytest.raises(nomyo.ServiceUnavailableError) as info:
            await chat.create(model="m", messages=USER, security_tier="maximum")
    assert info.value.status_code == 503
    assert "TPM" in info.value.error_details["detail"]


async def test_statuses_of_the_real_endpoint(endpoint_factory):
    endpoint = endpoint_factory(
        tls_self_signed=True,
        api_keys=("sk-good",),
        tier_policy=TierPolicy.from_specs(["high=small-model"]),
    )
    async with https_chat(endpoint, api_key="sk-good", max_retries=0) as chat:
        ok = await chat.create(model="any", messages=USER)
        assert ok["choices"][0]["message"]["content"] == USER[0]["content"]
        with pytest.raises(nomyo.AuthenticationError) as auth:
            await chat.create(model="m", messages=USER, api_key="sk-wrong")
        with pytest.raises(nomyo.ForbiddenError) as forbidden:
            await chat.create(model="big-model", messages=USER, security_tier="high")
        with pytest.raises(nomyo.InvalidRequestError) as invalid:
            await chat.create(model="m", messages=[])
    assert (auth.value.status_code, forbidden.value.status_code) == (401, 403)
    assert invalid.value.status_code == 400 and "messages" in str(invalid.value)


async def test_backend_failures_map_and_503_then_200_succeeds(endpoint_factory):
    backend = ScriptedBackend([BackendUnavailable("backend down"), BackendFailed("garbage")])
    endpoint = endpoint_factory(tls_self_signed=True, backend=backend)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with https_chat(endpoint, max_retries=0) as chat:
        with pytest.raises(nomyo.ServiceUnavailableError):
            await chat.create(model="m", messages=USER)
        with pytest.raises(nomyo.APIError) as bad_gateway:
            await chat.create(model="m", messages=USER)
    assert bad_gateway.value.status_code == 502

    backend.failures = [BackendUnavailable("backend down")]
    async with https_chat(endpoint, sleep=record) as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["choices"][0]["message"]["content"] == USER[0]["content"]
    assert len(waits) == 1


async def test_pinning_against_the_endpoint(secure_endpoint):
    wrong = CountingTransport(secure_endpoint.ca_path)
    async with https_chat(
        secure_endpoint, transport=wrong, server_key_fingerprint="sha256:" + "00" * 32
    ) as chat:
        with pytest.raises(nomyo.SecurityError, match="pinned"):
            await chat.create(model="m", messages=USER)
    assert wrong.calls == [("GET", "/pki/public_key")], "nothing was posted"

    right = CountingTransport(secure_endpoint.ca_path)
    async with https_chat(
        secure_endpoint,
        transport=right,
        server_key_fingerprint=secure_endpoint.server_key_fingerprint,
    ) as chat:
        await chat.create(model="m", messages=USER)
    assert right.posts == 1


async def test_untrusted_certificate_is_refused(secure_endpoint, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url, key_size=2048, max_retries=0
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|SSL"):
            await chat.create(model="m", messages=USER)


async def test_replayed_response_is_refused(secure_endpoint):
    transport = CountingTransport(secure_endpoint.ca_path)
    async with https_chat(secure_endpoint, transport=transport) as chat:
        await chat.create(model="m", messages=USER)
        transport.replay_first_response = True
        with pytest.raises(nomyo.SecurityError, match="payload_id"):
            await chat.create(model="m", messages=[{"role": "user", "content": "other"}])
    assert transport.posts == 2


async def test_two_hundred_concurrent_requests_over_https(secure_endpoint):
    async with https_chat(secure_endpoint) as chat:
        prompts = [f"concurrent prompt {i}: {uuid.uuid4()}" for i in range(200)]
        replies = await asyncio.gather(
            *(chat.create(model="m", messages=[{"role": "user", "content": p}]) for p in prompts)
        )
    for prompt, reply in zip(prompts, replies, strict=True):
        assert reply["choices"][0]["message"]["content"] == prompt
    assert len({r["_metadata"]["payload_id"] for r in replies}) == 200


async def test_debug_log_of_a_full_https_request_keeps_secrets_out(endpoint_factory, caplog):
    endpoint = endpoint_factory(tls_self_signed=True, api_keys=("sk-canary-31f7c0de",))
    prompt = "PROMPT-canary-a04c9e71 my diagnosis is confidential"
    caplog.set_level(logging.DEBUG)
    async with https_chat(endpoint, api_key="sk-canary-31f7c0de") as chat:
        reply = await chat.create(model="m", messages=[{"role": "user", "content": prompt}])
    assert reply["choices"][0]["message"]["content"] == prompt
    client_side = [
        r for r in caplog.records if not r.name.startswith(("nomyo_native.server", "uvicorn"))
    ]
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in client_side)
    assert "secure_completion" in text and "-> 200" in text
    assert any(r.name.startswith("httpcore2") for r in client_side), "transport logs captured"
    assert "sk-canary-31f7c0de" not in text
    assert "PROMPT-canary-a04c9e71" not in text


class StallingBackend(EchoBackend):
    name = "stalling"

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(2.0)  # well past the client timeout below
        return await super().complete(request)

    async def aclose(self) -> None:
        return None


async def test_timeout_option_bounds_a_stalled_request(endpoint_factory):
    endpoint = endpoint_factory(tls_self_signed=True, backend=StallingBackend())
    async with https_chat(endpoint, timeout=0.3, max_retries=0) as chat:
        # The read timeout and the per-attempt deadline are both 0.3 s: either may fire first.
        with pytest.raises(nomyo.APIConnectionError, match=r"Timeout|timed out"):
            await chat.create(model="m", messages=USER)
