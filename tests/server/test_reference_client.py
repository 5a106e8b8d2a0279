"""The reference client nomyo==0.2.9 against our endpoint: the proof that it speaks the real
protocol. Over HTTP (allow_http=True) and HTTPS (trusting the throwaway CA via SSL_CERT_FILE,
which its httpx reads whenever it builds a TLS context). The reference runs in its own venv's
interpreter (tests/reference/driver.py ``chat``): each call comes back as the response, or as
the raised exception's classes, status code and details."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.reference import raised, reference_chat, run_reference

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
HI = [{"role": "user", "content": "hi"}]


def reference_create(base_url: str, client_options: dict | None = None, **kwargs: Any) -> dict:
    """The outcome of one ``create(**kwargs)`` on a fresh reference client."""
    (outcome,) = reference_chat(base_url, [("create", kwargs)], **(client_options or {}))
    return outcome


def response(outcome: dict) -> dict:
    assert "response" in outcome, f"the reference raised: {outcome.get('error')}"
    return outcome["response"]


@pytest.fixture(params=["http", "https"])
def endpoint(request, http_endpoint, secure_endpoint, monkeypatch):
    if request.param == "http":
        return http_endpoint
    monkeypatch.setenv("SSL_CERT_FILE", str(secure_endpoint.ca_path))
    return secure_endpoint


def test_plain_chat(endpoint):
    reply = response(
        reference_create(
            endpoint.base_url,
            model="any-model",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            temperature=0.2,
        )
    )
    assert reply["choices"][0]["message"]["content"] == "What is the capital of France?"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["model"] == "any-model"
    assert reply["usage"] == {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}
    meta = reply["_metadata"]
    assert meta["is_encrypted"] is True
    assert meta["encryption_algorithm"] == "hybrid-aes256-rsa4096"
    assert meta["response_status"] == "success"
    assert isinstance(meta["processed_at"], float)


def test_tools(endpoint):
    reply = response(
        reference_create(
            endpoint.base_url,
            model="m",
            messages=[{"role": "user", "content": "Paris"}],
            tools=TOOLS,
            tool_choice="auto",
        )
    )
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 0}


@pytest.mark.parametrize("tier", ["standard", "high"])
def test_tiers_without_tpm(endpoint, tier):
    reply = response(
        reference_create(endpoint.base_url, model="m", messages=HI, security_tier=tier)
    )
    assert reply["_metadata"]["security_tier"] == tier
    assert reply["_metadata"]["tpm_attestation"] == {"is_available": False}


def test_maximum_without_tpm_raises_service_unavailable(endpoint):
    outcome = reference_create(endpoint.base_url, model="m", messages=HI, security_tier="maximum")
    error = raised(outcome, "ServiceUnavailableError")
    assert error["status_code"] == 503
    assert "requires a TPM" in error["error_details"]["detail"]


@pytest.mark.swtpm
@pytest.mark.parametrize("tier", ["standard", "high", "maximum"])
def test_every_tier_with_tpm(swtpm_endpoint, monkeypatch, tier):
    monkeypatch.setenv("SSL_CERT_FILE", str(swtpm_endpoint.ca_path))
    reply = response(
        reference_create(
            swtpm_endpoint.base_url,
            model="m",
            messages=[{"role": "user", "content": "attest me"}],
            security_tier=tier,
        )
    )
    meta = reply["_metadata"]
    assert meta["security_tier"] == tier
    attestation = meta["tpm_attestation"]
    assert attestation["is_available"] is True
    assert attestation["pcr_banks"] == "sha256:0,7,10"
    assert set(attestation["pcr_values"]["sha256"]) == {"0", "7", "10"}


def test_https_without_trusting_the_ca_fails(secure_endpoint, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    outcome = reference_create(secure_endpoint.base_url, model="m", messages=HI)
    # The reference wraps the failed verified key fetch into SecurityError.
    raised(outcome, "SecurityError", "ConnectionError", "APIConnectionError")


def test_400_raises_invalid_request_error(endpoint):
    error = raised(
        reference_create(endpoint.base_url, model="m", messages=[]), "InvalidRequestError"
    )
    assert error["status_code"] == 400
    assert "'messages' must be a non-empty list" in error["message"]


def test_401_raises_authentication_error(endpoint_factory):
    endpoint = endpoint_factory(api_keys=("right-key",))
    for api_key in (None, "wrong-key"):
        outcome = reference_create(endpoint.base_url, {"api_key": api_key}, model="m", messages=HI)
        assert raised(outcome, "AuthenticationError")["status_code"] == 401
    ok = [{"role": "user", "content": "ok"}]
    reply = response(
        reference_create(endpoint.base_url, {"api_key": "right-key"}, model="m", messages=ok)
    )
    assert reply["choices"][0]["message"]["content"] == "ok"


def test_403_raises_forbidden_error(endpoint_factory):
    from nomyo_native.server import TierPolicy

    endpoint = endpoint_factory(tier_policy=TierPolicy.from_specs(["high=vetted"]))
    refused, allowed = reference_chat(
        endpoint.base_url,
        [
            ("create", {"model": "unvetted", "messages": HI, "security_tier": "high"}),
            ("create", {"model": "vetted", "messages": HI, "security_tier": "high"}),
        ],
    )
    assert raised(refused, "ForbiddenError")["status_code"] == 403
    assert response(allowed)["model"] == "vetted"


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
def test_backend_failures_raise_matching_errors(endpoint_factory, failure, expected, status):
    from nomyo_native.server.backends import BackendFailed, BackendUnavailable

    exc = {
        "unavailable": BackendUnavailable("backend unreachable (ConnectError)"),
        "bad-gateway": BackendFailed("backend returned a non-JSON body"),
        "internal": RuntimeError("boom"),
    }[failure]
    endpoint = endpoint_factory(backend=_Failing(exc))
    error = raised(reference_create(endpoint.base_url, model="m", messages=HI), "APIError")
    assert error["type"] == expected
    assert error["status_code"] == status


def test_404_raises_api_error_when_secure_inference_is_missing(http_endpoint):
    # The reference reaches /v1/chat/secure_completion only after fetching the key, so the
    # 404 comes from a router that has the key endpoint but no secure inference.
    outcome = run_reference(
        "send-secure-request",
        {
            "router_url": http_endpoint.base_url + "/missing",
            "server_key_pem": http_endpoint.public_key_pem,
            "payload": {"model": "m", "messages": HI},
            "payload_id": "pid-404",
        },
    )
    assert raised(outcome, "APIError")["status_code"] == 404


def test_429_raises_rate_limit_error(endpoint_factory):
    endpoint = endpoint_factory(rate_limit_per_minute=1)
    first, second = reference_chat(
        endpoint.base_url,
        [
            ("create", {"model": "m", "messages": [{"role": "user", "content": "first"}]}),
            ("create", {"model": "m", "messages": [{"role": "user", "content": "second"}]}),
        ],
    )
    response(first)
    assert raised(second, "RateLimitError")["status_code"] == 429
