"""The core's strict JSON reader against Python's ``json`` on mutated documents.

Decrypted responses are parsed by the core's own reader (straight from locked memory into
Python objects), so it sees whatever an authenticated but hostile server sends. Differential
check on mutated JSON and raw bytes: whenever the core accepts an input, Python's ``json`` must
accept it too and produce an equal value (numbers, escapes, duplicate keys, ...); whenever it
refuses, the error is ``EnvelopeError``. The core may be stricter than Python (NaN, Infinity,
raw surrogates, nesting deeper than MAX_JSON_DEPTH), never looser or different.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomyo_native import _core

from .envelopes import CALL_TIME_BOUND, timed

try:  # a test probe: only in the test build of the core (see tests/core/_probes.py)
    from nomyo_native._core import _testing
except ImportError:
    if "site-packages" not in (_core.__file__ or ""):
        raise
    pytest.skip("an installed wheel has no test probes", allow_module_level=True)

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)
TOKENS = [b'"', b"\\", b"\\u", b"\\ud800", b"e", b"E+", b"-", b".", b"0", b"[", b"]", b"{", b"}"]
TOKENS += [b",", b":", b" ", b"\x00", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"1e400", b"9" * 30]


def same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and compares dict key order-insensitively."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    value = draw(JSON_VALUES)
    doc = bytearray(json.dumps(value, ensure_ascii=draw(st.booleans())).encode())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(doc)))
        action = draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip" and at < len(doc):
            doc[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete" and at < len(doc):
            del doc[at]
        else:
            doc[at:at] = draw(st.sampled_from(TOKENS))
    return bytes(doc)


def check(data: bytes) -> None:
    ours, error, elapsed = timed(lambda: _testing.json_loads(data))
    assert elapsed < CALL_TIME_BOUND
    if error is not None:
        assert isinstance(error, _core.EnvelopeError), repr(error)
        return
    python = json.loads(data)  # must not raise: the core accepted it
    assert same(ours, python), (data, ours, python)


@SETTINGS
@given(mutated_documents())
def test_mutated_documents(data: bytes) -> None:
    check(data)


@SETTINGS
@given(st.binary(max_size=64))
def test_raw_bytes(data: bytes) -> None:
    check(data)


@SETTINGS
@given(st.from_regex(rb"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?\Z"))
def test_numbers_parse_exactly_as_python(data: bytes) -> None:
    # Correctly rounded floats, big integers and exponents: the same value as Python's json.
    check(data)
    ours = _testing.json_loads(data)
    assert same(ours, json.loads(data)), data
