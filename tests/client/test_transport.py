"""The client against a scriptable peer (httpx2.MockTransport): request shape, error mapping,
retries, pinning, replay refusal, transport policy and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
import uuid
import warnings

import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native import _core

from .core_threads import spy_on_core_threads
from .peer import seal_to

USER = [{"role": "user", "content": "What is the capital of France?"}]

OPENAI_PARAMETERS = {
    "temperature": 0.7,
    "max_tokens": 64,
    "top_p": 0.9,
    "stop": ["\n\n", "END"],
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "n": 1,
    "best_of": 2,
    "seed": 42,
    "logit_bias": {"1234": -100.0},
    "user": "user-7",
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
    "stream": False,
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_request_carries_every_parameter_and_nothing_client_only(make_chat, peer):
    async with make_chat(api_key="sk-test-123") as chat:
        reply = await chat.create(
            model="Qwen/Qwen3-0.6B",
            messages=USER,
            tools=TOOLS,
            security_tier="high",
            **OPENAI_PARAMETERS,
        )
    (got,) = peer.received
    assert got.request == {
        "model": "Qwen/Qwen3-0.6B",
        "messages": USER,
        "tools": TOOLS,
        **OPENAI_PARAMETERS,
    }
    for client_only in ("security_tier", "api_key", "base_url", "attestation"):
        assert client_only not in got.request
    headers = got.headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["authorization"] == "Bearer sk-test-123"
    assert headers["x-security-tier"] == "high"
    assert uuid.UUID(headers["x-payload-id"]).version == 4
    pem = chat.client.public_key_pem
    assert headers["x-public-key"] == urllib.parse.quote(pem)
    assert "%0A" in headers["x-public-key"]
    assert got.envelope["key_algorithm"] == "RSA-OAEP-SHA256"
    assert got.envelope["payload_algorithm"] == "AES-256-GCM"

    message = reply["choices"][0]["message"]
    assert message["content"] == "echo: What is the capital of France?"
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    meta = reply["_metadata"]
    assert meta["payload_id"] == headers["x-payload-id"]
    assert meta["processed_at"] == 1700000001
    assert meta["is_encrypted"] is True
    assert meta["encryption_algorithm"] == "hybrid-aes256-rsa4096"
    assert meta["security_tier"] == "high"


async def test_openai_style_spelling_and_acreate_use_the_same_machinery(make_chat, peer):
    async with make_chat() as chat:
        first = await chat.chat.completions.create(model="m", messages=USER)
        second = await chat.acreate("m", [{"role": "user", "content": "second"}])
    assert first["choices"][0]["message"]["content"].endswith("capital of France?")
    assert second["choices"][0]["message"]["content"] == "echo: second"
    assert "authorization" not in peer.received[0].headers
    assert "x-security-tier" not in peer.received[0].headers
    assert peer.key_fetches == 1, "the server key is fetched once and cached"


@pytest.mark.parametrize("tier", ["standard", "high", "maximum"])
async def test_each_tier_is_sent(make_chat, peer, tier):
    async with make_chat(attestation="off") as chat:
        reply = await chat.create(model="m", messages=USER, security_tier=tier)
    assert peer.received[0].headers["x-security-tier"] == tier
    assert reply["_metadata"]["security_tier"] == tier


@pytest.mark.parametrize("tier", ["low", "MAXIMUM", "", 3])
async def test_invalid_tier_refused_before_anything_is_sent(make_chat, peer, tier):
    async with make_chat() as chat:
        with pytest.raises(ValueError, match="security_tier"):
            await chat.create(model="m", messages=USER, security_tier=tier)
    assert peer.key_fetches == 0 and peer.posts == 0


STATUS_CASES = [
    (400, nomyo.InvalidRequestError),
    (401, nomyo.AuthenticationError),
    (403, nomyo.ForbiddenError),
    (404, nomyo.APIError),
    (429, nomyo.RateLimitError),
    (500, nomyo.ServerError),
    (502, nomyo.APIError),
    (503, nomyo.ServiceUnavailableError),
    (504, nomyo.APIError),
    (418, nomyo.APIError),
]


@pytest.mark.parametrize(("status", "exc_type"), STATUS_CASES)
async def test_status_maps_to_exception_with_details(make_chat, peer, status, exc_type):
    peer.script.append(httpx2.Response(status, json={"detail": f"reason {status}"}))
    async with make_chat(max_retries=0) as chat:
        with pytest.raises(exc_type) as info:
            await chat.create(model="m", messages=USER)
    err = info.value
    assert type(err) is exc_type
    assert isinstance(err, nomyo.APIError)
    assert err.status_code == status
    assert err.error_details == {"detail": f"reason {status}"}
    assert f"reason {status}" in str(err)
    assert peer.posts == 1


@pytest.mark.parametrize(("status", "exc_type"), STATUS_CASES)
async def test_non_json_error_bodies_are_handled(make_chat, peer, status, exc_type):
    peer.script.append(httpx2.Response(status, text="<html>upstream exploded</html>"))
    async with make_chat(max_retries=0) as chat:
        with pytest.raises(exc_type) as info:
            await chat.create(model="m", messages=USER)
    assert info.value.status_code == status
    assert info.value.error_details == {"body": "<html>upstream exploded</html>"}


async def test_redirects_are_not_followed(make_chat, peer):
    peer.script.append(httpx2.Response(302, headers={"location": "https://evil.test/steal"}))
    async with make_chat(max_retries=3) as chat:
        with pytest.raises(nomyo.APIError) as info:
            await chat.create(model="m", messages=USER)
    assert info.value.status_code == 302
    assert peer.posts == 1


async def test_503_then_200_succeeds_and_each_attempt_is_sealed_afresh(make_chat, peer, sleeps):
    peer.script.append(httpx2.Response(503, json={"detail": "backend down"}))
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["choices"][0]["message"]["content"].startswith("echo:")
    assert peer.posts == 2
    first, second = peer.received
    assert first.request == second.request
    assert first.envelope["encrypted_aes_key"] != second.envelope["encrypted_aes_key"]
    assert (
        first.envelope["encrypted_payload"]["nonce"]
        != second.envelope["encrypted_payload"]["nonce"]
    )
    assert first.headers["x-payload-id"] == second.headers["x-payload-id"]
    assert len(sleeps.waits) == 1
    assert 0.5 <= sleeps.waits[0] <= 1.0, "first backoff: base 1 s with jitter"


async def test_backoff_grows_exponentially_and_retries_exhaust(make_chat, peer, sleeps):
    peer.script.extend(httpx2.Response(500, json={"detail": "boom"}) for _ in range(4))
    async with make_chat(max_retries=3) as chat:
        with pytest.raises(nomyo.ServerError):
            await chat.create(model="m", messages=USER)
    assert peer.posts == 4
    assert len(sleeps.waits) == 3
    for index, wait in enumerate(sleeps.waits):
        assert 2**index / 2 <= wait <= 2**index


async def test_429_retry_after_is_honoured(make_chat, peer, sleeps):
    peer.script.append(
        httpx2.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"})
    )
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)
    assert sleeps.waits == [7.0]
    assert peer.posts == 2


async def test_retry_after_beyond_the_bound_is_not_waited(make_chat, peer, sleeps):
    peer.script.append(httpx2.Response(429, json={"detail": "x"}, headers={"Retry-After": "3600"}))
    async with make_chat(max_retry_after=60) as chat:
        with pytest.raises(nomyo.RateLimitError) as info:
            await chat.create(model="m", messages=USER)
    assert info.value.retry_after == 3600.0, "the caller learns how long to wait"
    assert sleeps.waits == []
    assert peer.posts == 1


async def test_max_retries_zero_disables_retries(make_chat, peer, sleeps):
    peer.script.append(httpx2.Response(503, json={"detail": "down"}))
    async with make_chat(max_retries=0) as chat:
        with pytest.raises(nomyo.ServiceUnavailableError):
            await chat.create(model="m", messages=USER)
    assert peer.posts == 1 and sleeps.waits == []


async def test_non_retryable_statuses_are_not_retried(make_chat, peer, sleeps):
    peer.script.append(httpx2.Response(401, json={"detail": "bad key"}))
    async with make_chat(max_retries=5) as chat:
        with pytest.raises(nomyo.AuthenticationError):
            await chat.create(model="m", messages=USER)
    assert peer.posts == 1 and sleeps.waits == []


async def test_network_error_is_retried_then_succeeds(make_chat, peer, sleeps):
    peer.script.append(httpx2.ConnectError("connection refused"))
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["_metadata"]["is_encrypted"] is True
    assert peer.posts == 2 and len(sleeps.waits) == 1


async def test_persistent_network_error_is_api_connection_error(make_chat, peer):
    peer.script.extend(httpx2.ReadError("reset") for _ in range(3))
    async with make_chat() as chat:
        with pytest.raises(nomyo.APIConnectionError) as info:
            await chat.create(model="m", messages=USER)
    assert isinstance(info.value, ConnectionError)
    assert not isinstance(info.value, nomyo.APIError)
    assert peer.posts == 3


async def test_wrong_pin_refuses_before_anything_is_encrypted(make_chat, peer, monkeypatch):
    sealed: list[object] = []
    real_seal = _core.seal
    monkeypatch.setattr(_core, "seal", lambda *a: sealed.append(a) or real_seal(*a))
    async with make_chat(server_key_fingerprint="sha256:" + "ab" * 32) as chat:
        with pytest.raises(nomyo.SecurityError, match="does not match the pinned"):
            await chat.create(model="m", messages=USER)
    assert peer.key_fetches == 1 and peer.posts == 0
    assert sealed == []


async def test_right_pin_passes(make_chat, peer):
    pin = peer.fingerprint.upper().replace("SHA256", "sha256")
    async with make_chat(server_key_fingerprint=pin) as chat:
        await chat.create(model="m", messages=USER)
        assert chat.client.server_key_fingerprint == peer.fingerprint
    assert peer.posts == 1


@pytest.mark.parametrize(
    "pin", ["ab" * 32, "sha1:" + "ab" * 20, "sha256:xyz", "sha256:" + "a" * 63]
)
def test_malformed_pin_is_a_clear_error(pin):
    with pytest.raises(ValueError, match="sha256"):
        nomyo.SecureChatCompletion(server_key_fingerprint=pin)


async def test_pin_file_trusts_on_first_use_then_refuses_a_changed_key(
    make_chat, peer, tmp_path, peer_key
):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from .peer import Peer

    pin_file = tmp_path / "pins.json"
    async with make_chat(server_key_pin_file=pin_file) as chat:
        await chat.create(model="m", messages=USER)
    assert json.loads(pin_file.read_text()) == {"https://peer.test": peer.fingerprint}

    async with make_chat(server_key_pin_file=pin_file) as chat:
        await chat.create(model="m", messages=USER)

    impostor = Peer(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    async with make_chat(server_key_pin_file=pin_file, transport=impostor.transport()) as chat:
        with pytest.raises(nomyo.SecurityError, match="differs from"):
            await chat.create(model="m", messages=USER)
    assert impostor.posts == 0


async def test_payload_id_mismatch_is_refused(make_chat, peer):
    peer.echo_payload_id = str(uuid.uuid4())
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="payload_id"):
            await chat.create(model="m", messages=USER)


async def test_missing_server_payload_id_gets_ours(make_chat, peer):
    peer.echo_payload_id = None
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["_metadata"]["payload_id"] == peer.received[0].headers["x-payload-id"]


async def test_tampered_response_gets_one_opaque_security_error(make_chat, peer):
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)  # learn the client key
        from cryptography.hazmat.primitives import serialization

        client_key = serialization.load_pem_public_key(chat.client.public_key_pem.encode())
        good = json.loads(seal_to(client_key, {"choices": []}))
        tag = bytearray(__import__("base64").b64decode(good["encrypted_payload"]["tag"]))
        tag[0] ^= 1
        good["encrypted_payload"]["tag"] = __import__("base64").b64encode(bytes(tag)).decode()
        other_key = json.loads(seal_to(peer.key.public_key(), {"choices": []}))
        messages = set()
        for body in (good, other_key):
            peer.script.append(httpx2.Response(200, content=json.dumps(body).encode()))
            with pytest.raises(nomyo.SecurityError) as info:
                await chat.create(model="m", messages=USER)
            assert not isinstance(info.value, ValueError)
            messages.add(str(info.value))
    assert messages == {"Decryption failed: integrity check or authentication failed"}


@pytest.mark.parametrize(
    ("field", "value"), [("version", "0.9"), ("algorithm", "hybrid-aes128-rsa2048")]
)
async def test_downgraded_response_is_refused(make_chat, peer, field, value):
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)
        from cryptography.hazmat.primitives import serialization

        client_key = serialization.load_pem_public_key(chat.client.public_key_pem.encode())
        body = json.loads(seal_to(client_key, {"choices": []}))
        body[field] = value
        peer.script.append(httpx2.Response(200, content=json.dumps(body).encode()))
        with pytest.raises(nomyo.ResponseFormatError) as info:
            await chat.create(model="m", messages=USER)
    assert isinstance(info.value, nomyo.SecurityError) and isinstance(info.value, ValueError)


async def test_non_envelope_200_body_is_a_format_error(make_chat, peer):
    peer.script.append(httpx2.Response(200, text="not json at all"))
    async with make_chat() as chat:
        with pytest.raises(nomyo.ResponseFormatError):
            await chat.create(model="m", messages=USER)


async def test_http_without_allow_http_refused_before_any_connection(peer):
    chat = nomyo.SecureChatCompletion(
        base_url="http://peer.test", key_size=2048, transport=peer.transport()
    )
    with pytest.raises(nomyo.SecurityError, match="HTTPS"):
        await chat.create(model="m", messages=USER)
    assert peer.key_fetches == 0 and peer.posts == 0
    await chat.aclose()


async def test_http_with_allow_http_warns_once_and_works(peer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chat = nomyo.SecureChatCompletion(
            base_url="http://peer.test",
            allow_http=True,
            key_size=2048,
            transport=peer.transport(),
        )
        await chat.create(model="m", messages=USER)
        await chat.create(model="m", messages=USER)
        await chat.aclose()
    insecure = [w for w in caught if "HTTP instead of HTTPS" in str(w.message)]
    assert len(insecure) == 1
    assert peer.posts == 2


def test_tls_verification_cannot_be_disabled():
    with pytest.raises(nomyo.SecurityError, match="verification"):
        nomyo.SecureChatCompletion(verify=False)


@pytest.mark.parametrize("bad", ["sk\r\nX-Evil: 1", "sk\nabc", "sk\x00", "sk\rabc"])
async def test_api_key_with_cr_lf_nul_is_refused_before_sending(make_chat, peer, bad):
    with pytest.raises(nomyo.SecurityError, match="header injection"):
        make_chat(api_key=bad)
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="header injection"):
            await chat.create(model="m", messages=USER, api_key=bad)
    assert peer.key_fetches == 0 and peer.posts == 0


async def test_api_key_from_environment_and_per_call_override(make_chat, peer, monkeypatch):
    monkeypatch.setenv("NOMYO_API_KEY", "sk-from-env")
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)
        await chat.create(model="m", messages=USER, api_key="sk-per-call")
    assert peer.received[0].headers["authorization"] == "Bearer sk-from-env"
    assert peer.received[1].headers["authorization"] == "Bearer sk-per-call"


async def test_empty_api_key_means_none_and_the_chat_reports_what_is_sent(
    make_chat, peer, monkeypatch
):
    # An explicit empty key is "no key": the environment is not consulted behind the
    # caller's back, and SecureChatCompletion.api_key agrees with the header actually sent.
    monkeypatch.setenv("NOMYO_API_KEY", "sk-from-env")
    async with make_chat(api_key="") as chat:
        assert chat.api_key is None
        assert chat.client.api_key is None
        await chat.create(model="m", messages=USER)
    assert "authorization" not in peer.received[0].headers


async def test_oversized_payload_refused_before_sending(make_chat, peer):
    huge = [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]
    async with make_chat() as chat:
        with pytest.raises(nomyo.PayloadTooLargeError) as info:
            await chat.create(model="m", messages=huge)
    assert isinstance(info.value, ValueError)
    assert peer.posts == 0


async def test_non_json_value_is_a_type_error(make_chat, peer):
    async with make_chat() as chat:
        with pytest.raises(TypeError):
            await chat.create(model="m", messages=USER, extra=object())
    assert peer.posts == 0


async def test_debug_log_of_a_full_request_has_no_api_key_or_prompt(make_chat, peer, caplog):
    secret_prompt = "PROMPT-canary-5f1e0c3a"
    api_key = "sk-canary-9b7d2e44"
    caplog.set_level(logging.DEBUG)
    peer.script.append(httpx2.Response(503, json={"detail": "retry me"}))
    async with make_chat(api_key=api_key) as chat:
        reply = await chat.create(model="m", messages=[{"role": "user", "content": secret_prompt}])
    assert reply["choices"][0]["message"]["content"] == f"echo: {secret_prompt}"
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "secure_completion" in text and "attempt" in text, "DEBUG says what happens"
    assert api_key not in text
    assert secret_prompt not in text
    assert "Bearer" not in text


async def test_two_hundred_concurrent_requests_without_cross_talk(make_chat, peer):
    async with make_chat() as chat:
        prompts = [f"prompt number {i} {uuid.uuid4()}" for i in range(200)]
        replies = await asyncio.gather(
            *(chat.create(model="m", messages=[{"role": "user", "content": p}]) for p in prompts)
        )
    for prompt, reply in zip(prompts, replies, strict=True):
        assert reply["choices"][0]["message"]["content"] == f"echo: {prompt}"
    ids = {reply["_metadata"]["payload_id"] for reply in replies}
    assert len(ids) == 200
    assert peer.key_fetches == 1
    assert len({r.headers["x-public-key"] for r in peer.received}) == 1, "one key pair"


def test_one_client_survives_successive_event_loops(make_chat, peer):
    chat = make_chat()
    first = asyncio.run(chat.create(model="m", messages=USER))
    second = asyncio.run(chat.create(model="m", messages=USER))
    assert first["_metadata"]["payload_id"] != second["_metadata"]["payload_id"]
    assert peer.key_fetches == 1


async def test_per_call_base_url_uses_a_sibling_client_with_the_same_key(make_chat, peer):
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER)
        await chat.create(model="m", messages=USER, base_url="https://other.test")
    hosts = [r.headers["host"] for r in peer.received]
    assert hosts == ["peer.test", "other.test"]
    assert peer.received[0].headers["x-public-key"] == peer.received[1].headers["x-public-key"]


def test_sync_client(peer, peer_key):
    with nomyo.SyncSecureChatCompletion(
        base_url="https://peer.test", key_size=2048, transport=peer.transport()
    ) as chat:
        reply = chat.create("m", USER, temperature=0.1)
        other = chat.chat.completions.create(model="m", messages=USER)
    assert reply["choices"][0]["message"]["content"].startswith("echo:")
    assert other["_metadata"]["is_encrypted"] is True
    assert peer.key_fetches == 1
    with pytest.raises(RuntimeError):
        chat.create("m", USER)


async def test_closed_client_refuses_new_requests(make_chat, peer):
    chat = make_chat()
    await chat.create(model="m", messages=USER)
    await chat.aclose()
    with pytest.raises(nomyo.ClientClosedError):
        await chat.create(model="m", messages=USER)


async def test_maximum_tier_without_attestation_is_refused_by_default(make_chat, peer):
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="attestation"):
            await chat.create(model="m", messages=USER, security_tier="maximum")
        reply = await chat.create(model="m", messages=USER, security_tier="high")
    assert peer.posts == 2
    record = reply["_metadata"]["attestation_verification"]
    assert record["verified"] is False, "auto records an unverified response and returns it"


async def test_client_policy_bound_applies_to_every_tier(make_chat, peer):
    # Issue 11: "require" now needs a trust anchor (refused at construction without one), so the
    # every-tier policy is exercised with "bound", which this peer (no TPM) can never satisfy.
    async with make_chat(attestation="bound") as chat:
        with pytest.raises(nomyo.SecurityError, match="attestation"):
            await chat.create(model="m", messages=USER)
        reply = await chat.create(model="m", messages=USER, attestation="off")
    assert reply["_metadata"]["attestation_verification"]["summary"] == (
        "not checked: attestation='off'"
    )


async def test_keygen_open_and_a_large_seal_run_off_the_event_loop_thread(
    make_chat, peer, monkeypatch
):
    # With crypto_on_loop=False, RSA private-key work (keygen, opening) always leaves the
    # loop's thread, and so does sealing a payload above the inline bound
    # (nomyo_native._loop_calls). Key generation leaves it whatever the option.
    import threading

    from nomyo_native._loop_calls import INLINE_SEAL_MAX_BYTES

    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    large = [{"role": "user", "content": "x" * INLINE_SEAL_MAX_BYTES}]
    async with make_chat(crypto_on_loop=False) as chat:
        await chat.create(model="m", messages=large)
    for name in ("generate", "seal", "open", "build"):
        assert seen[name], f"{name} was not called"
        assert loop_thread not in seen[name], f"{name} ran on the event loop thread"
    assert not seen["gave_up"], "no build is tried on the loop"


async def test_a_small_payload_is_sealed_on_the_loop_thread_and_opened_off_it(
    make_chat, peer, monkeypatch
):
    # Sealing a small payload costs less than handing it to a worker and back (the rule and
    # its figures: nomyo_native._loop_calls); with crypto_on_loop=False, opening its answer
    # never runs on the loop.
    import threading

    seen = spy_on_core_threads(monkeypatch)
    loop_thread = threading.current_thread().name
    async with make_chat(crypto_on_loop=False) as chat:
        await chat.create(model="m", messages=USER)
    assert seen["seal"] == {loop_thread}
    assert seen["open"] and loop_thread not in seen["open"]


async def test_oversized_response_body_is_refused_without_buffering_it(
    make_chat, peer, monkeypatch
):
    monkeypatch.setattr(_core, "MAX_ENVELOPE_BYTES", 4096)
    peer.script.append(httpx2.Response(200, content=b"{" + b" " * 10_000 + b"}"))
    peer.script.append(httpx2.Response(503, content=b"x" * 100_000))
    async with make_chat(max_retries=0) as chat:
        with pytest.raises(nomyo.ResponseFormatError, match="larger than 4096"):
            await chat.create(model="m", messages=USER)
        with pytest.raises(nomyo.ServiceUnavailableError) as info:
            await chat.create(model="m", messages=USER)
    assert info.value.error_details is None, "a huge error body is dropped, not kept"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_retry_after_parsing(header, expected):
    from email.utils import parsedate_to_datetime

    from nomyo_native._retry import parse_retry_after

    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(header, now) == expected


@pytest.mark.parametrize("deadline", [0, -1.0, "5", True])
def test_deadline_must_be_a_positive_number(make_chat, peer, deadline):
    with pytest.raises(ValueError, match="deadline"):
        make_chat(deadline=deadline)
    assert peer.posts == 0


def test_concurrent_first_pins_for_many_urls_are_all_kept(tmp_path, peer):
    # Siblings share one pin file; every URL's first pin must survive concurrent recording.
    from concurrent.futures import ThreadPoolExecutor

    from nomyo_native.client import SecureCompletionClient as ClientClass

    pin_file = tmp_path / "pins.json"
    clients = [
        ClientClass(f"https://host{n}.test", server_key_pin_file=pin_file, key_size=2048)
        for n in range(40)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: c._check_pin_file(peer.fingerprint), clients))
    pins = json.loads(pin_file.read_text())
    assert pins == {c.router_url: peer.fingerprint for c in clients}


async def test_a_payload_grown_before_its_seal_is_sealed_off_the_loop_thread(
    make_chat, peer, monkeypatch
):
    # Whether a payload is small enough to seal on the loop thread is decided when it is
    # sealed, not when the request starts: the caller's messages list may grow meanwhile (here
    # during the retry wait), and a large payload must never stall the loop (with
    # crypto_on_loop=False; the lone request's bound is tested in test_loop_calls_client).
    import threading

    from nomyo_native._loop_calls import INLINE_SEAL_MAX_BYTES

    calls: list[str] = []
    real_seal = _core.seal

    def spy(*args):
        calls.append(threading.current_thread().name)
        return real_seal(*args)

    monkeypatch.setattr(_core, "seal", spy)
    messages = [{"role": "user", "content": "hi"}]

    async def grow_then_wait(seconds: float) -> None:
        messages.append({"role": "user", "content": "x" * INLINE_SEAL_MAX_BYTES})

    loop_thread = threading.current_thread().name
    peer.script.append(httpx2.Response(503, json={"detail": "retry me"}))
    async with make_chat(sleep=grow_then_wait, crypto_on_loop=False) as chat:
        await chat.create(model="m", messages=messages)
    assert len(calls) == 2
    assert calls[0] == loop_thread, "the small first attempt is sealed inline"
    assert calls[1] != loop_thread, "the grown payload was sealed on the event loop thread"
