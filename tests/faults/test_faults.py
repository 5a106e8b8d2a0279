"""Fault injection: each misbehaviour of the server gives the documented outcome.

PROTOCOL.md section 4 maps statuses to exceptions and says which are retried (429, 500, 502,
503, 504 and network failures; up to ``max_retries`` more attempts, ``Retry-After`` honoured);
every attempt is sealed afresh with a new AES key. Retry waits are recorded by an injected
sleep instead of taken, except in the one test that checks a real wait.
"""

from __future__ import annotations

import time

import pytest

import nomyo_native as nomyo

from .loopback import (
    CLOSE,
    CLOSE_BEFORE_BODY,
    DROP_MID_BODY,
    ECHO_PREFIX,
    OK,
    STALL,
    TAMPER,
    TRICKLE,
    LoopbackPeer,
    json_status,
    raw_body,
    status,
)

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning")

MESSAGES = [{"role": "user", "content": "fault-injection probe"}]
NON_JSON = "<html><body>upstream exploded</body></html>"


async def _create(chat: nomyo.SecureChatCompletion) -> dict:
    return await chat.create(model="loopback-model", messages=MESSAGES)


def _assert_fresh_sealing(peer: LoopbackPeer) -> None:
    keys = [post.request_key for post in peer.posts]
    assert all(key is not None and len(key) == 32 for key in keys)
    assert len(set(keys)) == len(keys), "an AES key was reused across attempts"
    assert all(post.request == peer.posts[0].request for post in peer.posts)


async def test_connection_dropped_mid_body_is_retried_with_a_fresh_key(loopback, chat_to, sleeps):
    loopback.then(DROP_MID_BODY, OK)
    async with chat_to(max_retries=2) as chat:
        response = await _create(chat)
    assert response["choices"][0]["message"]["content"] == f"{ECHO_PREFIX}fault-injection probe>"
    assert [post.action for post in loopback.posts] == ["drop_mid_body", "ok"]
    assert len(sleeps.waits) == 1
    _assert_fresh_sealing(loopback)


async def test_connection_dropped_on_every_attempt_is_a_connection_error(loopback, chat_to, sleeps):
    loopback.then(DROP_MID_BODY, CLOSE, DROP_MID_BODY)
    async with chat_to(max_retries=2) as chat:
        with pytest.raises(nomyo.APIConnectionError):
            await _create(chat)
    assert len(loopback.posts) == 3
    assert len(sleeps.waits) == 2
    _assert_fresh_sealing(loopback)


@pytest.mark.parametrize(
    ("code", "error", "retried"),
    [
        (400, nomyo.InvalidRequestError, False),
        (401, nomyo.AuthenticationError, False),
        (403, nomyo.ForbiddenError, False),
        (404, nomyo.APIError, False),
        (429, nomyo.RateLimitError, True),
        (500, nomyo.ServerError, True),
        (502, nomyo.APIError, True),
        (503, nomyo.ServiceUnavailableError, True),
        (504, nomyo.APIError, True),
    ],
)
async def test_non_json_error_bodies_map_to_their_exception(
    loopback, chat_to, sleeps, code, error, retried
):
    loopback.then(*[status(code, NON_JSON, content_type="text/html")] * 3)
    async with chat_to(max_retries=2) as chat:
        with pytest.raises(error) as caught:
            await _create(chat)
    assert type(caught.value) is error
    assert caught.value.status_code == code
    assert len(loopback.posts) == (3 if retried else 1)
    assert len(sleeps.waits) == (2 if retried else 0)


async def test_json_error_detail_is_carried(loopback, chat_to):
    loopback.then(json_status(403, "model not allowed for tier high"))
    async with chat_to(max_retries=2) as chat:
        with pytest.raises(nomyo.ForbiddenError) as caught:
            await _create(chat)
    assert "model not allowed for tier high" in str(caught.value)
    assert caught.value.error_details == {"detail": "model not allowed for tier high"}


async def test_stall_past_the_timeout_is_a_connection_error(loopback, chat_to):
    loopback.then(STALL)
    async with chat_to(max_retries=0, timeout=1.0) as chat:
        with pytest.raises(nomyo.APIConnectionError):
            await _create(chat)
    assert len(loopback.posts) == 1


