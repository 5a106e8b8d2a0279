"""The reference client nomyo==0.2.9 against our endpoint: the proof that it speaks the real
protocol. Over HTTP (allow_http=True) and HTTPS (trusting the throwaway CA via SSL_CERT_FILE,
which its httpx reads whenever it builds a TLS context)."""

from __future__ import annotations

import json
import warnings

import pytest

nomyo = pytest.importorskip("nomyo")

pytestmark = pytest.mark.reference

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    }
]


def reference_client(base_url: str, **kwargs) -> nomyo.SecureChatCompletion:
    kwargs.setdefault("max_retries", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its HTTP warning
        client = nomyo.SecureChatCompletion(
            base_url=base_url, allow_http=base_url.startswith("http:"), **kwargs
        )
    client.client.key_size = 2048  # keygen cost is not the point here
    return client


@pytest.fixture(params=["http", "https"])
def endpoint(request, http_endpoint, secure_endpoint, monkeypatch):
    if request.param == "http":
        return http_endpoint
    monkeypatch.setenv("SSL_CERT_FILE", str(secure_endpoint.ca_path))
    return secure_endpoint


async def test_plain_chat(endpoint):
    client = reference_client(endpoint.base_url)
    response = await client.create(
        model="any-model",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0.2,
    )
    assert response["choices"][0]["message"]["content"] == "What is the capital of France?"
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["model"] == "any-model"
    assert response["usage"] == {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}
    meta = response["_metadata"]
    assert meta["is_encrypted"] is True
    assert meta["encryption_algorithm"] == "hybrid-aes256-rsa4096"
    assert meta["response_status"] == "success"
    assert isinstance(meta["processed_at"], float)


async def test_tools(endpoint):
    client = reference_client(endpoint.base_url)
    response = await client.create(
        model="m",
        messages=[{"role": "user", "content": "Paris"}],
        tools=TOOLS,
        tool_choice="auto",
    )
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 0}


@pytest.mark.parametrize("tier", ["standard", "high"])
async def test_tiers_without_tpm(endpoint, tier):
    client = reference_client(endpoint.base_url)
    response = await client.create(
        model="m", messages=[{"role": "user", "content": "hi"}], security_tier=tier
    )
    assert response["_metadata"]["security_tier"] == tier
    assert response["_metadata"]["tpm_attestation"] == {"is_available": False}


async def test_maximum_without_tpm_raises_service_unavailable(endpoint):
    client = reference_client(endpoint.base_url)
    with pytest.raises(nomyo.ServiceUnavailableError) as info:
        await client.create(
            model="m", messages=[{"role": "user", "content": "hi"}], security_tier="maximum"
        )
    assert info.value.status_code == 503
    assert "requires a TPM" in info.value.error_details["detail"]


@pytest.mark.swtpm
@pytest.mark.parametrize("tier", ["standard", "high", "maximum"])
async def test_every_tier_with_tpm(swtpm_endpoint, monkeypatch, tier):
    monkeypatch.setenv("SSL_CERT_FILE", str(swtpm_endpoint.ca_path))
    client = reference_client(swtpm_endpoint.base_url)
    response = await client.create(
        model="m", messages=[{"role": "user", "content": "attest me"}], security_tier=tier
    )
    meta = response["_metadata"]
    assert meta["security_tier"] == tier
    attestation = meta["tpm_attestation"]
    assert attestation["is_available"] is True
    assert attestation["pcr_banks"] == "sha256:0,7,10"
    assert set(attestation["pcr_values"]["sha256"]) == {"0", "7", "10"}


async def test_https_without_trusting_the_ca_fails(secure_endpoint, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    client = reference_client(secure_endpoint.base_url)
    # The reference wraps the failed verified key fetch into SecurityError.
    with pytest.raises((nomyo.SecurityError, ConnectionError, nomyo.APIConnectionError)):
        await client.create(model="m", messages=[{"role": "user", "content": "hi"}])


async def test_400_raises_invalid_request_error(endpoint):
    client = reference_client(endpoint.base_url)
    with pytest.raises(nomyo.InvalidRequestError) as info:
        await client.create(model="m", messages=[])
    assert info.value.status_code == 400
    assert "'messages' must be a non-empty list" in str(info.value)


async def test_401_raises_authentication_error(endpoint_factory):
    endpoint = endpoint_factory(api_keys=("right-key",))
    for api_key in (None, "wrong-key"):
        client = reference_client(endpoint.base_url, api_key=api_key)
        with pytest.raises(nomyo.AuthenticationError) as info:
            await client.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 401
    client = reference_client(endpoint.base_url, api_key="right-key")
    response = await client.create(model="m", messages=[{"role": "user", "content": "ok"}])
    assert response["choices"][0]["message"]["content"] == "ok"


async def test_403_raises_forbidden_error(endpoint_factory):
    from nomyo_native.server import TierPolicy

    endpoint = endpoint_factory(tier_policy=TierPolicy.from_specs(["high=vetted"]))
    client = reference_client(endpoint.base_url)
    with pytest.raises(nomyo.ForbiddenError) as info:
        await client.create(
            model="unvetted", messages=[{"role": "user", "content": "hi"}], security_tier="high"
        )
    assert info.value.status_code == 403
    response = await client.create(
        model="vetted", messages=[{"role": "user", "content": "hi"}], security_tier="high"
    )
    assert response["model"] == "vetted"


class _Failing:
    """A backend that fails the way the named exception says."""

    name = "failing"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def complete(self, request):
        raise self.exc

    async def aclose(self):
        return None


@pytest.mark.parametrize(
    ("failure", "expected", "status"),
    [
        ("unavailable", "ServiceUnavailableError", 503),
        ("bad-gateway", "APIError", 502),
        ("internal", "ServerError", 500),
    ],
)
async def test_backend_failures_raise_matching_errors(endpoint_factory, failure, expected, status):
    from nomyo_native.server.backends import BackendFailed, BackendUnavailable

    exc = {
        "unavailable": BackendUnavailable("backend unreachable (ConnectError)"),
        "bad-gateway": BackendFailed("backend returned a non-JSON body"),
        "internal": RuntimeError("boom"),
    }[failure]
    endpoint = endpoint_factory(backend=_Failing(exc))
    client = reference_client(endpoint.base_url)
    with pytest.raises(nomyo.APIError) as info:
        await client.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert type(info.value).__name__ == expected
    assert info.value.status_code == status


async def test_404_raises_api_error_when_secure_inference_is_missing(http_endpoint):
    # The reference reaches /v1/chat/secure_completion only after fetching the key, so the
    # 404 comes from a router that has the key endpoint but no secure inference.
    from nomyo.SecureCompletionClient import SecureCompletionClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its HTTP warning
        client = SecureCompletionClient(
            router_url=http_endpoint.base_url + "/missing", allow_http=True
        )
    client.key_size = 2048
    client.generate_keys()

    async def fetch_key() -> str:
        return http_endpoint.public_key_pem

    client.fetch_server_public_key = fetch_key
    with pytest.raises(nomyo.APIError) as info:
        await client.send_secure_request(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "pid-404"
        )
    assert info.value.status_code == 404


async def test_429_raises_rate_limit_error(endpoint_factory):
    endpoint = endpoint_factory(rate_limit_per_minute=1)
    client = reference_client(endpoint.base_url)
    await client.create(model="m", messages=[{"role": "user", "content": "first"}])
    with pytest.raises(nomyo.RateLimitError) as info:
        await client.create(model="m", messages=[{"role": "user", "content": "second"}])
    assert info.value.status_code == 429
