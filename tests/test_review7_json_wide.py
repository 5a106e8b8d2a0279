"""Review of the reader's way to a non-ASCII ``str`` through ``wchar_t`` (``json_wide``,
``pystr::from_wide``).

A grid of string bodies: a non-ASCII lead (so that the new decoder runs), a run of ASCII of
every length 0..70 (across the 8- and 16-unit steps and the 32-byte blocks of the room
estimate), then one piece (every escape kind, pairs, reversed and lone surrogates, every
plane raw, U+FEFF, U+0000, U+FFFF, U+10FFFF), in a value, a key and an array. A valid body
reads as ``json.loads`` reads it, as an exact ``str``; an invalid one (bad or truncated
escapes, overlong, surrogate, 5- and 6-byte UTF-8, stray bytes, control characters) gets the
error the reader gave before this decoder existed: the table below was taken from the core
built at ad2f167 over this same grid, where the error's offset is the piece's start plus a
fixed step.
"""

from __future__ import annotations

import json

import pytest
from tests.core._probes import probes_module

from nomyo_native import _core

_testing = probes_module()

LEADS = [b"\\u00e9", "漢".encode() + b"\\n", b"\\ud800", "🔐".encode() + b"\\t", b"\\uD83D\\uDE00"]
PADS = range(71)
# (prefix, suffix) of the document around the string body: a value, an array element, a key,
# an object member's value.
SHAPES = [(b'"', b'"'), (b'["x", "', b'"]'), (b'{"', b'": 1}'), (b'{"content": "', b'"}')]

VALID = [
    b"\\u00e9", b"\\u00E9", b"\\u0100", b"\\uffff", b"\\uFEFF", b"\\u0000", b"\\u007f",
    b"\\u0080", b"\\ud800", b"\\udbff", b"\\udc00", b"\\uDFFF", b"\\ud83d\\ude00",
    b"\\uDBFF\\uDFFF", b"\\udc00\\ud800", b"\\ud800\\ud800", b"\\ud800\\udc00",
    b"\\ud800\\u0041", b"\\ud800\\n", b'\\"', b"\\\\", b"\\/", b"\\b\\f\\n\\r\\t", b"\\\\u00e9",
    b"\x7f", "é".encode(), "ÿ".encode(), "Ā".encode(), "漢".encode(), "\uffff".encode(),
    "\ufeff".encode(), "🔐".encode(), "\U0010ffff".encode(), "\U00010000".encode(),
    "é漢🔐é".encode(),
]  # fmt: skip

