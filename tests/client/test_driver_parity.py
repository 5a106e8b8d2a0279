"""What the adversarial review of the client split found the two drivers doing differently:
the async client and the sync one must refuse, fail and report alike."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization

import nomyo_native as nomyo

from .disclosure import everything_said_about
from .peer import seal_to

USER = [{"role": "user", "content": "both drivers"}]


def test_a_sync_only_transport_is_refused_by_the_async_client_at_construction():
    # The sync client refuses an async transport up front; the async client must not accept a
    # sync one only to fail at the first request with an AttributeError.
    with pytest.raises(TypeError, match="asynchronous httpx2 transport"):
        nomyo.SecureChatCompletion(transport=httpx2.HTTPTransport())
    with pytest.raises(TypeError, match="asynchronous httpx2 transport"):
        nomyo.SecureCompletionClient(transport=httpx2.HTTPTransport())


def test_a_transport_of_both_kinds_serves_either_client():
    transport = httpx2.MockTransport(lambda request: httpx2.Response(500))
    for cls in (nomyo.SecureChatCompletion, nomyo.SyncSecureChatCompletion):
        cls(transport=transport).close()


NAME, PASSWORD = "proxyuser7", "Pw0rd-5ecret@x"
BASIC_TOKEN = base64.b64encode(f"{NAME}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("status", [400, 401, 403, 500])
def test_a_server_quoting_the_basic_credentials_of_the_url_gets_them_scrubbed(kind, status):
    # The URL's user:password go out as an Authorization: Basic header; a server that quotes
    # the header it got (as one quoting a bearer token does) must not put them, base64 or not,
    # into the exception.
    def answer(request: httpx2.Request) -> httpx2.Response:
        quoted = request.headers.get("authorization", "")
        assert quoted == f"Basic {BASIC_TOKEN}"
        return httpx2.Response(status, json={"detail": f"credentials refused: {quoted}"})

    url = f"https://{NAME}:{urllib.parse.quote(PASSWORD, safe='')}@peer.test"
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    chat = cls(base_url=url, max_retries=0, transport=httpx2.MockTransport(answer))
    with pytest.raises(nomyo.APIError) as caught:
        call = chat.client.fetch_server_public_key()
        if kind == "async":
            asyncio.run(call)
    said = everything_said_about(caught.value)
    assert caught.value.status_code == status
    assert "credentials refused" in said
    for secret in (BASIC_TOKEN, PASSWORD, NAME):
        assert secret not in said


def test_the_sync_client_has_every_public_method_of_the_async_one():
    # Before the split, SyncSecureChatCompletion.client was a SecureCompletionClient; its
    # blocking twin must not silently lose a method (the a-prefixed async spellings aside).
    from nomyo_native._sync_client import SyncCompletionClient
    from nomyo_native.client import SecureCompletionClient

    public = {name for name in dir(SecureCompletionClient) if not name.startswith("_")}
    async_only = {name for name in public if name.startswith("a") and name[1:] in public}
    missing = sorted(public - async_only - set(dir(SyncCompletionClient)))
    assert missing == []


def test_the_sync_clients_methods_take_the_async_ones_parameters():
    # A call written for one client runs on the other: the same parameter names, kinds and
    # defaults on every public method both have.
    import inspect

    from nomyo_native._sync_client import SyncCompletionClient
    from nomyo_native.client import SecureCompletionClient

    def parameters(method: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]

    compared = []
    for name in dir(SecureCompletionClient):
        method = getattr(SecureCompletionClient, name)
        twin = getattr(SyncCompletionClient, name, None)
        if name.startswith("_") or not inspect.isfunction(method) or twin is None:
            continue
        assert parameters(twin) == parameters(method), name
        compared.append(name)
    assert {"send_secure_request", "send_sealed_request", "decrypt_response"} <= set(compared)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_encrypt_payload_and_decrypt_response_on_both_drivers(peer, kind):
    # The caller seals, sends and opens by itself (nomyo 0.2.9's lower-level API).
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    chat = cls(base_url="https://peer.test", key_size=2048, transport=peer.transport())
    client = chat.client

    def run(call: Any) -> Any:
        return asyncio.run(call) if kind == "async" else call

    client.generate_keys()  # plain on both (nomyo 0.2.9's is not a coroutine)
    envelope = run(client.encrypt_payload({"model": "m", "messages": USER}))
    assert isinstance(envelope, bytes) and b'"encrypted_payload"' in envelope
    with pytest.raises(ValueError, match="Payload must be a dictionary"):
        run(client.encrypt_payload([]))
    with pytest.raises(ValueError, match="Empty encrypted response"):
        run(client.decrypt_response(b"", "p-1"))
    with pytest.raises(nomyo.SecurityError):
        run(client.decrypt_response(b'{"version": "1.0"}', "p-1"))
    own_key = serialization.load_pem_public_key(client.public_key_pem.encode())
    answer = {"id": "c", "choices": [], "_metadata": {"payload_id": "p-1", "is_encrypted": 0}}
    opened = run(client.decrypt_response(seal_to(own_key, answer), "p-1"))
    assert opened["_metadata"]["payload_id"] == "p-1"
    assert opened["_metadata"]["is_encrypted"] is True  # the client's own, not the server's
    with pytest.raises(nomyo.SecurityError):  # another request's answer
        run(client.decrypt_response(seal_to(own_key, answer), "p-2"))
    chat.dispose()
    with pytest.raises(nomyo.ClientClosedError):
        run(client.encrypt_payload({"model": "m", "messages": USER}))


@pytest.mark.parametrize("cls", [nomyo.SecureChatCompletion, nomyo.SyncSecureChatCompletion])
@pytest.mark.parametrize("name", ["bogus", "router_url", "_keyring"])
def test_an_unknown_keyword_is_the_type_error_naming_the_class_called(cls, name):
    # nomyo 0.2.9's SecureChatCompletion(bogus=1) says so in Python's words; neither driver
    # may name the private class its options go to (ClientOptions, SecureCompletionClient).
    with pytest.raises(TypeError) as caught:
        cls(**{name: 1})
    assert str(caught.value) == (
        f"{cls.__name__}.__init__() got an unexpected keyword argument {name!r}"
    )


class _Trickle:
    """A 200 whose body comes a few bytes at a time for 10 s: through a custom transport (no
    socket, so no per-read timeout), only the attempt's deadline can end it earlier."""

    LIMIT = 200

    def __init__(self, server_pem: bytes) -> None:
        self.server_pem = server_pem
        self.chunks = 0

    def _answer(self, request: httpx2.Request, body: Any) -> httpx2.Response:
        if request.url.path == "/pki/public_key":
            return httpx2.Response(200, content=self.server_pem)
        return httpx2.Response(200, content=body)

    def sync(self) -> httpx2.MockTransport:
        def body() -> Any:
            while self.chunks < self.LIMIT:
                self.chunks += 1
                time.sleep(0.05)
                yield b"{ "

        return httpx2.MockTransport(lambda request: self._answer(request, body()))

    def asynchronous(self) -> httpx2.MockTransport:
        async def body() -> Any:
            while self.chunks < self.LIMIT:
                self.chunks += 1
                await asyncio.sleep(0.05)
                yield b"{ "

        return httpx2.MockTransport(lambda request: self._answer(request, body()))


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_trickling_body_from_a_custom_transport_is_cut_at_the_deadline(peer_key, kind):
    server_pem = peer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    trickle = _Trickle(server_pem)
    options: dict[str, Any] = {"key_size": 2048, "max_retries": 0, "deadline": 1.0}
    if kind == "sync":
        chat: Any = nomyo.SyncSecureChatCompletion(transport=trickle.sync(), **options)
        call = lambda: chat.create(model="m", messages=USER)  # noqa: E731
    else:
        chat = nomyo.SecureChatCompletion(transport=trickle.asynchronous(), **options)
        call = lambda: asyncio.run(chat.create(model="m", messages=USER))  # noqa: E731
    with pytest.raises(nomyo.APIConnectionError, match="deadline"):
        call()
    # At 20 chunks a second, the 1 s deadline ends it after about 20, long before the end.
    assert trickle.chunks < trickle.LIMIT
    chat.close()


