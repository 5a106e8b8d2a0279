"""SyncSecureChatCompletion behaves as SecureChatCompletion does: each test runs on both
drivers against the same scripted peer (errors, retries and Retry-After, compressed and
oversized bodies, pin mismatch, tampered responses, ``_metadata``), plus what only the sync
client has to get right (no event loop of its own, a sync transport)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

import nomyo_native as nomyo
from nomyo_native import _core

USER = [{"role": "user", "content": "both drivers"}]


class Driven:
    """One chat client of either kind, called the blocking way."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
        self.chat: Any = cls(**options)

    def create(self, **kwargs: Any) -> dict[str, Any]:
        return self.run(self.chat.chat.completions.create(model="m", messages=USER, **kwargs))

    def run(self, call: Any) -> Any:
        """The result of a client call: as it is (sync), or awaited (async)."""
        return call if self.kind == "sync" else asyncio.run(call)

    def close(self) -> None:
        self.chat.close()


@pytest.fixture(params=["async", "sync"])
def driven(request, peer, sleeps) -> Iterator[Any]:
    made: list[Driven] = []

    def factory(**options: Any) -> Driven:
        options.setdefault("base_url", "https://peer.test")
        options.setdefault("key_size", 2048)
        options.setdefault("transport", peer.transport())
        options.setdefault("sleep", sleeps.waits.append if request.param == "sync" else sleeps)
        made.append(Driven(request.param, **options))
        return made[-1]

    yield factory
    for item in made:
        item.close()


def test_a_round_trip_gives_the_same_metadata(driven, peer):
    reply = driven(api_key="sk-both").create(security_tier="high")
    assert reply["choices"][0]["message"]["content"] == "echo: both drivers"
    metadata = reply["_metadata"]
    assert metadata["payload_id_verified"] is True
    assert metadata["is_encrypted"] is True
    assert metadata["processed_at"] == 1700000001
    assert metadata["payload_id"] == peer.received[0].headers["x-payload-id"]
    headers = peer.received[0].headers
    assert headers["authorization"] == "Bearer sk-both"
    assert headers["x-security-tier"] == "high"
    assert headers["accept-encoding"] == "identity"


def test_a_wrong_pin_is_refused_before_anything_is_sealed(driven, peer):
    chat = driven(server_key_fingerprint="sha256:" + "00" * 32)
    with pytest.raises(nomyo.SecurityError, match="does not match the pinned"):
        chat.create()
    assert peer.posts == 0


def test_a_tampered_response_is_the_opaque_security_error(driven, peer):
    def tamper(request: httpx2.Request) -> httpx2.Response:
        answer = peer.handle(request)
        if request.method != "POST":
            return answer
        envelope = json.loads(answer.content)
        text = envelope["encrypted_payload"]["ciphertext"]
        envelope["encrypted_payload"]["ciphertext"] = ("B" if text[0] == "A" else "A") + text[1:]
        return httpx2.Response(200, content=json.dumps(envelope).encode())

    with pytest.raises(nomyo.SecurityError) as caught:
        driven(transport=httpx2.MockTransport(tamper)).create()
    assert str(caught.value) == nomyo.errors.OPAQUE_CRYPTO_MESSAGE
    assert peer.posts == 1


def test_retry_after_is_waited_then_the_answer_comes(driven, peer, sleeps):
    peer.script = [httpx2.Response(429, json={"detail": "slow"}, headers={"Retry-After": "2"})]
    reply = driven(max_retries=1).create()
    assert reply["choices"][0]["message"]["content"] == "echo: both drivers"
    assert sleeps.waits == [2.0]
    assert peer.posts == 2


def test_a_retry_after_past_the_bound_is_not_waited(driven, peer, sleeps):
    peer.script = [httpx2.Response(503, json={"detail": "later"}, headers={"Retry-After": "90"})]
    with pytest.raises(nomyo.ServiceUnavailableError) as caught:
        driven(max_retries=2, max_retry_after=60).create()
    assert caught.value.retry_after == 90.0
    assert sleeps.waits == [] and peer.posts == 1


