"""Review 10: the reader's fused string scan (``json_scan::plain_run``: a run's end and whether
it is ASCII in one pass; ``json_wide::ascii_only`` skipping blocks without a ``\\u``) against
``json.loads`` on generated strings: runs of every length around the 8-byte words and the
32-byte chunks, then a non-ASCII character, invalid UTF-8, an escape, a control character or
the closing quote, in values and in keys, and long escaped bodies whose backslash runs straddle
the 4 KiB blocks. The reader must accept exactly what ``json.loads`` accepts from the UTF-8 text
(and build the same value) and refuse the rest with its typed error."""

from __future__ import annotations

import json
import random

import pytest
from tests.core._probes import probes_module

from nomyo_native import _core

_testing = probes_module()

PIECES: list[bytes] = [
    "é".encode(),
    "漢".encode(),
    "🔐".encode(),
    b"\x7f",
    b"\x80",  # a lone continuation byte
    b"\xc3",  # a lead byte cut short
    b"\xe6\xbc",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xc0\xaf",  # overlong
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\\n",
    b"\\\\",
    b'\\"',
    b"\\u00e9",
    b"\\u0041",
    b"\\ud83d\\udd10",
    b"\\ud800",  # a lone surrogate: Python's json accepts it
    b"\\x",  # an invalid escape
    b"\\u12",  # a truncated one
    b"\x01",  # a raw control character
    b"\t",
]


def _string_body(rng: random.Random) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 4)):
        run = rng.choice([0, 1, 7, 8, 9, 15, 16, 23, 24, 31, 32, 33, 39, 40, 63, 64, 65, 95, 96])
        run += rng.choice([0, 0, 0, 1, -1]) if run else 0
        parts.append(bytes(rng.choice(b"abcxyz 09_-") for _ in range(run)))
        if rng.random() < 0.8:
            parts.append(rng.choice(PIECES))
    return b"".join(parts)


def _expected(document: bytes) -> tuple[bool, object]:
    try:
        return True, json.loads(document.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False, None


def _same(ours: object, theirs: object) -> bool:
    # Lone surrogates make == fine; compare types too (a str for a str).
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("seed", range(8))
def test_strings_in_values_and_keys_read_as_json_loads_reads_them(seed):
    rng = random.Random(seed)
    outcomes = {True: 0, False: 0}
    for _ in range(1500):
        value, key = _string_body(rng), _string_body(rng)
        where = rng.choice(["value", "key", "both", "list"])
        if where == "value":
            document = b'{"content":"' + value + b'"}'
        elif where == "key":
            document = b'{"' + key + b'":1}'
        elif where == "both":
            document = b'{"' + key + b'":"' + value + b'"}'
        else:
            document = b'["' + value + b'","' + key + b'"]'
        accepted, expected = _expected(document)
        outcomes[accepted] += 1
        if accepted:
            got = _testing.json_loads(document)
            assert _same(got, expected), document
        else:
            with pytest.raises(_core.EnvelopeError):
                _testing.json_loads(document)
    assert min(outcomes.values()) > 300, outcomes


@pytest.mark.parametrize("seed", range(4))
def test_long_escaped_strings_across_the_4_kib_blocks(seed):
    # Bodies of escapes and text whose backslash runs (odd and even) and \u escapes fall
    # at and around each 4 KiB block boundary, with a non-ASCII byte, an invalid one or
    # a \u escape placed right after the boundary.
    rng = random.Random(1000 + seed)
    fillers = [b"a", b"\\n", b"\\\\", b"\\\\\\n", b"ab\\t"]
    tails = [b"", "é".encode(), b"\xff", b"\\u00e9", b"\\u0041", b"u", b"\\\\u00e9"]
    outcomes = {True: 0, False: 0}
    for _ in range(150):
        filler = rng.choice(fillers)
        at = rng.choice([4096, 8192]) + rng.randint(-6, 3)
        body = (filler * (at // len(filler) + 1))[:at]
        if body.endswith(b"\\") and (len(body) - len(body.rstrip(b"\\"))) % 2:
            body += rng.choice([b"n", b"\\", b"u00e9", b"u0041"])
        body += rng.choice(tails) + b"tail"
        document = b'{"content":"' + body + b'"}'
        accepted, expected = _expected(document)
        outcomes[accepted] += 1
        if accepted:
            assert _same(_testing.json_loads(document), expected), (filler, at)
        else:
            with pytest.raises(_core.EnvelopeError):
                _testing.json_loads(document)
    assert min(outcomes.values()) > 5, outcomes