@pytest.mark.parametrize("cls", [nomyo.SecureChatCompletion, nomyo.SyncSecureChatCompletion])
def test_an_ssl_cert_file_naming_no_file_is_a_clear_error(cls, monkeypatch, tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    with pytest.raises(FileNotFoundError, match="SSL_CERT_FILE") as caught:
        cls(base_url="https://peer.test")
    assert str(missing) in str(caught.value)


# ---- the async driver builds its requests itself (no httpx2.AsyncClient.send) ----------------


class _Recorder:
    """Answers the server key with a cookie on the first fetch; records every request."""

    def __init__(self, server_pem: bytes) -> None:
        self.server_pem = server_pem
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        cookie = {"Set-Cookie": "route=r7; Path=/"} if len(self.requests) == 1 else {}
        return httpx2.Response(401, headers=cookie, content=b"who are you")


def _heads(kind: str, peer_key: Any, **options: Any) -> list[httpx2.Request]:
    server_pem = peer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    recorder = _Recorder(server_pem)
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    chat = cls(max_retries=0, transport=httpx2.MockTransport(recorder), **options)

    async def twice() -> None:  # on one loop: its pool (and cookie jar) serves both
        for _ in range(2):
            with pytest.raises(nomyo.AuthenticationError):
                await chat.client.fetch_server_public_key()

    if kind == "async":
        asyncio.run(twice())
    else:
        for _ in range(2):
            with pytest.raises(nomyo.AuthenticationError):
                chat.client.fetch_server_public_key()
    chat.close()
    return recorder.requests


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"base_url": f"https://{NAME}:{urllib.parse.quote(PASSWORD, safe='')}@peer.test:8443"},
        {"timeout": httpx2.Timeout(3.0, connect=1.5)},
    ],
)
def test_the_async_driver_sends_the_request_head_httpx2s_client_sends(peer_key, options):
    # Both drivers must put the same head on the wire (default headers in order, Host, Basic
    # auth of the URL, cookies the server set), with the same timeouts for the transport; that
    # it is httpx2.Client's head is test_both_drivers_send_what_httpx2s_client_sends.
    sent = {kind: _heads(kind, peer_key, **options) for kind in ("async", "sync")}
    for ours, httpx2s in zip(sent["async"], sent["sync"], strict=True):
        assert ours.method == httpx2s.method
        assert ours.url == httpx2s.url
        assert ours.headers.raw == httpx2s.headers.raw
        assert ours.extensions["timeout"] == httpx2s.extensions["timeout"]
    second = sent["async"][1]
    assert second.headers["cookie"] == "route=r7"
    assert ("authorization" in second.headers) == ("base_url" in options)


