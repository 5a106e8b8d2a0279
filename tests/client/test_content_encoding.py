"""Issue 10 item 1, unit level: the client asks for identity, reads raw bytes, accepts no coding
or an explicit ``identity``, and refuses every other coding with a typed error."""

from __future__ import annotations

import gzip

import httpx2
import pytest

import nomyo_native as nomyo

USER = [{"role": "user", "content": "encoding probe"}]


class _RawStream(httpx2.AsyncByteStream):
    """A body httpx2 has not read at construction (as a network stream would be)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self):
        yield self._body


def raw_response(code: int, body: bytes, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.Response(code, stream=_RawStream(body), headers=headers)


REFUSED = ["gzip", "deflate", "br", "zstd", "compress", "x-custom", "gzip, identity", "GZIP"]


async def test_every_request_asks_for_identity(make_chat, peer):
    seen = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("accept-encoding"))
        return peer.handle(request)

    async with make_chat(transport=httpx2.MockTransport(record)) as chat:
        await chat.create(model="m", messages=USER)
    assert seen == ["identity", "identity"], "key fetch and POST"


@pytest.mark.parametrize("codings", REFUSED)
async def test_compressed_server_key_is_refused(make_chat, peer, codings):
    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/pki/public_key":
            body = gzip.compress(peer.public_pem.encode())
            return raw_response(200, body, {"content-encoding": codings})
        return peer.handle(request)

    async with make_chat(transport=httpx2.MockTransport(handle)) as chat:
        with pytest.raises(nomyo.UnsupportedContentEncodingError, match="Content-Encoding"):
            await chat.create(model="m", messages=USER)
    assert peer.posts == 0


@pytest.mark.parametrize("codings", REFUSED)
async def test_compressed_envelope_is_refused_and_not_retried(make_chat, peer, codings):
    attempts = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/pki/public_key":
            return peer.handle(request)
        attempts.append(request)
        return raw_response(200, gzip.compress(b"{}"), {"content-encoding": codings})

    async with make_chat(transport=httpx2.MockTransport(handle), max_retries=3) as chat:
        with pytest.raises(nomyo.UnsupportedContentEncodingError) as refused:
            await chat.create(model="m", messages=USER)
    assert len(attempts) == 1
    assert isinstance(refused.value, nomyo.ResponseFormatError)


async def test_repeated_content_encoding_fields_all_count(make_chat, peer):
    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/pki/public_key":
            return peer.handle(request)
        headers = [("content-encoding", "identity"), ("content-encoding", "gzip")]
        return httpx2.Response(200, content=b"x", headers=headers)

    async with make_chat(transport=httpx2.MockTransport(handle)) as chat:
        with pytest.raises(nomyo.UnsupportedContentEncodingError):
            await chat.create(model="m", messages=USER)


@pytest.mark.parametrize("codings", ["identity", "Identity", " identity ", "identity, identity"])
async def test_explicit_identity_is_accepted(make_chat, peer, codings):
    def handle(request: httpx2.Request) -> httpx2.Response:
        response = peer.handle(request)
        return raw_response(response.status_code, response.content, {"content-encoding": codings})

    async with make_chat(transport=httpx2.MockTransport(handle)) as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["choices"][0]["message"]["content"] == "echo: encoding probe"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, nomyo.InvalidRequestError),
        (401, nomyo.AuthenticationError),
        (403, nomyo.ForbiddenError),
        (429, nomyo.RateLimitError),
        (503, nomyo.ServiceUnavailableError),
    ],
)
async def test_compressed_error_body_is_dropped_and_the_status_error_raised(
    make_chat, peer, code, error
):
    body = gzip.compress(b'{"detail": "compressed detail"}')
    peer.script = [raw_response(code, body, {"content-encoding": "gzip"})]
    async with make_chat(max_retries=0) as chat:
        with pytest.raises(error) as raised:
            await chat.create(model="m", messages=USER)
    assert raised.value.status_code == code
    assert raised.value.error_details is None
    assert "compressed detail" not in str(raised.value)


@pytest.mark.parametrize("status", [200, 503])
@pytest.mark.parametrize(
    "codings", ["Marker-7f3a", "gzip, Marker-7f3a", "x-Marker-7f3a-gzip", "br;Marker-7f3a"]
)
async def test_content_encoding_value_is_not_quoted_in_errors_or_logs(
    make_chat, peer, caplog, codings, status
):
    # No header value reaches an exception or a log: a refused Content-Encoding is named only
    # when it is a registered coding, never as the server's own text.
    caplog.set_level("DEBUG")

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/pki/public_key":
            return peer.handle(request)
        return raw_response(status, gzip.compress(b"{}"), {"content-encoding": codings})

    async with make_chat(transport=httpx2.MockTransport(handle), max_retries=0) as chat:
        with pytest.raises((nomyo.UnsupportedContentEncodingError, nomyo.APIError)) as refused:
            await chat.create(model="m", messages=USER)
    said = f"{refused.value!s} {refused.value!r} {refused.value.args!r}"
    assert "marker" not in said.lower()
    assert all("marker" not in r.getMessage().lower() for r in caplog.records)
    if status == 200:
        assert isinstance(refused.value, nomyo.UnsupportedContentEncodingError)