def test_server_errors_are_retried_with_backoff_then_raised(driven, peer, sleeps):
    peer.script = [httpx2.Response(500, json={"detail": "boom"}) for _ in range(3)]
    with pytest.raises(nomyo.ServerError, match="boom"):
        driven(max_retries=2, retry_backoff=1.0).create()
    assert peer.posts == 3
    assert len(sleeps.waits) == 2 and 0.5 <= sleeps.waits[0] <= 1.0 <= sleeps.waits[1] <= 2.0


def test_an_error_that_quotes_the_api_key_is_scrubbed_and_not_retried(driven, peer, sleeps):
    peer.script = [httpx2.Response(401, json={"detail": "bad key sk-secret-9f3e"})]
    with pytest.raises(nomyo.AuthenticationError) as caught:
        driven(api_key="sk-secret-9f3e").create()
    assert "sk-secret-9f3e" not in str(caught.value)
    assert "sk-secret-9f3e" not in json.dumps(caught.value.error_details)
    assert sleeps.waits == [] and peer.posts == 1


def test_a_compressed_answer_is_refused_unread_and_not_retried(driven, peer, sleeps):
    peer.script = [
        httpx2.Response(200, content=gzip.compress(b"{}"), headers={"Content-Encoding": "gzip"})
    ]
    with pytest.raises(nomyo.UnsupportedContentEncodingError, match="gzip"):
        driven(max_retries=2).create()
    assert sleeps.waits == [] and peer.posts == 1


def test_an_oversized_answer_is_refused(driven, peer, monkeypatch):
    monkeypatch.setattr(_core, "MAX_ENVELOPE_BYTES", 4096)
    peer.script = [httpx2.Response(200, content=b"x" * 5000)]
    with pytest.raises(nomyo.ResponseFormatError, match="larger than 4096"):
        driven(max_retries=0).create()


def test_a_network_failure_is_retried_then_a_connection_error(driven, peer, sleeps):
    peer.script = [httpx2.ConnectError("refused"), httpx2.ReadError("reset")]
    with pytest.raises(nomyo.APIConnectionError, match="ReadError"):
        driven(max_retries=1).create()
    assert peer.posts == 2 and len(sleeps.waits) == 1


def test_stream_true_is_refused_before_sealing(driven, peer):
    with pytest.raises(nomyo.InvalidRequestError, match="stream"):
        driven().create(stream=True)
    assert peer.posts == 0


def test_maximum_without_binding_is_refused(driven, peer):
    peer.echo_payload_id = None
    with pytest.raises(nomyo.SecurityError, match="'bound' but the response carries none"):
        driven().create(security_tier="maximum")


def test_another_base_url_shares_the_key_pair(driven, peer):
    chat = driven()
    chat.create()
    chat.create(base_url="https://other.test")
    keys = {r.headers["x-public-key"] for r in peer.received}
    assert len(keys) == 1 and peer.key_fetches == 2


def test_a_request_sealed_by_the_caller_is_sent_and_checked_like_any(driven, peer):
    peer.script = [httpx2.Response(500, json={"detail": "once"})]
    sealed: list[bytes] = []

    def seal(server_key: _core.ServerPublicKey) -> bytes:
        sealed.append(_core.seal({"model": "m", "messages": USER}, server_key))
        return sealed[-1]

    chat = driven(max_retries=1)
    reply = chat.run(chat.chat.client.send_sealed_request(seal, "pid-sealed", "sk-x", "high"))
    assert reply["_metadata"]["payload_id"] == "pid-sealed"
    assert reply["_metadata"]["payload_id_verified"] is True
    assert len(sealed) == 2 and sealed[0] != sealed[1], "each attempt sealed afresh"
    assert [r.request for r in peer.received] == [{"model": "m", "messages": USER}] * 2
    assert peer.received[1].headers["authorization"] == "Bearer sk-x"
    assert peer.received[1].headers["x-security-tier"] == "high"