class _PostRecorder(_Recorder):
    """Serves the server key; answers each completion POST 401, with a cookie the first time
    (so the second POST carries it)."""

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET":
            return httpx2.Response(200, content=self.server_pem)
        return super().__call__(request)


def _posts(kind: str, peer_key: Any, key_dir: Any, **options: Any) -> list[httpx2.Request]:
    server_pem = peer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    recorder = _PostRecorder(server_pem)
    cls = nomyo.SyncSecureChatCompletion if kind == "sync" else nomyo.SecureChatCompletion
    transport = httpx2.MockTransport(recorder)
    chat = cls(
        max_retries=0,
        transport=transport,
        key_dir=str(key_dir),
        key_password="parity-pw",
        **options,
    )
    payload = {"model": "m", "messages": USER}
    calls = [{"api_key": None, "security_tier": None}, {"api_key": "sk-7", "security_tier": "high"}]

    async def each() -> None:  # on one loop: its pool (and cookie jar) serves every call
        for call in calls:
            with pytest.raises(nomyo.AuthenticationError):
                await chat.client.send_secure_request(payload, "p-1", **call)

    if kind == "async":
        asyncio.run(each())
    else:
        for call in calls:
            with pytest.raises(nomyo.AuthenticationError):
                chat.client.send_secure_request(payload, "p-1", **call)
    chat.close()
    return [request for request in recorder.requests if request.method == "POST"]