# Each invalid piece: the reader's problem and where it names it, as an offset from the
# piece's start ("end": the end of the input), for a terminated and an unterminated body.
# "\\u" and "\\u12" are "truncated" when fewer than four bytes follow the "u" in the whole
# input, "invalid" otherwise (see _expected_error).
_UTF8 = "invalid UTF-8 in a string"
_CONTROL = "control character in a string"
_BAD_ESCAPE = "invalid escape"
_BAD_HEX = "invalid \\u escape"
INVALID: dict[bytes, tuple[tuple[str, int | str], tuple[str, int | str]]] = {
    b"\\uZZZZ": ((_BAD_HEX, 0), (_BAD_HEX, 0)),
    b"\\u12G4": ((_BAD_HEX, 0), (_BAD_HEX, 0)),
    b"\\uD80g": ((_BAD_HEX, 0), (_BAD_HEX, 0)),
    b"\\ud800\\uZZZZ": ((_BAD_HEX, 6), (_BAD_HEX, 6)),
    b"\\": (("unterminated string", "end"), ("unterminated escape", 0)),
    b"\\ud800\\": (("unterminated string", "end"), ("unterminated escape", 6)),
    b"\\ud800\\x": ((_BAD_ESCAPE, 6), (_BAD_ESCAPE, 6)),
    b"\\x": ((_BAD_ESCAPE, 0), (_BAD_ESCAPE, 0)),
    b"\\U00e9": ((_BAD_ESCAPE, 0), (_BAD_ESCAPE, 0)),
    b"\\0": ((_BAD_ESCAPE, 0), (_BAD_ESCAPE, 0)),
    b"\\'": ((_BAD_ESCAPE, 0), (_BAD_ESCAPE, 0)),
    b"\x00": ((_CONTROL, 0), (_CONTROL, 0)),
    b"\x01": ((_CONTROL, 0), (_CONTROL, 0)),
    b"\x1f": ((_CONTROL, 0), (_CONTROL, 0)),
    b"\n": ((_CONTROL, 0), (_CONTROL, 0)),
    b"\xc3\x01": ((_CONTROL, 1), (_CONTROL, 1)),
    b"\\u00e9\x7f\x1f": ((_CONTROL, 7), (_CONTROL, 7)),
    **{
        raw: ((_UTF8, 0), ("unterminated string", "end"))
        for raw in [
            b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xc3(", b"\xe0\x80\x80",
            b"\xe0\x9f\xbf", b"\xe6\xbc", b"\xe2(\xa1", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf0\x9f\x94", b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"\xfe",
            b"\xff",
        ]
    },
}  # fmt: skip
TRUNCATABLE = [b"\\u", b"\\u12", b"\\ud800\\u12"]


def _documents(piece: bytes, terminated: bool) -> list[tuple[bytes, int]]:
    """Every document of the grid for ``piece``, with the offset where the piece starts."""
    out = []
    for lead in LEADS:
        for pad in PADS:
            for prefix, suffix in SHAPES if terminated else SHAPES[:1]:
                head = prefix + lead + b"a" * pad
                out.append((head + piece + (suffix if terminated else b""), len(head)))
    return out


def _loads(document: bytes) -> object:
    try:
        return _testing.json_loads(document)
    except _core.EnvelopeError as error:
        return str(error)


def _assert_exact_types(ours: object, theirs: object) -> None:
    """Same structure with the same exact types (a ``str`` subclass would compare equal)."""
    assert type(ours) is type(theirs)
    if isinstance(ours, dict):
        assert isinstance(theirs, dict)
        for (k1, v1), (k2, v2) in zip(ours.items(), theirs.items(), strict=True):
            assert type(k1) is type(k2) is str
            _assert_exact_types(v1, v2)
    elif isinstance(ours, list):
        assert isinstance(theirs, list)
        for v1, v2 in zip(ours, theirs, strict=True):
            _assert_exact_types(v1, v2)


@pytest.mark.parametrize("piece", VALID, ids=repr)
def test_a_valid_piece_after_every_pad_reads_as_json_loads_reads_it(piece: bytes) -> None:
    for document, _ in _documents(piece, terminated=True):
        expected = json.loads(document.decode())
        ours = _testing.json_loads(document)
        assert ours == expected, document
        _assert_exact_types(ours, expected)


def _expected_error(document: bytes, start: int, problem: str, where: int | str) -> str:
    at = len(document) if where == "end" else start + int(where)
    path = {b'"': "$", b"[": "$[1]", b'{"content"': "$.content", b"{": "$.<key 1>"}
    shape = next(v for k, v in path.items() if document.startswith(k))
    return f"invalid JSON payload: {problem} at byte {at} (path {shape})"


@pytest.mark.parametrize("piece", list(INVALID), ids=repr)
@pytest.mark.parametrize("terminated", [True, False])
def test_an_invalid_piece_gets_the_error_the_reader_gave_before(
    piece: bytes, terminated: bool
) -> None:
    problem, where = INVALID[piece][0 if terminated else 1]
    for document, start in _documents(piece, terminated):
        assert _loads(document) == _expected_error(document, start, problem, where), document


@pytest.mark.parametrize("piece", TRUNCATABLE, ids=repr)
@pytest.mark.parametrize("terminated", [True, False])
def test_a_short_u_escape_is_truncated_at_the_end_and_invalid_before_it(
    piece: bytes, terminated: bool
) -> None:
    escape = piece.rindex(b"\\u")
    for document, start in _documents(piece, terminated):
        after_u = len(document) - (start + escape + 2)
        problem = "truncated \\u escape" if after_u < 4 else "invalid \\u escape"
        expected = _expected_error(document, start, problem, escape)
        assert _loads(document) == expected, document
