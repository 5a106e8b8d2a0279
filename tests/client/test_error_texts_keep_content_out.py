"""No part of a payload or a decrypted response reaches an exception or a log: not a value, and
not a dict key either (a tool's parameter names, a metadata map, a schema, a response's keys
are the caller's data or plaintext). Secrets are planted in keys and values at several depths,
in both directions, through the whole client: the texts must hold none of them, and must still
name the protocol's own fields and the positions, so that the error stays useful."""

from __future__ import annotations

import logging
import math
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.pyca_envelope import build_envelope

import nomyo_native as nomyo
from nomyo_native import _core

from .disclosure import everything_said_about
from .peer import Peer

SECRET = "Jane-Doe-HIV-positive"
# A non-ASCII one: read by the core as code points, never as the caller's UTF-8.
WIDE_SECRET = "Patiënt-Ελένη-🔐"
USER = [{"role": "user", "content": "hello"}]
DEPTH = _core.MAX_JSON_DEPTH


def _nested_dict(levels: int, key: str) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {key: value}
    return value


def _said_anywhere(exc: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """The exception's whole story, and every log record of the call (messages and tracebacks)."""
    records = caplog.records
    logged = [r.getMessage() for r in records] + [r.exc_text or "" for r in records]
    logged += [logging.Formatter().format(r) for r in records]
    return everything_said_about(exc) + "\n".join(logged)


def _assert_nothing_of(said: str, *secrets: str) -> None:
    for secret in secrets:
        for piece in (secret, *secret.split("-")):
            assert piece not in said, f"{piece!r} was said"


# ---- sealing: the caller's payload ------------------------------------------------------------

# (extra create() arguments, exception class, what the text must say: the rule and the path).
SEAL_CASES: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "not serializable under a schema property named by the caller": (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": SECRET,
                        "parameters": {
                            "type": "object",
                            "properties": {SECRET: {"type": "string", "default": object()}},
                        },
                    },
                }
            ]
        },
        TypeError,
        "$.tools[0].function.parameters.properties.<key 1 of 1>.default: "
        "object of type object is not JSON serializable",
    ),
    "NaN in metadata (no key below it is shown, protocol-named or not)": (
        {"metadata": {"note": SECRET, SECRET: {"content": math.nan}}},
        ValueError,
        "$.metadata.<key 2 of 2>.<key 1 of 1>: NaN and Infinity are not allowed in JSON",
    ),
    "lone surrogate in a value under the caller's key in a message": (
        {"messages": [{"role": "user", "content": "hi", SECRET: SECRET + "\ud800"}]},
        ValueError,
        "$.messages[0].<key 3 of 3>: string contains a lone surrogate",
    ),
    "lone surrogate in the caller's key of a response_format schema": (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": {"properties": {SECRET + "\udfff": {}}}},
            }
        },
        ValueError,
        "$.response_format.json_schema.schema.properties.<key 1 of 1>: "
        "string contains a lone surrogate",
    ),
    "too deep below the caller's keys": (
        {"metadata": _nested_dict(DEPTH + 3, SECRET)},
        ValueError,
        f"nesting deeper than {DEPTH} levels",
    ),
    "a key of a type JSON has no key for": (
        {"tool_choice": {"type": "function", (SECRET, 8675309): "x"}},
        TypeError,
        "$.tool_choice.<key 2 of 2>: dict keys must be str, int, float, bool or None, not tuple",
    ),
    "the caller's int key under a free-form member": (
        {"logit_bias": {8675309: b"\x00" + SECRET.encode()}},
        TypeError,
        "$.logit_bias.<key 1 of 1>: object of type bytes is not JSON serializable",
    ),
    "a non-ASCII key of the caller's, a non-JSON value": (
        {"messages": [*USER, {"role": "tool", WIDE_SECRET: {WIDE_SECRET: {1j}}}]},
        TypeError,
        "$.messages[1].<key 2 of 2>.<key 1 of 1>: object of type set is not JSON serializable",
    ),
}