async def test_trickling_answer_is_cut_at_the_timeout(loopback, chat_to):
    # One byte every 0.2 s never trips httpx2's per-read timeout; the per-attempt deadline must.
    loopback.then(TRICKLE)
    started = time.monotonic()
    async with chat_to(max_retries=0, timeout=1.0) as chat:
        with pytest.raises(nomyo.APIConnectionError, match="deadline"):
            await _create(chat)
    # The full trickle would take minutes; a bound far above the 1 s deadline still fails
    # without the deadline.
    assert time.monotonic() - started < 30
    assert len(loopback.posts) == 1


async def test_trickle_then_answer_succeeds_on_retry(loopback, chat_to, sleeps):
    loopback.then(TRICKLE, OK)
    async with chat_to(max_retries=1, timeout=1.0) as chat:
        response = await _create(chat)
    assert response["_metadata"]["payload_id"] == loopback.posts[1].payload_id
    assert len(sleeps.waits) == 1
    _assert_fresh_sealing(loopback)


async def test_stall_then_answer_succeeds_on_retry(loopback, chat_to, sleeps):
    loopback.then(STALL, OK)
    async with chat_to(max_retries=1, timeout=1.0) as chat:
        response = await _create(chat)
    assert response["_metadata"]["payload_id"] == loopback.posts[1].payload_id
    assert len(sleeps.waits) == 1
    _assert_fresh_sealing(loopback)


async def test_503_then_200_succeeds(loopback, chat_to, sleeps):
    loopback.then(json_status(503, "backend down"), OK)
    async with chat_to(max_retries=2) as chat:
        response = await _create(chat)
    assert response["_metadata"]["is_encrypted"] is True
    assert [post.action for post in loopback.posts] == ["status", "ok"]
    assert len(sleeps.waits) == 1
    # The retry is the same logical request: same payload id, new AES key and nonce.
    assert loopback.posts[0].payload_id == loopback.posts[1].payload_id
    _assert_fresh_sealing(loopback)


async def test_429_waits_exactly_what_retry_after_says(loopback, chat_to, sleeps):
    loopback.then(json_status(429, "slow down", retry_after="3"), OK)
    async with chat_to(max_retries=2) as chat:
        await _create(chat)
    assert sleeps.waits == [3.0]
    assert len(loopback.posts) == 2


async def test_429_retry_after_is_really_waited(loopback, chat_to):
    # The one real wait: the second attempt must not arrive before Retry-After has passed
    # (a lower bound only, so a loaded machine cannot make it fail).
    loopback.then(json_status(429, "slow down", retry_after="1"), OK)
    async with chat_to(max_retries=1, sleep=None) as chat:
        started = time.monotonic()
        await _create(chat)
    assert len(loopback.posts) == 2
    assert loopback.posts[1].arrived - loopback.posts[0].arrived >= 1.0
    assert time.monotonic() - started >= 1.0


async def test_429_retry_after_beyond_the_bound_is_not_retried(loopback, chat_to, sleeps):
    loopback.then(json_status(429, "come back tomorrow", retry_after="86400"), OK)
    async with chat_to(max_retries=2, max_retry_after=60.0) as chat:
        with pytest.raises(nomyo.RateLimitError):
            await _create(chat)
    assert len(loopback.posts) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not an envelope</html>",
        b'{"detail": "ok"}',
        b"",
        b'{"version": "1.0", "algorithm": "hybrid-aes256-rsa4096"',
    ],
    ids=["html", "json-not-envelope", "empty", "truncated"],
)
async def test_broken_200_body_is_a_security_error_and_not_retried(loopback, chat_to, body):
    loopback.then(raw_body(body), OK)
    async with chat_to(max_retries=2) as chat:
        with pytest.raises(nomyo.SecurityError):
            await _create(chat)
    assert len(loopback.posts) == 1


