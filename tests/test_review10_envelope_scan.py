"""Review 10: the response envelope read the way a strict JSON reader reads it, whichever path
the core takes (a fast scan of the raw bytes, or from_utf8 and serde): member names written with
escapes are the same names (a repeated one is refused, however it is spelt), bytes outside the
strings that are not JSON whitespace are refused, and an escaped value is its unescaped text."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from tests.pyca_envelope import build_envelope

from nomyo_native import _core

PLAINTEXT = json.dumps({"id": "x", "object": "chat.completion", "choices": []}).encode()


@pytest.fixture(scope="module")
def keypair() -> _core.ClientKeyPair:
    return _core.ClientKeyPair.generate(2048)


@pytest.fixture(scope="module")
def envelope(keypair: _core.ClientKeyPair) -> dict[str, object]:
    public = serialization.load_pem_public_key(keypair.public_key_pem.encode())
    built, _ = build_envelope(public, PLAINTEXT)
    return built


def _escaped(name: str, at: int = 1) -> str:
    """``name`` as JSON text with its character at ``at`` written as a \\u escape."""
    return json.dumps(name)[: at + 1] + f"\\u{ord(name[at]):04x}" + json.dumps(name)[at + 2 :]


def _compact(envelope: dict[str, object]) -> str:
    return json.dumps(envelope, separators=(",", ":"))


def _opened(keypair: _core.ClientKeyPair, body: str | bytes) -> object:
    data = body.encode() if isinstance(body, str) else body
    return _core.open_envelope(data, keypair)[0]


def test_the_envelope_as_built_opens(keypair, envelope):
    assert _opened(keypair, _compact(envelope)) == json.loads(PLAINTEXT)


TOP = ["version", "algorithm", "encrypted_aes_key", "key_algorithm", "payload_algorithm"]
INNER = ["ciphertext", "nonce", "tag"]


@pytest.mark.parametrize("name", [*TOP, "encrypted_payload"])
def test_a_top_level_name_written_with_an_escape_is_that_name(keypair, envelope, name):
    text = _compact(envelope).replace(json.dumps(name), _escaped(name), 1)
    assert _escaped(name) in text
    assert _opened(keypair, text) == json.loads(PLAINTEXT)


@pytest.mark.parametrize("name", INNER)
def test_an_inner_name_written_with_an_escape_is_that_name(keypair, envelope, name):
    text = _compact(envelope).replace(json.dumps(name), _escaped(name), 1)
    assert _escaped(name) in text
    assert _opened(keypair, text) == json.loads(PLAINTEXT)


@pytest.mark.parametrize("name", TOP)
@pytest.mark.parametrize("first", ["plain", "escaped"])
def test_a_top_level_name_repeated_in_another_spelling_is_refused(keypair, envelope, name, first):
    # A second member of the same name, its value the same as the first's: the envelope is
    # ambiguous whatever each says, and a reader that took the raw bytes for the name would
    # see two different names.
    value = json.dumps(envelope[name])
    twice = f"{_escaped(name)}:{value},"
    text = _compact(envelope)
    if first == "plain":
        text = text[:-1] + "," + twice[:-1] + "}"
    else:
        text = "{" + twice + text[1:]
    with pytest.raises(_core.EnvelopeError, match=r"ambiguous|repeated|duplicate"):
        _opened(keypair, text)


@pytest.mark.parametrize("name", INNER)
def test_an_inner_name_repeated_in_another_spelling_is_refused(keypair, envelope, name):
    inner = envelope["encrypted_payload"]
    assert isinstance(inner, dict)
    spelled = _compact(inner)[:-1] + f",{_escaped(name)}:{json.dumps(inner[name])}}}"
    text = _compact({**envelope, "encrypted_payload": "@INNER@"}).replace('"@INNER@"', spelled)
    with pytest.raises(_core.EnvelopeError, match=r"ambiguous|repeated|duplicate"):
        _opened(keypair, text)


@pytest.mark.parametrize("junk", [b"\xff", b"\xc3\xa9", b"\x00", b"\x0b", b"\xef\xbb\xbf", b"/**/"])
@pytest.mark.parametrize("where", ["start", "after a colon", "before a comma", "end"])
def test_bytes_outside_the_strings_that_are_not_whitespace_are_refused(
    keypair, envelope, junk, where
):
    text = _compact(envelope).encode()
    if where == "start":
        body = junk + text
    elif where == "end":
        body = text + junk
    elif where == "after a colon":
        at = text.index(b'"ciphertext":') + len(b'"ciphertext":')
        body = text[:at] + junk + text[at:]
    else:
        at = text.index(b',"nonce"')
        body = text[:at] + junk + text[at:]
    with pytest.raises(_core.EnvelopeError):
        _opened(keypair, body)


@pytest.mark.parametrize("name", ["ciphertext", "nonce", "tag", "encrypted_aes_key"])
def test_a_base64_value_with_an_escaped_character_reads_as_its_text(keypair, envelope, name):
    # "\u0041" is "A" to any JSON reader: the value is the same base64 text (an escaped
    # slash, "\/", likewise); a reader of the raw bytes must not take it for something else.
    holder = envelope if name == "encrypted_aes_key" else envelope["encrypted_payload"]
    assert isinstance(holder, dict)
    value = holder[name]
    assert isinstance(value, str)
    at = next(i for i, c in enumerate(value) if c.isalpha())
    spelled = json.dumps(value)[: at + 1] + f"\\u{ord(value[at]):04x}" + json.dumps(value)[at + 2 :]
    text = _compact(envelope).replace(json.dumps(value), spelled, 1)
    assert spelled in text
    assert _opened(keypair, text) == json.loads(PLAINTEXT)


@pytest.mark.parametrize(
    ("member", "accepted"),
    [
        (b'"note":"caf\xc3\xa9 \xf0\x9f\x94\x90"', True),
        (b'"caf\xc3\xa9":[1,{"x":null}]', True),
        (b'"note":"\\u00e9\\ud83d\\udd10"', True),
        (b'"note":"caf\xc3"', False),
        (b'"caf\xff":1', False),
        (b'"note":"\xed\xa0\x80"', False),
    ],
)
@pytest.mark.parametrize("where", ["first", "last", "inner"])
def test_an_unknown_member_is_read_as_strictly_as_the_rest(
    keypair, envelope, member, accepted, where
):
    text = _compact(envelope).encode()
    if where == "first":
        body = b"{" + member + b"," + text[1:]
    elif where == "last":
        body = text[:-1] + b"," + member + b"}"
    else:
        at = text.index(b'"tag":')
        body = text[:at] + member + b"," + text[at:]
    if accepted:
        assert _opened(keypair, body) == json.loads(PLAINTEXT)
    else:
        with pytest.raises(_core.EnvelopeError):
            _opened(keypair, body)