@pytest.mark.parametrize(
    "options",
    [
        {"key_size": 2048},
        {"key_size": 2048, "api_key": "sk-client"},
        {
            "key_size": 2048,
            "base_url": f"https://{NAME}:{urllib.parse.quote(PASSWORD, safe='')}@peer.test:8443",
        },
        {"key_size": 2048, "timeout": httpx2.Timeout(3.0, connect=1.5)},
    ],
)
def test_the_async_driver_sends_the_completion_head_httpx2s_client_sends(
    peer_key, tmp_path, options
):
    # The completion POST's head is built without httpx2's header merging when there is no
    # cookie or Basic auth to add: both drivers must send the same head, byte for byte and in
    # order, and the body sealed (that it is httpx2.Client's head:
    # test_both_drivers_send_what_httpx2s_client_sends).
    sent = {
        kind: _posts(kind, peer_key, tmp_path / "keys", **options) for kind in ("async", "sync")
    }
    assert len(sent["async"]) == len(sent["sync"]) == 2
    for ours, httpx2s in zip(sent["async"], sent["sync"], strict=True):
        assert ours.method == httpx2s.method == "POST"
        assert ours.url == httpx2s.url
        assert ours.headers.raw == httpx2s.headers.raw
        assert ours.extensions["timeout"] == httpx2s.extensions["timeout"]
        assert ours.headers["content-length"] == str(len(ours.content))
        assert ours.content.startswith(b"{")
    first, second = sent["async"]
    assert "cookie" not in first.headers
    assert second.headers["cookie"] == "route=r7"
    # The URL's Basic credentials take the Authorization header, as httpx2's auth flow does.
    expected = f"Basic {BASIC_TOKEN}" if "base_url" in options else "Bearer sk-7"
    assert second.headers["authorization"] == expected
    assert second.headers["x-security-tier"] == "high"
    assert first.headers["accept-encoding"] == "identity"


# What the clients hand their driver: (method, path, headers, content), in this order.
_DRIVER_CALLS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/pki/public_key", {"Accept": "text/plain", "Accept-Encoding": "identity"}, None),
    (
        "POST",
        "/v1/chat/secure_completion",
        {
            "X-Payload-ID": "p-1",
            "X-Public-Key": "-----BEGIN%20PUBLIC%20KEY-----",
            "Content-Type": "application/octet-stream",
            "Accept-Encoding": "identity",
        },
        b'{"version": "1.0"}',
    ),
    (
        "POST",
        "/v1/chat/secure_completion",
        {
            "X-Payload-ID": "p-2",
            "X-Public-Key": "-----BEGIN%20PUBLIC%20KEY-----",
            "Content-Type": "application/octet-stream",
            "Authorization": "Bearer sk-7",
            "X-Security-Tier": "high",
            "Accept-Encoding": "identity",
        },
        b'{"version": "1.0", "more": true}',
    ),
]


