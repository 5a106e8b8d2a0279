"""The openai transport's decisions without any I/O: what is served, which key and tier, what
the SDK is answered (the end-to-end proof is tests/ecosystem, per SDK venv)."""

from __future__ import annotations

import json

import pytest

from nomyo_native.errors import APIError, RateLimitError, SecurityError, ServiceUnavailableError
from nomyo_native.openai import _answers, _errors
from nomyo_native.openai._gate import Gate, api_key_for, bearer_of, router_of, tier_for
from nomyo_native.openai._metadata import metadata

ROUTER = "https://api.example.test"


@pytest.mark.parametrize(
    ("given", "router"),
    [
        (ROUTER, ROUTER),
        (ROUTER + "/", ROUTER),
        (ROUTER + "/v1", ROUTER),
        (ROUTER + "/v1/", ROUTER),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
    ],
)
def test_the_router_is_the_base_url_without_the_sdks_v1(given: str, router: str) -> None:
    assert router_of(given) == router


SERVED_SPELLINGS = [
    ROUTER + "/v1/chat/completions",
    "https://API.example.test:443/v1/chat/completions",
]


@pytest.mark.parametrize("url", SERVED_SPELLINGS)
def test_only_the_chat_completions_url_is_served(url: str) -> None:
    assert Gate(ROUTER).check("POST", url) is None


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("POST", ROUTER + "/v1/embeddings", 404),
        ("POST", ROUTER + "/v1/responses", 404),
        ("GET", ROUTER + "/v1/models", 404),
        ("POST", ROUTER + "/v1/chat/completions/x", 404),
        ("POST", ROUTER + "/v1/chat/secure_completion", 404),
        ("POST", "https://elsewhere.test/v1/chat/completions", 404),
        ("POST", "https://api.example.test:8443/v1/chat/completions", 404),
        ("POST", "http://api.example.test/v1/chat/completions", 404),
        ("GET", ROUTER + "/v1/chat/completions", 405),
        ("POST", ROUTER + "/v1/chat/completions?x=1", 400),
    ],
)
def test_anything_else_is_refused_with_a_4xx(method: str, url: str, status: int) -> None:
    refusal = Gate(ROUTER).check(method, url)
    assert refusal is not None
    assert refusal.status == status
    assert "nothing was sent" in refusal.message
    answer = _answers.refused(refusal)
    assert ("x-should-retry", "false") in answer.headers
    assert json.loads(answer.body)["error"]["message"] == refusal.message
    # The same from a gate that has served (and remembered) every spelling of the served URL.
    warm = Gate(ROUTER)
    for served in SERVED_SPELLINGS:
        assert warm.check("POST", served) is None
    assert warm.check(method, url) == refusal


def test_a_remembered_url_still_has_its_method_checked() -> None:
    gate = Gate(ROUTER)
    served = ROUTER + "/v1/chat/completions"
    refused = Gate(ROUTER).check("GET", served)
    assert refused is not None and refused.status == 405
    for _ in range(3):
        assert gate.check("POST", served) is None
        assert gate.check("post", served) is None
        assert gate.check("GET", served) == refused
    # More spellings than a gate remembers are each still checked.
    spellings = [f"https://API.example.test:443/v1/chat/completions#{i}" for i in range(20)]
    assert all(gate.check("POST", url) is None for url in spellings)
    for url in spellings:
        refusal = gate.check("DELETE", url)
        assert refusal is not None and refusal.status == 405


def test_a_router_with_a_path_serves_under_it() -> None:
    gate = Gate("https://gw.test/nomyo")
    assert gate.check("POST", "https://gw.test/nomyo/v1/chat/completions") is None
    assert gate.check("POST", "https://gw.test/v1/chat/completions") is not None


def test_the_bearer_token_is_read_case_insensitively() -> None:
    assert bearer_of({"authorization": "Bearer sk-1"}) == "sk-1"
    assert bearer_of({"authorization": "bearer sk-2"}) == "sk-2"
    assert bearer_of({"authorization": "Basic abc"}) is None
    assert bearer_of({}) is None


def test_our_key_comes_before_the_sdks() -> None:
    headers = {"authorization": "Bearer sdk-key"}
    assert api_key_for("ours", headers) == "ours"
    assert api_key_for(None, headers) == "sdk-key"
    assert api_key_for(None, {}) is None


def test_a_bearer_that_would_inject_a_header_is_refused_without_quoting_it() -> None:
    with pytest.raises(SecurityError) as caught:
        api_key_for(None, {"authorization": "Bearer sk-secret\r\nX-Evil: 1"})
    assert "sk-secret" not in str(caught.value)


