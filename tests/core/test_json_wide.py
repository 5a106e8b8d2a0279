"""The reader's way to a non-ASCII ``str``: string bodies with escapes are decoded straight to
code points in locked memory (``json_wide``) and built by CPython's Latin-1 constructor and its
``PyUnicode_FromKindAndData`` (where found: ``pystr_kind``), or else its stable-ABI UTF-16 and
``wchar_t`` constructors, not its UTF-8 decoder; every test here runs with both sets. Whatever
the body holds (every escape kind, either hex case, surrogate pairs, lone surrogates, raw UTF-8
between escapes, U+FEFF first, NUL), the result is ``json.loads``'s, for values and keys alike,
and a bad body gets the error the reader has always given."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomyo_native import _core

from ._probes import probes_module

_testing = probes_module()


@pytest.fixture(autouse=True, scope="module", params=["from-kind-and-data", "stable-abi"])
def constructors(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test once with ``PyUnicode_FromKindAndData`` (where the interpreter has it) and
    once with the stable ABI's constructors only."""
    _testing.use_stable_str_constructors(request.param == "stable-abi")
    try:
        yield request.param
    finally:
        _testing.use_stable_str_constructors(False)


def test_from_kind_and_data_is_found_outside_windows(constructors: str) -> None:
    # Found in this interpreter (so the suite exercises it), turned off by the probe only.
    expected = constructors == "from-kind-and-data" and sys.platform != "win32"
    assert _testing.str_from_kind_and_data() is expected


@pytest.mark.parametrize(
    "text",
    ["é\u0100", "Ελλάδα", "한국어", "\ud800", "a\uffff", "🔐", "x\U0010ffff", "é🔐"],
)
def test_each_str_is_built_at_the_width_python_gives_it(text: str) -> None:
    # Same value, same length and the same memory as the str Python's json builds: the
    # narrowest kind that holds its widest character (a UCS-2 str for BMP text, whichever
    # route built it).
    value = text * 50
    document = json.dumps([value, "a" + value]).encode()
    ours, expected = _testing.json_loads(document), json.loads(document)
    assert ours == expected
    assert [type(v) for v in ours] == [str, str]
    assert [sys.getsizeof(v) for v in ours] == [sys.getsizeof(v) for v in expected]


SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def escaped(code: int, upper: bool) -> str:
    text = f"\\u{code:04x}"
    return text.upper().replace("\\U", "\\u") if upper else text


@st.composite
def code_points(draw: st.DrawFn) -> int:
    """A code point from every range the decoder tells apart, specials and surrogates too."""
    return draw(
        st.sampled_from([0, 0x1F, 0x22, 0x2F, 0x5C, 0x7F, 0x80, 0xFF, 0x100, 0xFEFF, 0xFFFF])
        | st.integers(0x20, 0x7E)
        | st.integers(0x80, 0xFF)
        | st.integers(0x100, 0xD7FF)
        | st.integers(0xD800, 0xDFFF)
        | st.integers(0xE000, 0xFFFF)
        | st.integers(0x10000, 0x10FFFF)
    )


@st.composite
def encoded(draw: st.DrawFn) -> tuple[str, str]:
    """A text and a JSON string body for it, each character written in a way drawn for it:
    raw (as UTF-8) where JSON allows, a short escape, a ``\\u`` escape in either case, a
    character beyond the BMP as a pair of escapes or raw."""
    text = "".join(chr(c) for c in draw(st.lists(code_points(), max_size=40)))
    body = []
    for char in text:
        code = ord(char)
        way = draw(st.sampled_from(["raw", "short", "lower", "upper"]))
        surrogate = 0xD800 <= code <= 0xDFFF
        if way == "raw" and code >= 0x20 and char not in '"\\' and not surrogate:
            body.append(char)
        elif way == "short" and char in SHORT:
            body.append(SHORT[char])
        elif code >= 0x10000:
            high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + (code & 0x3FF)
            body.append(escaped(high, way == "upper") + escaped(low, way != "lower"))
        else:
            body.append(escaped(code, way == "upper"))
    return text, "".join(body)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=encoded(), key=encoded(), pad=st.integers(0, 40))
def test_any_mix_of_escapes_and_raw_text_reads_as_json_loads_reads_it(
    value: tuple[str, str], key: tuple[str, str], pad: int
) -> None:
    # A lone high surrogate escape just before the escape of a low one would be read as a pair
    # (by Python's json too): the drawn text is then not the one written.
    document = f'{{"{key[1]}": ["{"x" * pad}{value[1]}", "{value[1]}"]}}'
    expected = json.loads(document)
    ours = _testing.json_loads(document.encode())
    assert ours == expected
    assert [type(k) for k in ours] == [str]
    if "\\ud" not in document.lower():
        assert expected == {key[0]: ["x" * pad + value[0], value[0]]}


