"""Issue 10 item 2: an API key is ``1*VCHAR`` or refused with SecurityError before anything is
built, and no header value ever reaches an exception, its chain, a traceback or a log."""

from __future__ import annotations

import logging

import httpx2
import pytest

import nomyo_native as nomyo

from .disclosure import everything_said_about

USER = [{"role": "user", "content": "hello"}]
SECRET = "sk-Secret0123456789"

# Every whitespace and control character a pasted key could carry, and non-ASCII lookalikes.
BAD_CHARACTERS = [
    *[chr(code) for code in range(0x00, 0x21)],  # C0 controls and the space
    "\x7f",
    *[chr(code) for code in range(0x80, 0xA1)],  # C1 controls and NBSP
    "\u1680",
    "\u2000",
    "\u200b",
    "\u2028",
    "\u2029",
    "\u202f",
    "\u3000",
    "\ufeff",
    "é",
]
POSITIONS = ["leading", "trailing", "inside"]


def _with(bad: str, where: str) -> str:
    if where == "leading":
        return bad + SECRET
    if where == "trailing":
        return SECRET + bad
    return SECRET[:6] + bad + SECRET[6:]


def _assert_secret_absent(exc: BaseException) -> None:
    said = everything_said_about(exc)
    assert SECRET not in said
    assert SECRET[:6] not in said and SECRET[6:] not in said


@pytest.mark.parametrize("where", POSITIONS)
@pytest.mark.parametrize("bad", BAD_CHARACTERS, ids=lambda ch: f"U+{ord(ch):04X}")
async def test_api_key_with_whitespace_or_control_is_refused_before_anything_is_built(
    make_chat, peer, bad, where
):
    key = _with(bad, where)
    with pytest.raises(nomyo.SecurityError) as at_construction:
        make_chat(api_key=key)
    _assert_secret_absent(at_construction.value)
    assert f"U+{ord(bad):04X}" in str(at_construction.value)

    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError) as per_call:
            await chat.create(model="m", messages=USER, api_key=key)
    _assert_secret_absent(per_call.value)
    assert peer.key_fetches == 0 and peer.posts == 0, "nothing may be fetched or sent"


@pytest.mark.parametrize("bad", [" ", "\t", "\n", "\r\n"], ids=repr)
def test_api_key_from_environment_is_held_to_the_same_rule(make_chat, monkeypatch, bad):
    monkeypatch.setenv("NOMYO_API_KEY", SECRET + bad)
    with pytest.raises(nomyo.SecurityError) as refused:
        make_chat()
    _assert_secret_absent(refused.value)


def test_every_visible_ascii_character_is_accepted(make_chat):
    key = "".join(chr(code) for code in range(0x21, 0x7F))
    assert make_chat(api_key=key).api_key == key
    assert make_chat(api_key="").api_key is None, "an empty key still means no key"


async def test_a_header_refused_by_the_http_layer_is_not_retried_nor_quoted(make_chat, peer):
    # Defence in depth: whatever still reaches h11/httpx2 and is refused there (its message
    # quotes the header value) ends as one local error, not a retried network error.
    attempts = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/pki/public_key":
            return peer.handle(request)
        attempts.append(request)
        raise httpx2.LocalProtocolError(f"Illegal header value b'Bearer {SECRET} '")

    async with make_chat(api_key=SECRET, transport=httpx2.MockTransport(refuse)) as chat:
        with pytest.raises(nomyo.InvalidRequestError) as refused:
            await chat.create(model="m", messages=USER)
    assert len(attempts) == 1, "a local error is not retried"
    assert refused.value.status_code is None
    _assert_secret_absent(refused.value)


async def test_logs_never_carry_the_api_key(make_chat, peer, caplog):
    caplog.set_level(logging.DEBUG)
    peer.script = [httpx2.Response(503, json={"detail": "busy"})]
    async with make_chat(api_key=SECRET) as chat:
        await chat.create(model="m", messages=USER)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("bad", ["id with space", "id\r\nX-Evil: 1", "id\x00", "ïd", "x" * 257])
async def test_payload_id_is_a_header_value_too(make_chat, peer, bad):
    async with make_chat() as chat:
        with pytest.raises(ValueError, match="payload_id"):
            await chat.client.send_secure_request({"model": "m", "messages": USER}, bad)
    assert peer.posts == 0


def _echoing(status: int, shape: str, secret: str, peer=None):
    """A server that quotes a credential back in its error body, in several shapes (with
    ``peer``, only on the POST: ``peer`` serves the key)."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        if peer is not None and request.url.path == "/pki/public_key":
            return peer.handle(request)
        text = f"invalid API key {secret} (you sent: Bearer {secret})"
        if shape == "detail":
            return httpx2.Response(status, json={"detail": text})
        if shape == "nested":
            return httpx2.Response(status, json={"detail": [{"msg": text, secret: [text]}]})
        return httpx2.Response(status, text=text)

    return handle


@pytest.mark.parametrize("shape", ["detail", "nested", "text"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
async def test_api_key_quoted_back_by_the_server_is_redacted_from_the_error(
    make_chat, peer, status, shape
):
    # The server chose what to write; the key the request carried still appears nowhere in
    # the exception (message, args, error_details, chain, traceback), per-call or from the
    # client's own key.
    for client_key, call_key in ((SECRET, None), (None, SECRET)):
        async with make_chat(
            api_key=client_key,
            transport=httpx2.MockTransport(_echoing(status, shape, SECRET, peer)),
            max_retries=0,
        ) as chat:
            with pytest.raises(nomyo.APIError) as caught:
                await chat.create(model="m", messages=USER, api_key=call_key)
        assert caught.value.status_code == status
        _assert_secret_absent(caught.value)


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_url_password_quoted_back_by_the_server_is_redacted_from_the_error(make_chat, status):
    password = "UrlPassw0rd-quoted"
    async with make_chat(
        base_url=f"https://someone:{password}@peer.test",
        transport=httpx2.MockTransport(_echoing(status, "detail", password)),
        max_retries=0,
    ) as chat:
        with pytest.raises(nomyo.APIError) as caught:
            await chat.client.fetch_server_public_key()
    assert password not in everything_said_about(caught.value)


def test_visible_ascii_is_exactly_one_or_more_vchar():
    # RFC 5234 VCHAR is %x21-7E: checked against every code point, alone and among visible
    # characters, and the empty string.
    from nomyo_native._headers import is_visible_ascii

    assert not is_visible_ascii("")
    for code in range(0x110000):
        ch = chr(code)
        vchar = 0x21 <= code <= 0x7E
        assert is_visible_ascii(ch) is vchar, hex(code)
        assert is_visible_ascii(f"ab{ch}cd") is vchar, hex(code)