async def test_peer_keeps_serving_after_faults(loopback, chat_to):
    # Faults on one connection leave the client's pool usable for the next request.
    loopback.then(DROP_MID_BODY, OK, STALL, OK)
    async with chat_to(max_retries=1, timeout=1.0) as chat:
        first = await _create(chat)
        second = await _create(chat)
    assert first["_metadata"]["payload_id"] != second["_metadata"]["payload_id"]
    assert len(loopback.posts) == 4


async def test_tampered_response_is_the_opaque_security_error(loopback, chat_to):
    loopback.then(TAMPER, OK)
    async with chat_to(max_retries=2) as chat:
        with pytest.raises(nomyo.SecurityError) as caught:
            await _create(chat)
    assert type(caught.value) is nomyo.SecurityError
    assert len(loopback.posts) == 1


async def test_huge_error_body_is_not_buffered_whole(loopback, chat_to):
    # 32 MiB of HTML behind a 500: the client reads at most its error-body cap and still maps
    # the status.
    loopback.then(status(500, b"<p>" * (32 * 2**20 // 3), content_type="text/html"))
    async with chat_to(max_retries=0) as chat:
        with pytest.raises(nomyo.ServerError) as caught:
            await _create(chat)
    assert caught.value.status_code == 500


async def test_200_body_over_the_envelope_cap_is_refused(loopback, chat_to):
    from nomyo_native import _core

    loopback.then(raw_body(b" " * (_core.MAX_ENVELOPE_BYTES + 1)), OK)
    async with chat_to(max_retries=2) as chat:
        with pytest.raises(nomyo.SecurityError):
            await _create(chat)
    assert len(loopback.posts) == 1


async def test_hang_up_during_a_large_upload_is_retried(loopback, chat_to, sleeps):
    # A 4 MiB prompt: the peer closes after the headers, while the body is still being sent.
    loopback.then(CLOSE_BEFORE_BODY, OK)
    big = [{"role": "user", "content": "u" * (4 * 2**20)}]
    async with chat_to(max_retries=2) as chat:
        response = await chat.create(model="loopback-model", messages=big)
    assert response["choices"][0]["message"]["content"] == f"{ECHO_PREFIX}{'u' * 4 * 2**20}>"
    assert [post.action for post in loopback.posts] == ["close_before_body", "ok"]
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00garbage", b"[1, 2]", b'"just a string"', b'{"detail": {"nested": 1}}', b"null"],
    ids=["binary", "json-list", "json-string", "detail-object", "json-null"],
)
@pytest.mark.parametrize(
    ("code", "error"), [(400, nomyo.InvalidRequestError), (503, nomyo.ServiceUnavailableError)]
)
async def test_odd_error_bodies_still_map_by_status(loopback, chat_to, body, code, error):
    loopback.then(status(code, body, content_type="application/json"))
    async with chat_to(max_retries=0) as chat:
        with pytest.raises(error) as caught:
            await _create(chat)
    assert type(caught.value) is error
    assert caught.value.status_code == code


async def test_fault_paths_log_no_secret(loopback, chat_to, caplog):
    # Error and retry paths log more than the happy path: none of it may carry the API key,
    # the prompt, or the reply.
    import logging

    caplog.set_level(logging.DEBUG)
    api_key = "sk-fault-" + "7" * 24
    prompt = "prompt-marker-" + "q" * 12
    loopback.then(
        DROP_MID_BODY,
        json_status(503, "down"),
        STALL,
        status(500, NON_JSON, content_type="text/html"),
        OK,
        TAMPER,
    )
    errors: list[str] = []
    async with chat_to(max_retries=4, timeout=1.0, api_key=api_key) as chat:
        messages = [{"role": "user", "content": prompt}]
        response = await chat.create(model="loopback-model", messages=messages)
        assert response["choices"][0]["message"]["content"] == f"{ECHO_PREFIX}{prompt}>"
        with pytest.raises(nomyo.SecurityError) as caught:
            await chat.create(model="loopback-model", messages=messages)
        errors.append(repr(caught.value))
    assert any("retrying" in record.getMessage() for record in caplog.records)
    text = caplog.text + "\n".join(errors)
    for secret in (api_key, "7" * 24, prompt, "q" * 12):
        assert secret not in text