@settings(max_examples=300, deadline=None)
@given(text=st.lists(code_points(), max_size=60).map(lambda cs: "".join(map(chr, cs))))
def test_what_json_dumps_writes_is_read_back_as_it_was(text: str) -> None:
    # Escaped (json.dumps's default, and the endpoint's) or with the non-ASCII raw. A lone
    # surrogate written raw is not UTF-8: the reader refuses it, stricter than json.loads,
    # which reads bytes with "surrogatepass".
    for ensure_ascii in (True, False):
        document = json.dumps({text: text}, ensure_ascii=ensure_ascii).encode(
            "utf-8", "surrogatepass"
        )
        surrogates = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        if not ensure_ascii and surrogates:
            with pytest.raises(_core.EnvelopeError, match="invalid UTF-8 in a string"):
                _testing.json_loads(document)
            continue
        assert _testing.json_loads(document) == json.loads(document)
        # Escapes of a lone high and a lone low surrogate side by side read as one pair.
        if not surrogates:
            assert _testing.json_loads(document) == {text: text}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\ufeff",
        "\ufeffabc",
        "\x00",
        "a\x00é\x00",
        "\ud800",
        "\udc00",
        "\ud800x",
        "\ud800\n",
        "\ud800\U0001f600",
        "\U0001f600\udc00",
        "\udbff\udfff",
        "\udc00\ud800",
        "é",
        "\xff",
        "\u0100",
        "\uffff",
        "\U00010000",
        "\U0010ffff",
        "déjà vu",
        "Ελλάδα",
        "漢字",
        "🔐🔑",
        "héllo wörld Ελλάδα 漢字 🔐 ",
        "\u7fff",
        "\u8000",
        "é\u7fff\x00",
        "„Zażółć” — €5",
        "Россия\u8000",
    ],
)
@pytest.mark.parametrize("repeat", [1, 7, 8, 9, 33, 600])
def test_each_kind_of_text_is_read_as_json_loads_reads_it(text: str, repeat: int) -> None:
    value = text * repeat
    document = json.dumps({value: [value, "a" + value, value + "a"]})
    expected = json.loads(document)
    ours = _testing.json_loads(document.encode())
    assert ours == expected
    assert [len(k) for k in ours] == [len(k) for k in expected]
    # (Written as escapes, a lone high and a lone low surrogate side by side read as a pair.)
    key = next(iter(expected))
    assert [len(v) for v in ours[key]] == [len(v) for v in expected[key]]


@pytest.mark.parametrize("length", [1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 100_000])
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_text_below_u8000_is_read_whole_at_every_length(length: int, ensure_ascii: bool) -> None:
    # Every character below U+8000 and some beyond Latin-1 (Greek, Cyrillic, Polish, quotes,
    # dashes, the euro sign, kana, U+7FFF): the UTF-16 route, narrowed 64 code points at a
    # time and then one by one; one character more from U+8000 on takes the wchar_t route.
    alphabet = "aé\u0100Ωж„”—€ぁ\u7fff"
    text = "".join(alphabet[(k * 7 + length) % len(alphabet)] for k in range(length))
    for value in (text, text[:-1] + "\u8000", "\u7fff" + text):
        document = json.dumps([value, {value: value}], ensure_ascii=ensure_ascii).encode()
        ours = _testing.json_loads(document)
        assert ours == [value, {value: value}]
        assert [len(ours[0]), len(next(iter(ours[1])))] == [len(value)] * 2


def test_a_body_longer_than_its_estimate_is_read_whole() -> None:
    # Room is counted from the body, exactly but for lone high surrogates: each is counted as
    # the first half of a pair (one code point from two escapes), and the decoder goes on in a
    # bigger buffer. Escaped backslashes before a `u` are counted as the text they are.
    for text in (
        "\ud800x" * 3000 + "é",
        "é" + "\udbff\ud83d" * 3000,
        ("\\u" * 10 + "漢\udbff") * 300,
        "\\u" * 3000 + "é",
    ):
        document = json.dumps([text])
        assert _testing.json_loads(document.encode()) == [text]


def test_str_written_in_place_is_found_outside_windows(constructors: str) -> None:
    # PyUnicode_New is found and the str layout shown by the probe on 64-bit CPython outside
    # Windows (so the suite exercises the route); turned off with the constructor.
    expected = (
        constructors == "from-kind-and-data" and sys.platform != "win32" and sys.maxsize > 2**32
    )
    assert _testing.str_written_in_place() is expected