def test_the_tier_header_overrides_our_option_and_is_validated() -> None:
    assert tier_for("high", {}) == "high"
    assert tier_for("high", {"x-security-tier": "maximum"}) == "maximum"
    assert tier_for(None, {}) is None
    with pytest.raises(ValueError, match="must be one of") as caught:
        tier_for(None, {"x-security-tier": "ultra-secret-tier"})
    assert "ultra-secret-tier" not in str(caught.value)


def test_a_retryable_status_keeps_its_retry_after() -> None:
    error = RateLimitError("slow down", 429)
    error.retry_after = 2.5
    answer = _answers.from_api_error(error, permanent=False)
    headers = dict(answer.headers)
    assert answer.status == 429
    assert headers["retry-after-ms"] == "2500"
    assert headers["retry-after"] == "3"
    assert "x-should-retry" not in headers
    error_body = json.loads(answer.body)["error"]
    assert error_body["type"] == "rate_limit_error"
    assert error_body["message"] == "slow down"


def test_a_permanent_failure_is_marked_not_to_be_retried() -> None:
    answer = _answers.from_api_error(ServiceUnavailableError("no TPM", 503), permanent=True)
    assert answer.status == 503
    assert ("x-should-retry", "false") in answer.headers
    assert not [h for h in answer.headers if h[0].startswith("retry-after")]


def test_a_refused_request_is_never_retried() -> None:
    answer = _answers.from_api_error(APIError("bad", 400), permanent=False)
    assert ("x-should-retry", "false") in answer.headers
    assert json.loads(answer.body)["error"]["type"] == "invalid_request_error"


def test_the_synthetic_security_answer_names_the_failure() -> None:
    answer = _answers.security_failure(SecurityError("pin mismatch"))
    body = json.loads(answer.body)["error"]
    assert answer.status == _answers.SECURITY_STATUS
    assert 400 <= answer.status < 500
    assert ("x-should-retry", "false") in answer.headers
    assert body["type"] == "nomyo_security_error"
    assert body["code"] == "SecurityError"
    assert "pin mismatch" in body["message"]


def test_a_completion_carries_its_metadata_as_headers() -> None:
    completion = {
        "choices": [],
        "_metadata": {
            "payload_id": "pid-1",
            "payload_id_verified": True,
            "attestation_verification": {"level": "bound", "verified": True},
            "security_tier": "high",
        },
    }
    answer = _answers.completion(completion)
    headers = dict(answer.headers)
    assert answer.payload is completion
    assert answer.body == b""
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] == headers["x-nomyo-payload-id"] == "pid-1"
    assert headers["x-nomyo-payload-id-verified"] == "true"
    assert headers["x-nomyo-attestation-level"] == "bound"
    assert headers["x-nomyo-attestation-verified"] == "true"
    assert headers["x-nomyo-security-tier"] == "high"
    # The accessor reads the same back from the headers of a raw response.

    class Raw:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    from_headers = metadata(Raw(headers))
    assert from_headers is not None
    assert from_headers["payload_id"] == "pid-1"
    assert from_headers["attestation_verification"] == {"level": "bound", "verified": True}
    assert metadata(completion) is completion["_metadata"]
    assert metadata({"choices": []}) is None


@pytest.mark.parametrize(
    ("version", "propagates"),
    [("2.0.0", False), ("2.30.0", False), ("2.31.0", True), ("2.54.0", True), ("3.0.0", True)],
)
def test_which_sdks_propagate_our_errors(version: str, propagates: bool) -> None:
    assert (_errors._release(version) >= _errors.PROPAGATING_SDK) is propagates


def test_a_security_error_becomes_one_the_sdk_propagates() -> None:
    import openai

    original = SecurityError("refused")
    original.detail = "kept"  # type: ignore[attr-defined]
    error = _errors.as_openai_error(original)
    assert isinstance(error, SecurityError)
    assert isinstance(error, openai.OpenAIError)
    assert type(error).__name__ == "SecurityError"
    assert error.args == ("refused",)
    assert error.detail == "kept"  # type: ignore[attr-defined]
    assert type(_errors.as_openai_error(SecurityError("again"))) is type(error)


def test_without_the_sdk_the_import_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['openai'] = None\n"
        "try:\n    import nomyo_native.openai\n"
        "except ModuleNotFoundError as exc:\n    print(exc)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'nomyo-native[openai]'" in shown


def test_the_old_httpx_is_imported_by_the_legacy_adapter_only() -> None:
    import re
    from pathlib import Path

    import nomyo_native

    package = Path(nomyo_native.__file__).parent
    old_httpx = re.compile(r"^\s*(import httpx\b(?!2)|from httpx\b(?!2))", re.MULTILINE)
    importers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if old_httpx.search(path.read_text())
    )
    assert importers == ["openai/_httpx_legacy.py"]