class _CookieSetter:
    """Answers 401 to everything, setting a cookie on the second request (so that the third
    carries it); records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        cookie = {"Set-Cookie": "route=r7; Path=/"} if len(self.requests) == 2 else {}
        return httpx2.Response(401, headers=cookie, content=b"who are you")


@pytest.mark.parametrize("basic", [False, True], ids=["no-auth", "basic-auth"])
@pytest.mark.parametrize("timeout", [30.0, httpx2.Timeout(3.0, connect=1.5)], ids=str)
def test_both_drivers_send_what_httpx2s_client_sends(basic, timeout):
    # Neither driver goes through httpx2's Client.send (its per-request layers cost ~40 us):
    # each builds the request itself. Given the same settings and calls, both must put on the
    # wire what httpx2.Client does: the same method, URL, head (byte for byte, in order: Host,
    # defaults, the call's headers, cookies the server set, Content-Length, Basic auth), body
    # and timeouts.
    from nomyo_native._async_driver import AsyncDriver
    from nomyo_native._sync_driver import SyncDriver

    auth = httpx2.BasicAuth(NAME, PASSWORD) if basic else None
    base = "https://peer.test:8443"
    recorders = {kind: _CookieSetter() for kind in ("httpx2", "async", "sync")}
    reference = httpx2.Client(
        timeout=timeout,
        auth=auth,
        follow_redirects=False,
        transport=httpx2.MockTransport(recorders["httpx2"]),
    )
    options: dict[str, Any] = {"timeout": timeout, "ssl_context": None, "auth": auth}
    sync = SyncDriver(transport=httpx2.MockTransport(recorders["sync"]), sleep=None, **options)
    asynchronous = AsyncDriver(
        transport=httpx2.MockTransport(recorders["async"]), sleep=None, **options
    )

    async def send_async() -> None:
        for method, path, headers, content in _DRIVER_CALLS:
            answer = await asynchronous.send(method, base + path, headers, content, 1024, 10.0)
            assert answer.status == 401

    for method, path, headers, content in _DRIVER_CALLS:
        with reference.stream(method, base + path, headers=headers, content=content) as response:
            response.read()
        assert sync.send(method, base + path, headers, content, 1024, 10.0).status == 401
    asyncio.run(send_async())
    reference.close()
    sync.close()
    expected = recorders["httpx2"].requests
    assert len(expected) == len(_DRIVER_CALLS)
    assert expected[2].headers["cookie"] == "route=r7"
    assert ("authorization" in expected[0].headers) == basic
    for kind in ("async", "sync"):
        sent = recorders[kind].requests
        assert len(sent) == len(expected), kind
        for ours, theirs in zip(sent, expected, strict=True):
            assert ours.method == theirs.method, kind
            assert ours.url == theirs.url, kind
            assert ours.headers.raw == theirs.headers.raw, kind
            assert ours.read() == theirs.read(), kind
            assert ours.extensions["timeout"] == theirs.extensions["timeout"], kind


def _sent_by_each(
    method: str, url: str, headers: dict[str, str], content: bytes | None
) -> dict[str, httpx2.Request]:
    """The request httpx2.Client and each driver (fresh, default settings) send for one call."""
    from nomyo_native._async_driver import AsyncDriver
    from nomyo_native._sync_driver import SyncDriver

    recorders = {kind: _CookieSetter() for kind in ("httpx2", "async", "sync")}
    with httpx2.Client(
        timeout=30.0, follow_redirects=False, transport=httpx2.MockTransport(recorders["httpx2"])
    ) as reference:
        with reference.stream(method, url, headers=headers, content=content) as response:
            response.read()
    options: dict[str, Any] = {"timeout": 30.0, "ssl_context": None, "auth": None, "sleep": None}
    sync = SyncDriver(transport=httpx2.MockTransport(recorders["sync"]), **options)
    assert sync.send(method, url, headers, content, 1024, 10.0).status == 401
    sync.close()
    asynchronous = AsyncDriver(transport=httpx2.MockTransport(recorders["async"]), **options)
    answer = asyncio.run(asynchronous.send(method, url, headers, content, 1024, 10.0))
    assert answer.status == 401
    return {kind: recorder.requests[0] for kind, recorder in recorders.items()}


def test_an_empty_body_gets_the_head_httpx2s_client_sends():
    # httpx2 gives an empty body no Content-Length of its own: the one it adds comes right
    # after Host, not after the other headers (a caller's sealer may return b"").
    sent = _sent_by_each("POST", "https://peer.test/v1/x", {"X-Payload-ID": "p-1"}, b"")
    assert sent["httpx2"].headers["content-length"] == "0"
    for kind in ("async", "sync"):
        assert sent[kind].headers.raw == sent["httpx2"].headers.raw, kind
        assert sent[kind].read() == b"", kind


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Payload-ID": "p-1", "x-payload-id": "p-2"},
        {"Accept-Encoding": "identity", "accept-encoding": "gzip"},  # a default's name, twice
        {"x-a": "1", "X-B": "2", "X-A": "3"},
    ],
    ids=["twice", "a-default-twice", "apart"],
)
def test_a_name_given_twice_in_two_cases_is_sent_as_httpx2s_client_sends_it(headers):
    # httpx2 keeps both entries of a name given twice in two cases (after the defaults it
    # replaces): the fast head must not fold them into one.
    sent = _sent_by_each("POST", "https://peer.test/v1/x", headers, b"{}")
    assert len(sent["httpx2"].headers.get_list(next(iter(headers)))) == 2
    for kind in ("async", "sync"):
        assert sent[kind].headers.raw == sent["httpx2"].headers.raw, kind


@pytest.mark.parametrize("content", [bytearray(b"{}"), memoryview(b"{}")], ids=type)
def test_a_body_that_is_not_bytes_fails_as_on_httpx2s_clients(content):
    # A caller's sealer must return bytes; httpx2 takes anything else for an iterable of
    # chunks, which its async client refuses and its sync one fails on. Both drivers leave
    # such a body to httpx2 and fail as its client of their kind does, instead of sending it.
    from nomyo_native._async_driver import AsyncDriver
    from nomyo_native._sync_driver import SyncDriver

    url, headers = "https://peer.test/v1/x", {"X-Payload-ID": "p-1"}
    sent: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200)

    transport = httpx2.MockTransport(answer)
    options: dict[str, Any] = {"timeout": 30.0, "ssl_context": None, "auth": None, "sleep": None}

    async def on_async_client() -> None:
        async with httpx2.AsyncClient(transport=transport) as reference:
            await reference.post(url, headers=headers, content=content)

    with httpx2.Client(transport=transport) as reference, pytest.raises(Exception) as expected:
        reference.post(url, headers=headers, content=content)
    sync = SyncDriver(transport=transport, **options)
    with pytest.raises(Exception) as caught:
        sync.send("POST", url, headers, content, 1024, 10.0)
    assert (type(caught.value), str(caught.value)) == (type(expected.value), str(expected.value))
    sync.close()

    with pytest.raises(Exception) as expected:
        asyncio.run(on_async_client())
    asynchronous = AsyncDriver(transport=transport, **options)
    with pytest.raises(Exception) as caught:
        asyncio.run(asynchronous.send("POST", url, headers, content, 1024, 10.0))
    assert (type(caught.value), str(caught.value)) == (type(expected.value), str(expected.value))
    assert sent == []  # nothing reached the server


def test_a_cancelled_attempt_closes_its_response(peer_key):
    # Cancelled while reading the body (the caller's own timeout, a task group failing): the
    # response is closed at once, so the pool gets its connection back or drops it.
    started = asyncio.Event()
    closed: list[bool] = []

    class Stalling(httpx2.AsyncByteStream):
        async def __aiter__(self) -> Any:
            started.set()
            await asyncio.Event().wait()
            yield b""  # pragma: no cover

        async def aclose(self) -> None:
            closed.append(True)

    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, stream=Stalling()))

    async def scenario() -> None:
        chat = nomyo.SecureChatCompletion(transport=transport, max_retries=0)
        task = asyncio.ensure_future(chat.client.fetch_server_public_key())
        await started.wait()
        assert not closed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await chat.aclose()

    asyncio.run(scenario())
    assert closed == [True]


class _Unread(httpx2.AsyncByteStream):
    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> Any:
        yield b"\x1f\x8b never read"

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("status", "error"),
    [(200, nomyo.UnsupportedContentEncodingError), (503, nomyo.ServiceUnavailableError)],
)
def test_a_response_left_unread_is_closed(status, error):
    # A compressed answer is refused (200) or dropped unread (an error status): either way its
    # connection must not stay checked out of the pool.
    streams: list[_Unread] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        streams.append(_Unread())
        return httpx2.Response(status, headers={"Content-Encoding": "gzip"}, stream=streams[-1])

    chat = nomyo.SecureChatCompletion(transport=httpx2.MockTransport(answer), max_retries=0)
    with pytest.raises(error):
        asyncio.run(chat.client.fetch_server_public_key())
    assert [stream.closed for stream in streams] == [True]
