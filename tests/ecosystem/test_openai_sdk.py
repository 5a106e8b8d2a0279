"""The openai SDK itself on our transport: completions, tools, structured output, every error
status to its SDK exception, the SDK's retries (each attempt sealed afresh), security failures,
and what is refused without a byte sent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pydantic
import pytest
from tests.ecosystem.helpers import (
    MODEL,
    Wire,
    async_sdk,
    sdk,
    security_failure_check,
    user,
)

from nomyo_native import openai as nomyo_openai
from nomyo_native.errors import ClientClosedError, SecurityError
from nomyo_native.openai import _answers, _gateway

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_sync_completion_with_metadata(endpoint: Any, options: dict, posts: Callable) -> None:
    with sdk(endpoint, options) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("Grüße, 世界"))
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices[0].message.content == "Grüße, 世界"
    metadata = nomyo_openai.metadata(completion)
    assert metadata is not None
    assert metadata["is_encrypted"] is True
    assert metadata["payload_id_verified"] is True
    assert completion.model_extra is not None
    assert completion.model_extra["_metadata"] is metadata
    # The payload id doubles as the SDK's request id.
    assert completion._request_id == metadata["payload_id"]
    assert posts() == 1


async def test_async_completion(endpoint: Any, options: dict, posts: Callable) -> None:
    async with async_sdk(endpoint, options) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=user("async"))
    assert completion.choices[0].message.content == "async"
    assert nomyo_openai.metadata(completion)["payload_id_verified"] is True
    assert posts() == 1


def test_the_prewired_client_gives_the_key_to_both(endpoint: Any, options: dict) -> None:
    client = nomyo_openai.OpenAI(base_url=endpoint.base_url, api_key="nomyo-key", **options)
    assert isinstance(client, openai.OpenAI)
    assert str(client.base_url).rstrip("/") == endpoint.base_url + "/v1"
    assert client.api_key == "nomyo-key"
    with client:
        completion = client.chat.completions.create(model=MODEL, messages=user("wired"))
    assert completion.choices[0].message.content == "wired"


async def test_the_prewired_async_client(endpoint: Any, options: dict) -> None:
    client = nomyo_openai.AsyncOpenAI(base_url=endpoint.base_url, api_key="k", **options)
    assert isinstance(client, openai.AsyncOpenAI)
    async with client:
        completion = await client.chat.completions.create(model=MODEL, messages=user("wired"))
    assert completion.choices[0].message.content == "wired"


@pytest.mark.parametrize("environment", [None, "env-key"])
def test_the_prewired_client_takes_a_key_provider(
    endpoint: Any, options: dict, monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    # Every SDK line takes a callable api_key (called per request): the pre-wired client gives
    # it to the SDK, and its bearer is the key sent, ahead of NOMYO_API_KEY as an option is.
    if environment is None:
        monkeypatch.delenv("NOMYO_API_KEY", raising=False)
    else:
        monkeypatch.setenv("NOMYO_API_KEY", environment)
    keys = iter(["first-key", "second-key"])
    wire = Wire(options["ca_bundle"])
    client = nomyo_openai.OpenAI(
        base_url=endpoint.base_url, api_key=lambda: next(keys), transport=wire.transport, **options
    )
    with client:
        client.chat.completions.create(model=MODEL, messages=user("a"))
        client.chat.completions.create(model=MODEL, messages=user("b"))
    posted = [sent["authorization"] for sent in wire.sent_headers if "authorization" in sent]
    assert posted == ["Bearer first-key", "Bearer second-key"]


async def test_the_prewired_async_client_takes_a_key_provider(
    endpoint: Any, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOMYO_API_KEY", "env-key")

    async def provide() -> str:
        return "provided-key"

    wire = Wire(options["ca_bundle"])
    client = nomyo_openai.AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=provide,
        transport=wire.async_transport,
        **options,
    )
    async with client:
        await client.chat.completions.create(model=MODEL, messages=user("a"))
    assert wire.sent_headers[-1]["authorization"] == "Bearer provided-key"


def test_metadata_under_strict_validation_too(endpoint: Any, options: dict) -> None:
    # The SDK validates models only when asked to; _metadata must survive both paths.
    with sdk(endpoint, options, _strict_response_validation=True) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("strict"))
    assert completion.model_extra is not None
    assert completion.model_extra["_metadata"]["is_encrypted"] is True
    assert nomyo_openai.metadata(completion)["payload_id_verified"] is True


def test_tools(endpoint: Any, options: dict) -> None:
    with sdk(endpoint, options) as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=user("Paris"), tools=[TOOL], tool_choice="auto"
        )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


class Weather(pydantic.BaseModel):
    city: str
    degrees: int


def test_structured_output_with_parse(endpoint: Any, options: dict) -> None:
    answer = json.dumps({"city": "Oslo", "degrees": -3})
    with sdk(endpoint, options) as client:
        completion = client.chat.completions.parse(
            model=MODEL, messages=user(answer), response_format=Weather
        )
    assert completion.choices[0].message.parsed == Weather(city="Oslo", degrees=-3)


def test_raw_response_headers_and_empty_body(endpoint: Any, options: dict) -> None:
    with sdk(endpoint, options) as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user("raw"))
        completion = raw.parse()
    assert completion.choices[0].message.content == "raw"
    metadata = nomyo_openai.metadata(completion)
    assert raw.headers["x-nomyo-payload-id"] == metadata["payload_id"]
    assert raw.headers["x-nomyo-payload-id-verified"] == "true"
    assert raw.headers["x-nomyo-attestation-level"] == "none"
    assert raw.headers["content-type"] == "application/json"
    # The decrypted JSON never exists as bytes or str: the body is empty, json() is the dict.
    response = raw.http_response
    assert response.content == b""
    assert response.read() == b""
    assert response.text == ""
    assert list(response.iter_bytes()) == []
    assert response.json()["choices"][0]["message"]["content"] == "raw"
    assert nomyo_openai.metadata(raw)["payload_id"] == metadata["payload_id"]


def test_the_decrypted_response_is_left_as_reading_an_empty_body_leaves_one() -> None:
    """The completion's response is built without reading its empty body: its state must be
    what ``Response(content=b"")`` has after its read, in httpx2 and in httpx alike."""
    flavor = nomyo_openai._flavor()
    answer = _answers.completion({"id": "c", "_metadata": {"payload_id": "p"}})
    ours = flavor.response_class(answer)
    plain = flavor.module.Response(answer.status, headers=answer.headers, content=b"")
    state = {name: value for name, value in vars(ours).items() if name != "_completion"}
    expected = vars(plain)
    # The decoder is chosen when a body is decoded, which this one never is.
    expected.pop("_decoder")
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        if name == "headers":
            assert state[name].raw == value.raw
        elif name == "stream":
            assert type(state[name]) is type(value)
        else:
            assert state[name] == value, name
    assert (ours.is_closed, ours.is_stream_consumed) == (True, True)
    assert ours.read() == b"" and ours.content == b"" and ours.text == ""
    assert list(ours.iter_bytes()) == []
    for response in (ours, plain):
        with pytest.raises(flavor.module.StreamConsumed):
            list(response.iter_raw())
    assert asyncio.run(ours.aread()) == b""
    assert ours.json() == {"id": "c", "_metadata": {"payload_id": "p"}}


ERRORS = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (502, openai.InternalServerError),
    (503, openai.InternalServerError),
    (504, openai.InternalServerError),
]


@pytest.mark.parametrize(("status", "exception"), ERRORS)
def test_each_status_is_its_sdk_exception(
    endpoint: Any, options: dict, posts: Callable, status: int, exception: type
) -> None:
    with sdk(endpoint, options, max_retries=0) as client:
        with pytest.raises(exception) as caught:
            client.chat.completions.create(model=f"status-{status}", messages=user("x"))
    assert caught.value.status_code == status
    assert f"scripted {status}" in str(caught.value)
    assert isinstance(caught.value.body, dict)
    assert f"scripted {status}" in caught.value.body["message"]
    assert posts() == 1


def test_retry_after_is_kept(endpoint: Any, options: dict) -> None:
    with sdk(endpoint, options, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="status-429-after-7", messages=user("x"))
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["retry-after-ms"] == "7000"


def test_our_transport_does_not_retry(endpoint: Any, options: dict, posts: Callable) -> None:
    with sdk(endpoint, options, max_retries=0) as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="flaky-1-once", messages=user("x"))
    assert posts() == 1


def test_sdk_retries_are_sealed_afresh(endpoint: Any, options: dict, posts: Callable) -> None:
    wire = Wire(options["ca_bundle"])
    with sdk(endpoint, {**options, "transport": wire.transport}, max_retries=2) as client:
        completion = client.chat.completions.create(model="flaky-2-retry", messages=user("again"))
    assert completion.choices[0].message.content == "again"
    assert posts() == 3
    envelopes = [json.loads(e) for e in wire.sent_envelopes]
    assert len(envelopes) == 3
    assert len({e["encrypted_aes_key"] for e in envelopes}) == 3
    assert len({e["encrypted_payload"]["nonce"] for e in envelopes}) == 3
    assert len({h["x-payload-id"] for h in wire.sent_headers if "x-payload-id" in h}) == 3


def test_a_permanent_refusal_is_not_retried(endpoint: Any, options: dict, posts: Callable) -> None:
    # Tier maximum on a server without a TPM: a 503 no retry can change.
    with sdk(endpoint, options, max_retries=2) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=user("x"), extra_headers={"X-Security-Tier": "maximum"}
            )
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert posts() == 1


def test_a_pin_mismatch_is_a_security_failure_sending_nothing(
    endpoint: Any, options: dict, posts: Callable
) -> None:
    wrong = {**options, "server_key_fingerprint": "sha256:" + "0" * 64}
    with sdk(endpoint, wrong, max_retries=2) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("secret"))
    security_failure_check(caught.value)
    assert "does not match the pinned" in str(caught.value)
    assert posts() == 0


def flip_ciphertext(body: bytes) -> bytes:
    envelope = json.loads(body)
    text = envelope["encrypted_payload"]["ciphertext"]
    envelope["encrypted_payload"]["ciphertext"] = ("B" if text[0] == "A" else "A") + text[1:]
    return json.dumps(envelope).encode()


def test_a_tampered_response_is_refused_not_retried(
    endpoint: Any, options: dict, posts: Callable
) -> None:
    wire = Wire(options["ca_bundle"], rewrite=flip_ciphertext)
    with sdk(endpoint, {**options, "transport": wire.transport}, max_retries=2) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("secret"))
    security_failure_check(caught.value)
    assert "secret" not in str(caught.value)
    assert posts() == 1


def test_a_replayed_response_is_refused(endpoint: Any, options: dict, posts: Callable) -> None:
    wire = Wire(options["ca_bundle"])
    with sdk(endpoint, {**options, "transport": wire.transport}, max_retries=2) as client:
        client.chat.completions.create(model=MODEL, messages=user("first"))
        first = wire.bodies[0]
        wire.rewrite = lambda _body: first
        with pytest.raises(openai.OpenAIError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("second"))
    security_failure_check(caught.value)
    assert "payload" in str(caught.value).lower()
    assert posts() == 2


def test_the_sdks_headers_are_not_forwarded(endpoint: Any, options: dict) -> None:
    wire = Wire(options["ca_bundle"])
    with sdk(
        endpoint,
        {**options, "transport": wire.transport, "api_key": "nomyo-key"},
        organization="org-1",
        project="proj-1",
    ) as client:
        client.chat.completions.create(
            model=MODEL, messages=user("x"), extra_headers={"X-Security-Tier": "high"}
        )
    post = wire.sent_headers[-1]
    assert not [name for name in post if name.startswith("x-stainless")]
    assert "openai-organization" not in post
    assert "openai-project" not in post
    assert post["authorization"] == "Bearer nomyo-key"
    assert post["x-security-tier"] == "high"


@pytest.mark.parametrize(
    ("ours", "environment", "expected"),
    [
        ("option-key", "env-key", "option-key"),
        (None, "env-key", "env-key"),
        (None, None, "sdk-key"),
    ],
)
def test_the_api_key_order(
    endpoint: Any,
    options: dict,
    monkeypatch: pytest.MonkeyPatch,
    ours: str | None,
    environment: str | None,
    expected: str,
) -> None:
    if environment is None:
        monkeypatch.delenv("NOMYO_API_KEY", raising=False)
    else:
        monkeypatch.setenv("NOMYO_API_KEY", environment)
    wire = Wire(options["ca_bundle"])
    ours_options = {**options, "transport": wire.transport}
    if ours is not None:
        ours_options["api_key"] = ours
    with sdk(endpoint, ours_options, api_key="sdk-key") as client:
        client.chat.completions.create(model=MODEL, messages=user("x"))
    assert wire.sent_headers[-1]["authorization"] == f"Bearer {expected}"


def test_an_invalid_tier_header_is_refused_unsent(endpoint: Any, options: dict, log: Any) -> None:
    with sdk(endpoint, options, max_retries=2) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=user("x"), extra_headers={"X-Security-Tier": "ultra"}
            )
    assert "ultra" not in str(caught.value)
    assert log.lines == []


@pytest.mark.parametrize("stream_options", [None, {"include_usage": True}])
def test_stream_is_refused_without_a_byte_sent(
    endpoint: Any, options: dict, log: Any, stream_options: Any
) -> None:
    extra = {} if stream_options is None else {"stream_options": stream_options}
    with sdk(endpoint, options, max_retries=2) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=user("secret"), stream=True, **extra
            )
    assert "no streaming" in str(caught.value)
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert log.lines == []


def test_stream_options_alone_is_refused(endpoint: Any, options: dict, log: Any) -> None:
    with sdk(endpoint, options) as client:
        with pytest.raises(openai.BadRequestError, match="stream_options"):
            client.chat.completions.create(
                model=MODEL, messages=user("x"), extra_body={"stream_options": {}}
            )
    assert log.lines == []


def test_other_apis_are_refused_without_a_byte_sent(endpoint: Any, options: dict, log: Any) -> None:
    with sdk(endpoint, options, max_retries=2) as client:
        with pytest.raises(openai.NotFoundError, match="refused in the transport"):
            client.embeddings.create(model=MODEL, input="secret")
        with pytest.raises(openai.NotFoundError):
            client.models.list()
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model=MODEL, input="secret")
    assert log.lines == []


def test_another_host_is_refused(endpoint: Any, options: dict, log: Any) -> None:
    client = openai.OpenAI(
        base_url="https://elsewhere.invalid/v1",
        api_key="k",
        http_client=nomyo_openai.http_client(base_url=endpoint.base_url, **options),
        max_retries=2,
    )
    with client, pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MODEL, messages=user("secret"))
    assert log.lines == []


def test_max_retries_belongs_to_the_sdk(endpoint: Any) -> None:
    with pytest.raises(TypeError, match="max_retries"):
        nomyo_openai.http_client(base_url=endpoint.base_url, max_retries=3)


def test_a_debug_sdk_logger_is_warned_about_once(
    endpoint: Any, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_gateway, "_debug_warned", False)
    sdk_logger = logging.getLogger("openai")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Made inside: the warning comes when our HTTP client is made.
            with sdk(endpoint, options) as client:
                client.chat.completions.create(model=MODEL, messages=user("x"))
                client.chat.completions.create(model=MODEL, messages=user("y"))
    finally:
        sdk_logger.setLevel(level)
    ours = [w for w in caught if "logger is at DEBUG" in str(w.message)]
    assert len(ours) == 1


def test_the_debug_warning_comes_before_the_first_request_is_logged(
    endpoint: Any, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK logs a request (its options, on the SDK lines that log them) before handing it
    # to the transport: the warning must come when our HTTP client is made, not after that.
    monkeypatch.setattr(_gateway, "_debug_warned", False)
    sdk_logger = logging.getLogger("openai")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            made = nomyo_openai.async_http_client(base_url=endpoint.base_url, **options)
            at_construction = [w for w in caught if "logger is at DEBUG" in str(w.message)]
    finally:
        sdk_logger.setLevel(level)
    asyncio.run(made.aclose())
    assert len(at_construction) == 1


def test_openai_log_debug_is_warned_about_before_any_request(endpoint: Any, options: dict) -> None:
    # OPENAI_LOG=debug sets the SDK's logger when the SDK is imported.
    script = (
        "import warnings, openai\n"
        "from nomyo_native import openai as nomyo_openai\n"
        "warnings.simplefilter('always')\n"
        f"nomyo_openai.http_client(base_url={endpoint.base_url!r}, key_size=2048).close()\n"
    )
    environment = {**os.environ, "OPENAI_LOG": "debug", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("RuntimeWarning: the openai SDK's logger is at DEBUG") == 1


def test_security_errors_are_ours_and_the_sdks() -> None:
    if not nomyo_openai.sdk_propagates_errors():
        pytest.skip("this SDK wraps transport exceptions: security failures are a 495")
    from nomyo_native.openai._errors import as_openai_error

    error = as_openai_error(SecurityError("refused"))
    assert isinstance(error, SecurityError)
    assert isinstance(error, openai.OpenAIError)
    assert str(error) == "refused"


def downgrade(body: bytes) -> bytes:
    envelope = json.loads(body)
    envelope["version"] = "0.9"
    return json.dumps(envelope).encode()


def test_a_downgraded_response_is_refused(endpoint: Any, options: dict, posts: Callable) -> None:
    wire = Wire(options["ca_bundle"], rewrite=downgrade)
    with sdk(endpoint, {**options, "transport": wire.transport}, max_retries=2) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("x"))
    security_failure_check(caught.value)
    assert posts() == 1


def test_an_attestation_refusal_is_a_security_failure(
    endpoint: Any, options: dict, posts: Callable
) -> None:
    # The endpoint has no TPM: a policy that requires a verified quote refuses its answer.
    with sdk(endpoint, {**options, "attestation": "bound"}, max_retries=2) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("x"))
    security_failure_check(caught.value)
    assert posts() == 1


def test_an_unverifiable_certificate_is_not_retried(endpoint: Any, options: dict, log: Any) -> None:
    untrusted = {k: v for k, v in options.items() if k != "ca_bundle"}
    with sdk(endpoint, untrusted, max_retries=2) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("secret"))
    security_failure_check(caught.value)
    assert "certificate verification failed" in str(caught.value)
    # The TLS handshake failed once: no request line ever reached the endpoint.
    assert log.lines == []


def test_a_network_failure_is_the_sdks_connection_error(options: dict) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    router = f"https://127.0.0.1:{port}"
    client = openai.OpenAI(
        base_url=router + "/v1",
        api_key="k",
        http_client=nomyo_openai.http_client(base_url=router, **options),
        max_retries=0,
    )
    with client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=user("x"))


async def test_a_tampered_response_is_refused_async(
    endpoint: Any, options: dict, posts: Callable
) -> None:
    wire = Wire(options["ca_bundle"], rewrite=flip_ciphertext)
    async_options = {**options, "transport": wire.async_transport}
    async with async_sdk(endpoint, async_options, max_retries=2) as client:
        with pytest.raises(openai.OpenAIError) as caught:
            await client.chat.completions.create(model=MODEL, messages=user("secret"))
    security_failure_check(caught.value)
    assert posts() == 1


async def test_concurrent_async_requests(endpoint: Any, options: dict, posts: Callable) -> None:
    async with async_sdk(endpoint, options) as client:
        results = await asyncio.gather(
            *(client.chat.completions.create(model=MODEL, messages=user(f"n{i}")) for i in range(8))
        )
    assert [r.choices[0].message.content for r in results] == [f"n{i}" for i in range(8)]
    assert len({nomyo_openai.metadata(r)["payload_id"] for r in results}) == 8
    assert posts() == 8


def test_threads_share_one_blocking_client(endpoint: Any, options: dict, posts: Callable) -> None:
    def ask(i: int) -> str:
        completion = client.chat.completions.create(model=MODEL, messages=user(f"t{i}"))
        return str(completion.choices[0].message.content)

    with sdk(endpoint, options) as client, ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, range(8)))
    assert replies == [f"t{i}" for i in range(8)]
    assert posts() == 8


def test_a_disposed_client_is_refused_unretried_and_unsent(
    endpoint: Any, options: dict, log: Any
) -> None:
    http = nomyo_openai.http_client(base_url=endpoint.base_url, **options)
    client = openai.OpenAI(
        base_url=endpoint.base_url + "/v1", api_key="k", http_client=http, max_retries=2
    )
    http._transport.gateway.client.dispose()  # keys wiped: the client can send nothing
    with client, pytest.raises(openai.OpenAIError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("secret"))
    if nomyo_openai.sdk_propagates_errors():
        assert isinstance(caught.value, ClientClosedError)
    else:
        assert isinstance(caught.value, openai.BadRequestError)
        assert caught.value.response.headers["x-should-retry"] == "false"
    assert "disposed" in str(caught.value)
    assert log.lines == []
