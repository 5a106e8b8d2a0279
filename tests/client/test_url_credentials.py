"""A base URL carrying ``user:password`` (a proxy's Basic auth) never shows them: not in any
exception (text, repr, chain, traceback), repr of a client, or log record (httpx2's own request
log included), whatever fails: connection, TLS, deadline, status, pin, transport policy."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket

import httpx2
import pytest

import nomyo_native as nomyo

from .disclosure import everything_said_about

USER = [{"role": "user", "content": "hello"}]
NAME = "proxyuser7"
PASSWORD = "Pw0rd-5ecret"
# Percent-encoded characters in the password must not leak in either spelling.
ENCODED_PASSWORD = "Pw0rd%2D5ecret%40x"
SECRETS = (NAME, PASSWORD, "Pw0rd-5ecret@x", ENCODED_PASSWORD)


def _assert_no_credentials(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _assert_logs_clean(logs: pytest.LogCaptureFixture) -> None:
    for record in logs.records:
        _assert_no_credentials(record.getMessage())


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("password", [PASSWORD, ENCODED_PASSWORD])
async def test_url_credentials_never_appear_in_connection_errors(logs, scheme, password):
    # Through the client's own network stack (no transport injected): nothing listens there.
    url = f"{scheme}://{NAME}:{password}@127.0.0.1:{_closed_port()}/"
    async with nomyo.SecureChatCompletion(
        base_url=url, allow_http=True, max_retries=1, key_size=2048, sleep=_no_sleep
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError) as caught:
            await chat.create(model="m", messages=USER)
    said = everything_said_about(caught.value)
    assert "127.0.0.1" in said, "the message still names the server"
    _assert_no_credentials(said)
    _assert_logs_clean(logs)


async def _no_sleep(seconds: float) -> None:
    del seconds


async def test_url_credentials_never_appear_in_a_deadline_error(logs):
    async def stall(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(30)
        return httpx2.Response(200)  # pragma: no cover - the deadline ends it first

    client = nomyo.SecureCompletionClient(
        f"https://{NAME}:{PASSWORD}@peer.test",
        max_retries=0,
        deadline=0.05,
        transport=httpx2.MockTransport(stall),
    )
    with pytest.raises(nomyo.APIConnectionError) as caught:
        await client.fetch_server_public_key()
    assert "deadline" in str(caught.value)
    _assert_no_credentials(everything_said_about(caught.value))
    _assert_logs_clean(logs)


@pytest.mark.parametrize("status", [401, 404, 500, 503])
async def test_url_credentials_never_appear_in_status_errors_or_httpx_logs(logs, status):
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(status, json={"detail": "no"})

    client = nomyo.SecureCompletionClient(
        f"https://{NAME}:{PASSWORD}@peer.test/v1/",
        max_retries=0,
        transport=httpx2.MockTransport(answer),
    )
    with pytest.raises(nomyo.APIError) as caught:
        await client.fetch_server_public_key()
    assert caught.value.status_code == status
    _assert_no_credentials(everything_said_about(caught.value))
    _assert_logs_clean(logs)
    assert any(r.name.startswith("httpx2") for r in logs.records), "httpx2 logged the request"
    # Still sent, as httpx2 did from the URL: as Basic auth, to a URL without userinfo.
    request = seen[0]
    assert request.url.userinfo == b""
    assert str(request.url) == "https://peer.test/v1/pki/public_key"
    expected = base64.b64encode(f"{NAME}:{PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


async def test_url_credentials_never_appear_in_a_pin_mismatch(peer, make_chat, logs):
    chat = make_chat(
        base_url=f"https://{NAME}:{PASSWORD}@peer.test",
        server_key_fingerprint="sha256:" + "0" * 64,
    )
    with pytest.raises(nomyo.SecurityError) as caught:
        await chat.create(model="m", messages=USER)
    _assert_no_credentials(everything_said_about(caught.value))
    _assert_logs_clean(logs)


async def test_url_credentials_never_appear_in_the_plain_http_refusal(logs):
    client = nomyo.SecureCompletionClient(f"http://{NAME}:{PASSWORD}@peer.test")
    with pytest.raises(nomyo.SecurityError) as caught:
        await client.fetch_server_public_key()
    assert "peer.test" in str(caught.value)
    _assert_no_credentials(everything_said_about(caught.value))
    _assert_logs_clean(logs)


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://{NAME}:{PASSWORD}@peer.test",
        f"https://{NAME}:{PASSWORD}@",
        f"https://{NAME}:{PASSWORD}@peer.test:notaport",
        f"https://{NAME}:{PASSWORD}@[::1",
        f"https://{NAME}:{PASSWORD}/x@peer.test",
    ],
)
def test_url_credentials_never_appear_when_the_url_is_refused(url):
    with pytest.raises(ValueError) as caught:
        nomyo.SecureCompletionClient(url)
    _assert_no_credentials(everything_said_about(caught.value))


def test_url_credentials_never_appear_in_a_client_repr():
    url = f"https://{NAME}:{PASSWORD}@peer.test"
    chat = nomyo.SecureChatCompletion(base_url=url)
    for shown in (repr(chat), repr(chat.client), str(chat.client)):
        assert "peer.test" in shown
        _assert_no_credentials(shown)
    sync = nomyo.SyncSecureChatCompletion(base_url=url)
    try:
        _assert_no_credentials(repr(sync))
    finally:
        sync.close()