def test_an_sdk_request_body_is_sealed_from_locked_memory_and_consumed(driven, peer):
    body = _core.RequestBody(json.dumps({"model": "m", "messages": USER}, indent=2).encode())
    chat = driven(max_retries=0)
    reply = chat.run(chat.chat.client.send_sealed_request(body.seal, "pid-sdk"))
    assert reply["choices"][0]["message"]["content"] == "echo: both drivers"
    assert body.consumed
    assert peer.received[0].request == {"model": "m", "messages": USER}


def test_a_sealed_request_is_checked_before_sealing(driven, peer):
    chat = driven()
    with pytest.raises(ValueError, match="payload_id"):
        chat.run(chat.chat.client.send_sealed_request(pytest.fail, "bad id"))
    with pytest.raises(ValueError, match="security_tier"):
        chat.run(chat.chat.client.send_sealed_request(pytest.fail, "pid", None, "ultra"))
    assert peer.posts == 0


def test_client_attributes_stay_settable_and_apply_to_later_requests(driven, peer, sleeps):
    chat = driven(max_retries=3)
    client = chat.chat.client
    client.max_retries = 0
    client.key_size = 2048
    client.trusted_aik = None
    client.pcr_baseline = None
    assert (client.max_retries, client.key_size, client.attestation) == (0, 2048, "auto")
    peer.script = [httpx2.Response(500, json={"detail": "no retry now"})]
    with pytest.raises(nomyo.ServerError):
        chat.create()
    assert peer.posts == 1 and sleeps.waits == []


# ---- the sync client's own -------------------------------------------------------------------


def test_the_sync_client_works_inside_a_running_event_loop(peer):
    async def inside() -> dict[str, Any]:
        with nomyo.SyncSecureChatCompletion(
            base_url="https://peer.test", key_size=2048, transport=peer.transport()
        ) as chat:
            return chat.create(model="m", messages=USER)

    assert asyncio.run(inside())["choices"][0]["message"]["content"] == "echo: both drivers"


def test_the_sync_client_runs_no_thread_of_its_own(peer):
    import threading

    # Which threads, not how many: a thread an earlier test left behind may end meanwhile, and
    # a short-lived one (the background key generation) may still be finishing. A private loop
    # thread, what the sync client must not have, would still be alive after the join.
    before = set(threading.enumerate())
    with nomyo.SyncSecureChatCompletion(
        base_url="https://peer.test", key_size=2048, transport=peer.transport()
    ) as chat:
        chat.create(model="m", messages=USER)
        started = [t for t in threading.enumerate() if t not in before]
        for thread in started:
            thread.join(timeout=30)
        assert [t.name for t in started if t.is_alive()] == []


def test_an_async_only_transport_is_refused_with_a_clear_error():
    with pytest.raises(TypeError, match="synchronous httpx2 transport"):
        nomyo.SyncSecureChatCompletion(transport=httpx2.AsyncHTTPTransport())


def test_a_disposed_sync_client_refuses_to_send(peer):
    chat = nomyo.SyncSecureChatCompletion(
        base_url="https://peer.test", key_size=2048, transport=peer.transport()
    )
    chat.create(model="m", messages=USER)
    chat.dispose()
    assert chat.client.private_key is None
    with pytest.raises(nomyo.ClientClosedError):
        chat.create(model="m", messages=USER)


def test_one_sync_client_serves_several_threads_with_one_key_fetch_and_one_pair(peer):
    from concurrent.futures import ThreadPoolExecutor

    with nomyo.SyncSecureChatCompletion(
        base_url="https://peer.test", key_size=2048, transport=peer.transport()
    ) as chat:
        with ThreadPoolExecutor(max_workers=6) as pool:
            replies = list(pool.map(lambda _: chat.create(model="m", messages=USER), range(12)))
    assert all(r["_metadata"]["payload_id_verified"] is True for r in replies)
    assert len({r["_metadata"]["payload_id"] for r in replies}) == 12
    assert peer.key_fetches == 1
    assert len({r.headers["x-public-key"] for r in peer.received}) == 1
