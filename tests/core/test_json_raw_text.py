"""Long raw (unescaped) non-ASCII strings, as servers that do not escape write them: where the
CPU has the vector steps for raw UTF-8, those beyond Latin-1 are decoded to code points in
locked memory (``utf8_avx512``), Latin-1 ones to their bytes (``latin1_avx512``), instead of
by CPython's UTF-8 decoder. Whatever the text, and
wherever a character of each UTF-8 length, a bad byte or the string's end falls against the
64-byte blocks, the result is ``json.loads``'s and a bad body gets the reader's error at its
byte."""

from __future__ import annotations

import json
import re

import pytest

from nomyo_native import _core

from ._probes import probes_module

_testing = probes_module()

TEXTS = {
    "mixed": "héllo wörld Ελλάδα 漢字 🔐 ",
    "greek": "Καλημέρα κόσμε, η γρήγορη καφέ αλεπού. ",
    "cjk": "漢字かな交じり文 ",
    "emoji": "🔐🔑😀",
    "latin-1": "déjà vu, ça va très bien ",
    "latin-1 edges": "\x80\xbf\xc0\xff\x7f ",
    "latin-1 after ascii": "plain ascii text for a while " * 12 + "é",
    "latin-1 then more": "déjà vu " * 40 + "Ω",
    "edges": "\x7f\x80\u07ff\u0800\ud7ff\ue000\ufffd\uffff\U00010000\U0010ffff",
    "bom": "\ufeff漢",
}
# Around the threshold from which raw strings take the vector step (256 bytes), and longer.
LENGTHS = [250, 255, 256, 257, 300, 1000, 5000, 70_001]


def raw_document(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def text_of(unit: str, length: int) -> str:
    """``unit`` repeated to ``length`` UTF-8 bytes at least, cut at a character."""
    repeated = unit * (length // len(unit.encode()) + 1)
    return repeated.encode()[:length].decode(errors="ignore")


@pytest.mark.parametrize("kind", TEXTS)
@pytest.mark.parametrize("length", LENGTHS)
def test_raw_text_of_every_kind_reads_as_json_loads_reads_it(kind: str, length: int) -> None:
    text = text_of(TEXTS[kind], length)
    for value in (
        [text],
        {"content": text, "after": [text + "x", "y" + text]},
        {text: text},  # a key too
        [text + "\\n" + text],  # escapes after raw text
    ):
        document = raw_document(value)
        ours = _testing.json_loads(document)
        assert ours == json.loads(document), kind
        assert [len(v) for v in ours] == [len(v) for v in json.loads(document)]


@pytest.mark.parametrize("character", ["a", "é", "Ω", "漢", "🔐", "\U0010ffff"])
def test_a_character_of_each_length_at_every_offset_of_two_blocks_reads_right(
    character: str,
) -> None:
    # Every character boundary in the first 140 bytes: the block of 64 the vector step reads
    # first, the next, and the start of a third, for a document that starts 2 bytes earlier.
    body = text_of(TEXTS["mixed"], 400)
    for chars in range(len(text_of(TEXTS["mixed"], 140))):
        text = body[:chars] + character + body[chars:]
        document = raw_document([text])
        assert _testing.json_loads(document) == [text], chars


INVALID = [
    b"\x80",  # a stray continuation byte
    b"\xc3",  # a lead byte with no continuation
    b"\xe6\xbc",  # a character cut short
    b"\xc0\xaf",  # an overlong form
    b"\xe0\x9f\xbf",  # an overlong 3-byte form
    b"\xf0\x8f\xbf\xbf",  # an overlong 4-byte form
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xff",  # in no UTF-8
]


INVALID_AMONG_LATIN1 = [
    b"\xc1\xbf",  # an overlong form of a Latin-1 character's lead bytes
    b"\xc3\xc3",  # a lead byte followed by a lead byte
    b"\xc2",  # a lead byte followed by ASCII
]


@pytest.mark.parametrize("kind", ["mixed", "latin-1"])
@pytest.mark.parametrize("bad", INVALID + INVALID_AMONG_LATIN1)
def test_invalid_utf8_in_long_raw_text_is_refused_at_its_byte(kind: str, bad: bytes) -> None:
    body = text_of(TEXTS[kind], 600).encode()
    starts = [k for k in range(0, 300) if (body[k] & 0xC0) != 0x80]
    for at in starts[::3]:
        head = b'{"content": "' + body[:at]
        document = head + bad + body[at:] + b'"}'
        with pytest.raises(_core.EnvelopeError) as info:
            _testing.json_loads(document)
        message = str(info.value)
        assert re.search(rf"invalid UTF-8 in a string at byte {len(head)}\b", message), message


def test_a_long_raw_string_cut_off_is_unterminated() -> None:
    text = text_of(TEXTS["cjk"], 3000)
    for chars in (100, 333, 999):
        document = b'["' + text[:chars].encode()
        with pytest.raises(_core.EnvelopeError) as info:
            _testing.json_loads(document)
        assert f"unterminated string at byte {len(document)}" in str(info.value)


@pytest.mark.parametrize("control", [b"\x00", b"\x0a", b"\x1f"])
def test_a_control_character_in_long_raw_text_is_refused_at_its_byte(control: bytes) -> None:
    body = text_of(TEXTS["greek"], 700).encode()
    for at in (0, 64, 200, 500):
        while (body[at] & 0xC0) == 0x80:
            at += 1
        head = b'["' + body[:at]
        with pytest.raises(_core.EnvelopeError) as info:
            _testing.json_loads(head + control + body[at:] + b'"]')
        assert f"control character in a string at byte {len(head)}" in str(info.value)


@pytest.mark.parametrize("length", [256, 319, 320, 321, 383, 384, 1000])
def test_a_lead_byte_at_the_end_of_long_latin1_text_is_refused_at_its_byte(length: int) -> None:
    # The body's last byte a lead byte whose continuation would be the closing quote: at the
    # end of a full block of 64 and elsewhere.
    body = b"a" * (length - 1) + b"\xc3"
    head = b'["'
    with pytest.raises(_core.EnvelopeError) as info:
        _testing.json_loads(head + body + b'"]')
    assert f"invalid UTF-8 in a string at byte {len(head) + length - 1}" in str(info.value)