# A string of at least 64 KiB of body whose first 16,384 code points hold one beyond the BMP is
# decoded straight into its str (`pystr_fresh`); later or never, through the locked scratch.
LONG_TEXT = ("héllo wörld Ελλάδα 漢字 " * 4000)[:70_000]
FIRST_UNITS = 16_384


def in_place_delta(read: Callable[[], object]) -> int:
    before = _testing.strs_written_in_place()
    read()
    return _testing.strs_written_in_place() - before


# (A character beyond the BMP is decoded where room for two UTF-16 units is left: the last
# place within the first units is FIRST_UNITS - 2.)
@pytest.mark.parametrize("astral_at", [0, 1, 5_000, FIRST_UNITS - 2, FIRST_UNITS, 40_000, None])
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_a_long_string_beyond_the_bmp_reads_as_json_loads_reads_it(
    astral_at: int | None, ensure_ascii: bool, constructors: str
) -> None:
    text = LONG_TEXT
    if astral_at is not None:
        text = text[:astral_at] + "🔐" + text[astral_at:-1] + "\U0010ffff"
    document = json.dumps([text, {"k": text}], ensure_ascii=ensure_ascii).encode()
    expected = json.loads(document)
    ours: list[object] = []
    written = in_place_delta(lambda: ours.append(_testing.json_loads(document)))
    assert ours[0] == expected
    # The same width and length (a UCS-4 str cut to its length): the same memory.
    assert sys.getsizeof(ours[0][0]) == sys.getsizeof(expected[0])
    assert sys.getsizeof(ours[0][1]["k"]) == sys.getsizeof(expected[1]["k"])
    # Raw UTF-8 goes this way only where the CPU reads it in blocks (AVX-512).
    in_place = _testing.str_written_in_place() and (ensure_ascii or written > 0)
    early = astral_at is not None and astral_at < FIRST_UNITS
    assert written == (2 if in_place and early else 0)


@pytest.mark.parametrize(
    "text",
    [
        # Escaped backslashes before a `u`: text, counted as such.
        "🔐" + "\\u" * 30_000,
        "🔐" + ("\\u" * 10 + "漢") * 3_000,
        # Lone surrogates of either half, kept as they are beside pairs (the high ones make
        # the room short: a bigger str).
        "🔐" + ("a\ud800b\udc00\ud83d\udd10" * 6_000),
        # Every other escape and control characters.
        "\U0001f510" + ('"\\/\b\f\n\r\t\x00\x1f' * 8_000),
    ],
)
def test_a_long_string_written_in_place_keeps_every_character(text: str) -> None:
    document = json.dumps([text]).encode()
    expected = json.loads(document)
    assert _testing.json_loads(document) == expected
    assert sys.getsizeof(_testing.json_loads(document)[0]) == sys.getsizeof(expected[0])


def upper_hex(document: bytes) -> bytes:
    """``document`` with its escapes' hex digits in upper case (json.dumps writes lower; an
    escaped backslash's `u` and digits change too: text, read as such)."""
    return re.sub(rb"\\u([0-9a-f]{4})", lambda m: b"\\u" + m[1].upper(), document)


# Escaped pairs and raw characters beyond the BMP, among every other escape, escaped
# backslashes (before a `u` too) and text in three scripts.
MIXED = '🔐 Ελλάδα\n漢字 \\u00e9 \\\\ "q" \t\U0010ffff é/\x00 '


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("hex_case", ["lower", "upper"])
@pytest.mark.parametrize("text", [MIXED * 3_000, "🔐" * 20_000, ("🔐\n" + LONG_TEXT) * 2])
def test_a_long_string_written_in_place_is_made_at_its_length(
    text: str, ensure_ascii: bool, hex_case: str, constructors: str
) -> None:
    # Its room is counted exactly (every escape, surrogate pairs, 4-byte characters): the str
    # is made at its length and never cut. A cut handed glibc back a smaller block than the
    # next such str asked for, and every megabyte str was mapped, faulted in and unmapped.
    document = json.dumps([text], ensure_ascii=ensure_ascii).encode()
    if hex_case == "upper":
        document = upper_hex(document)
    ours: list[object] = []
    written = in_place_delta(lambda: ours.append(_testing.json_loads(document)))
    assert ours[0] == json.loads(document)
    if not _testing.str_written_in_place():
        assert written == 0
        return
    # Raw UTF-8 goes this way only where the CPU reads it in blocks (AVX-512).
    assert written == 1 or not ensure_ascii
    if written:
        # Only the decoder's slack: it widens ASCII 8 bytes at a time.
        assert _testing.last_in_place_cut() <= 8