@pytest.mark.parametrize("case", list(SEAL_CASES))
async def test_a_payload_that_cannot_be_sealed_is_refused_without_its_content(
    make_chat: Callable[..., nomyo.SecureChatCompletion],
    peer: Peer,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    extra, error, expected = SEAL_CASES[case]
    arguments: dict[str, Any] = {"model": "m", "messages": USER, **extra}
    caplog.set_level(logging.DEBUG)
    async with make_chat() as chat:
        with pytest.raises(error) as caught:
            await chat.create(**arguments)
    assert caplog.records, "nothing was logged at DEBUG: the log check would see nothing"
    _assert_nothing_of(_said_anywhere(caught.value, caplog), SECRET, WIDE_SECRET, "8675309")
    assert expected in str(caught.value)
    assert peer.posts == 0  # refused before anything was sent


def test_the_too_deep_payload_names_the_protocol_path_down_to_the_callers_keys() -> None:
    server_key = _core.ServerPublicKey.from_pem(Peer().public_pem.encode())
    payload = {"model": "m", "messages": USER, "metadata": _nested_dict(DEPTH + 3, SECRET)}
    with pytest.raises(ValueError) as caught:
        _core.seal(payload, server_key)
    _assert_nothing_of(everything_said_about(caught.value), SECRET)
    # metadata at the top level, then the member of each of the caller's dicts at depths 2 to
    # DEPTH; the one at depth DEPTH + 1 is refused.
    path = "$.metadata" + ".<key 1 of 1>" * (DEPTH - 1)
    assert str(caught.value) == f"{path}: nesting deeper than {DEPTH} levels"


# ---- opening: the decrypted response ----------------------------------------------------------

S = SECRET.encode()
HEAD = b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'

# (decrypted plaintext, what the text must say: the problem and the path).
OPEN_CASES: dict[str, tuple[bytes, str]] = {
    "malformed: a bad literal in a member named by the server": (
        HEAD + b'"message":{"role":"assistant","content":"' + S + b'","' + S + b'":tru}}]}',
        "invalid literal at byte ",
    ),
    "malformed: no colon after a secret key": (
        HEAD + b'"message":{"' + S + b'" "' + S + b'"}}]}',
        "expected ':' at byte ",
    ),
    "bad UTF-8 in the content": (
        HEAD + b'"message":{"role":"assistant","content":"' + S + b'\xff"}}]}',
        "invalid UTF-8 in a string at byte ",
    ),
    "bad UTF-8 in a value under a secret key of _metadata": (
        b'{"choices":[],"_metadata":{"' + S + b'":{"' + S + b'":"' + S + b'\xc3("}}}',
        "invalid UTF-8 in a string at byte ",
    ),
    "bad UTF-8 in a secret key": (
        HEAD + b'"message":{"role":"assistant","' + S + b'\xed\xa0\x80":1}}]}',
        "invalid UTF-8 in a string at byte ",
    ),
    "a lone surrogate escape followed by bad hex, in a secret key": (
        HEAD + b'"message":{"' + S + b'\\ud800\\u12zz":1}}]}',
        "invalid \\u escape at byte ",
    ),
    "too deep below secret keys": (
        b'{"choices":[{"message":' + (b'{"' + S + b'":') * DEPTH + b"1" + b"}" * (DEPTH + 2),
        f"nesting deeper than {DEPTH} levels at byte ",
    ),
}
# Where each fails: the protocol's names, then positions for the keys that are not theirs.
OPEN_PATHS = {
    "malformed: a bad literal in a member named by the server": (
        "(path $.choices[0].message.<key 3>)"
    ),
    "malformed: no colon after a secret key": "(path $.choices[0].message.<key 1>)",
    "bad UTF-8 in the content": "(path $.choices[0].message.content)",
    "bad UTF-8 in a value under a secret key of _metadata": "(path $._metadata.<key 1>.<key 1>)",
    "bad UTF-8 in a secret key": "(path $.choices[0].message.<key 2>)",
    "a lone surrogate escape followed by bad hex, in a secret key": (
        "(path $.choices[0].message.<key 1>)"
    ),
    "too deep below secret keys": "(path $.choices[0].message" + ".<key 1>" * (DEPTH - 3) + ")",
}


def _answering_with(peer: Peer, plaintext: bytes) -> httpx2.MockTransport:
    """The peer, except that its completion is an envelope of ``plaintext`` as given."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET":
            return peer.handle(request)
        peer.posts += 1
        client_pem = urllib.parse.unquote(request.headers["x-public-key"])
        client_key = serialization.load_pem_public_key(client_pem.encode())
        assert isinstance(client_key, rsa.RSAPublicKey)
        envelope, _key = build_envelope(client_key, plaintext, processed_at=1700000001)
        return httpx2.Response(200, json=envelope)

    return httpx2.MockTransport(handle)


@pytest.fixture(scope="module")
def opener() -> Iterator[nomyo.SecureCompletionClient]:
    client = nomyo.SecureCompletionClient("https://peer.invalid", key_size=2048)
    client.generate_keys()
    yield client
    client.dispose()


@pytest.mark.parametrize("case", list(OPEN_CASES))
async def test_a_response_that_cannot_be_read_is_refused_without_its_content(
    make_chat: Callable[..., nomyo.SecureChatCompletion],
    peer: Peer,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    plaintext, problem = OPEN_CASES[case]
    caplog.set_level(logging.DEBUG)
    async with make_chat(transport=_answering_with(peer, plaintext)) as chat:
        with pytest.raises(nomyo.ResponseFormatError) as caught:
            await chat.create(model="m", messages=USER)
    assert caplog.records, "nothing was logged at DEBUG: the log check would see nothing"
    _assert_nothing_of(_said_anywhere(caught.value, caplog), SECRET)
    text = str(caught.value)
    assert text.startswith("Invalid encrypted response: invalid JSON payload: " + problem)
    assert text.endswith(OPEN_PATHS[case])
    assert peer.posts == 1  # a malformed answer is not asked for again


@pytest.mark.parametrize("case", list(OPEN_CASES))
async def test_decrypt_response_says_the_same_and_nothing_more(
    opener: nomyo.SecureCompletionClient, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    plaintext, problem = OPEN_CASES[case]
    assert opener.public_key_pem is not None
    client_key = serialization.load_pem_public_key(opener.public_key_pem.encode())
    assert isinstance(client_key, rsa.RSAPublicKey)
    envelope, _key = build_envelope(client_key, plaintext, processed_at=1700000001)
    body = httpx2.Response(200, json=envelope).content
    caplog.set_level(logging.DEBUG)
    with pytest.raises(nomyo.ResponseFormatError) as caught:
        await opener.decrypt_response(body, "pid", attestation="off")
    _assert_nothing_of(_said_anywhere(caught.value, caplog), SECRET)
    assert problem in str(caught.value) and str(caught.value).endswith(OPEN_PATHS[case])


# ---- the openai SDK's bytes (RequestBody): offsets only ---------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"model":"m","' + S + b'":"' + S + b'\\ud800"}', "lone surrogate escape in a string"),
        (b'{"model":"m","metadata":{"' + S + b'":NaN}}', "NaN and Infinity are not valid JSON"),
        (b'{"model":"m","' + S + b'\xff":1}', "invalid UTF-8 in a string"),
        (b'{"model":"m","metadata":{"' + S + b'" 1}}', "expected ':'"),
        (b'{"model":"m","x":' + (b'{"' + S + b'":') * (DEPTH + 1) + b"1" + b"}" * (DEPTH + 2),
         f"nesting deeper than {DEPTH} levels"),
    ],
)  # fmt: skip
def test_the_sdks_bytes_are_refused_by_offset_without_their_content(
    body: bytes, problem: str
) -> None:
    with pytest.raises(ValueError) as caught:
        _core.RequestBody(body)
    assert str(caught.value).startswith(f"invalid JSON request body: {problem} at byte ")
    _assert_nothing_of(everything_said_about(caught.value), SECRET)
