"""The reader's string scan (json_scan::plain_run): one pass finds where a run of plain string
bytes ends and whether it is ASCII; only a run with a byte above 0x7F is checked as UTF-8. The
scan reads 32-byte chunks, then 8-byte words, then bytes: every case below is put at every
offset across those steps, and the reader must agree with ``json.loads`` byte for byte, accept
what it accepts, and refuse the rest with the same typed error at the same offset as before."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomyo_native import _core

from ._probes import probes_module

_testing = probes_module()

# Offsets across the scan's steps: bytes, words (8), chunks (32) and the chunk after.
OFFSETS = [*range(0, 20), *range(22, 44), *range(60, 70), 95, 96, 97, 127, 128, 129]
# Non-ASCII characters of each UTF-8 length, and U+007F (the last ASCII one).
CHARACTERS = ["\x7f", "é", "ÿ", "Ω", "€", "漢", "\ufeff", "🔐", "\U0010ffff"]
# Bytes that are not UTF-8: a lone continuation, a bad lead, a truncated sequence, an
# overlong encoding, an encoded surrogate, a code point above U+10FFFF.
INVALID = [
    b"\x80",
    b"\xbf",
    b"\xff",
    b"\xc3",
    b"\xe6\xbc",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90",
]


def loads(document: bytes) -> object:
    return _testing.json_loads(document)


def refused(document: bytes, problem: str, at: int) -> None:
    """`document` is refused with an EnvelopeError naming `problem` at byte `at`."""
    with pytest.raises(_core.EnvelopeError) as info:
        loads(document)
    assert re.search(rf"{re.escape(problem)} at byte {at}\b", str(info.value)), str(info.value)


@pytest.mark.parametrize("character", CHARACTERS)
def test_a_non_ascii_character_at_every_offset_reads_like_json_loads(character: str) -> None:
    for length in (OFFSETS[-1] + 2, 40, 70):
        for at in [o for o in OFFSETS if o < length]:
            text = "a" * at + character + "b" * (length - at)
            for document in (
                json.dumps([text], ensure_ascii=False),  # raw, no escape
                json.dumps([text + "\n"], ensure_ascii=False),  # raw, an escape after it
                json.dumps({text: text}, ensure_ascii=False),  # as a key too
            ):
                assert loads(document.encode()) == json.loads(document), (character, at)


def test_ascii_strings_of_every_length_read_like_json_loads() -> None:
    for length in range(0, 200):
        text = "".join(chr(0x20 + (i * 7) % 0x5F) for i in range(length))
        document = json.dumps([text, {text: length}])
        assert loads(document.encode()) == json.loads(document), length


@pytest.mark.parametrize("bad", INVALID)
def test_invalid_utf8_at_every_offset_is_refused_at_its_byte(bad: bytes) -> None:
    # Behind ASCII, behind valid non-ASCII, and with an escape after it (the escaped path):
    # refused as invalid UTF-8, at the offset of the first byte of the bad sequence.
    for prefix in (b"", "é漢".encode()):
        for at in OFFSETS:
            for after in (b"", b"\\n", b"x" * 40):
                head = b'["' + prefix + b"a" * at
                refused(head + bad + after + b'"]', "invalid UTF-8 in a string", len(head))


@pytest.mark.parametrize("control", [b"\x00", b"\x01", b"\x09", b"\x0a", b"\x1f"])
def test_a_control_character_at_every_offset_is_refused_at_its_byte(control: bytes) -> None:
    for filler in (b"a", "é".encode()):
        for at in OFFSETS:
            head = b'{"k": "' + filler * at
            refused(head + control + b'x"}', "control character in a string", len(head))


def test_a_string_cut_off_at_every_offset_is_unterminated() -> None:
    for filler in (b"a", "é".encode()):
        for at in OFFSETS:
            document = b'"' + filler * at
            refused(document, "unterminated string", len(document))


# Pieces of a string body: ASCII, non-ASCII characters raw or escaped, escapes, and bytes
# that make the body invalid (control characters, bad UTF-8).
_PIECES = st.sampled_from(
    [
        b"a", b"a" * 31, b"a" * 33, b"a" * 64, b" ", b"~", b"\x7f", "é".encode(), "Ω".encode(),
        "漢字".encode(), "🔐".encode(), b"\\n", b"\\\\", b'\\"', b"\\u00e9", b"\\ud83d\\ude00",
        b"\\ud800", b"\x00", b"\x1f", b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\\x",
    ]
)  # fmt: skip


@settings(max_examples=500, deadline=None, derandomize=True)
@given(pad=st.integers(min_value=0, max_value=70), pieces=st.lists(_PIECES, max_size=10))
def test_generated_bodies_are_read_or_refused_like_json_loads(
    pad: int, pieces: list[bytes]
) -> None:
    document = b'["' + b"p" * pad + b"".join(pieces) + b'", 1]'
    try:
        # Strict UTF-8: json.loads(bytes) would let an encoded surrogate through.
        expected = json.loads(document.decode("utf-8"))
    except ValueError:
        with pytest.raises(_core.EnvelopeError):
            loads(document)
        return
    assert loads(document) == expected