def test_lone_high_surrogates_make_the_room_short_and_the_str_grows(constructors: str) -> None:
    text = "🔐" + "\ud800x" * 20_000
    document = json.dumps([text]).encode()
    ours: list[object] = []
    written = in_place_delta(lambda: ours.append(_testing.json_loads(document)))
    assert ours[0] == [text]
    if _testing.str_written_in_place():
        # Grown to the most the rest could hold (a code point a byte), then cut to length.
        assert written == 1
        assert _testing.last_in_place_cut() > 8


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"\\u12zz", "invalid \\u escape"),
        (b"\\x", "invalid escape"),
        (b"\x01", "control character in a string"),
        (b"\xff", "invalid UTF-8 in a string"),
    ],
)
def test_a_long_string_refused_past_its_first_units_gets_the_readers_error(
    bad: bytes, message: str
) -> None:
    # Refused after the first units showed a character beyond the BMP: the str being written
    # is dropped and the body read the usual way, which names the error and its offset.
    body = b"\\ud83d\\udd10" + b"\\u4e2d" * 20_000
    data = b'["' + body + bad + b'"]'
    with pytest.raises(_core.EnvelopeError) as info:
        _testing.json_loads(data)
    at = 2 + len(body)
    assert str(info.value) == f"invalid JSON payload: {message} at byte {at} (path $[0])"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'"\\u00e9\x01"', "control character in a string at byte 7 (path $)"),
        (b'"\\u4e2d\xff"', "invalid UTF-8 in a string at byte 7 (path $)"),
        (b'"\\u4e2d\\u12zz"', "invalid \\u escape at byte 7 (path $)"),
        (b'"\\u4e2d', "unterminated string at byte 7 (path $)"),
        (b'"\\ud800\\uZZZZ"', "invalid \\u escape at byte 7 (path $)"),
        (b'["\\u4e2d", "\\u00e9\\x"]', "invalid escape at byte 18 (path $[1])"),
        (b'{"\\u00e9": 1, "\\u4e2d\\u12"', "truncated \\u escape at byte 21 (path $.<key 2>)"),
        (b'"\xc3\xa9\\u4e2d\xed\xa0\x80"', "invalid UTF-8 in a string at byte 9 (path $)"),
        (b'"\\ud83d\xf0\x9f"', "invalid UTF-8 in a string at byte 7 (path $)"),
        (b'"\\u00e9\xc3\x01"', "control character in a string at byte 8 (path $)"),
        (b'"\\u00e9\xc3\\n"', "invalid UTF-8 in a string at byte 7 (path $)"),
        (b'"\xe4\xb8\\u4e2d"', "invalid UTF-8 in a string at byte 1 (path $)"),
        (b'"\\u4e2d\\', "unterminated escape at byte 7 (path $)"),
    ],
)
def test_a_bad_non_ascii_body_gets_the_readers_error(data: bytes, message: str) -> None:
    # The messages and offsets the reader gave before it decoded to code points.
    with pytest.raises(_core.EnvelopeError) as info:
        _testing.json_loads(data)
    assert str(info.value) == f"invalid JSON payload: {message}"


# Sizes the decoder's scratch for a string of `lead` and bytes from 0xF0 up (no UTF-8), which
# it refuses at the first, and prints what the pool of locked buffers holds after each (the
# body's locked copy and the scratch, both freed into it; it keeps up to its limit). Each such
# byte counted as a 4-byte character's lead gave two units of room a byte: eight bytes of
# code points locked (and paged in) for each byte of body, before the refusal.
SCRATCH_KEPT = r"""
import json
from nomyo_native import _core
from nomyo_native._core import _testing
body = _core.memory_status()["pool_limit_bytes"] // 12
kept = []
for lead in (b"\\n", b"\\u00e9", b'\\"\\u4e2d'):
    for filler in (b"\xff", b"\xf5", b"\xf0"):
        _testing.release_pool()
        try:
            _testing.json_loads(b'{"a": "' + lead + filler * body + b'"}')
        except _core.EnvelopeError:
            kept.append(_core.memory_status()["bytes_pooled"])
print(json.dumps({"body": body, "kept": kept}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the pool's counters as Linux keeps them")
def test_a_body_that_is_not_utf8_sizes_no_more_scratch_than_its_length() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRATCH_KEPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    body, kept = report["body"], report["kept"]
    assert len(kept) == 9, "every body refused"
    for pooled in kept:
        # The body's copy and a scratch of at most four bytes (one code point) per body byte,
        # each rounded up to whole pages with a little room.
        assert body < pooled <= 5 * body + (64 << 10), (body, kept)
