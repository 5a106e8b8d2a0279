"""The core's JSON: byte-identical to json.dumps(separators=(",", ":"), ensure_ascii=False), a
strict RFC 8259 reader, typed errors with paths, and round trips through seal/open."""

from __future__ import annotations

import collections
import enum
import functools
import hashlib
import json
import math
import random
import re
import struct
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomyo_native import _core

from ._limits import limited, run
from ._probes import probes_module

_testing = probes_module()

DEPTH = _core.MAX_JSON_DEPTH

# ---- strategies --------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
integers = (
    st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
    | st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3)
    | st.integers(min_value=-(10**60), max_value=10**60)
)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | integers | floats | texts
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(texts, children, max_size=6),
    max_leaves=40,
)


def reference_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def expected_digest(value: object) -> tuple[str, int]:
    data = reference_bytes(value)
    return hashlib.sha256(data).hexdigest(), len(data)


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_dict(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@functools.cache
def keys() -> tuple[_core.ClientKeyPair, _core.ServerPublicKey]:
    kp = _core.ClientKeyPair.generate(2048)
    return kp, _core.ServerPublicKey.from_pem(kp.public_key_pem)


def seal_open(value: object) -> object:
    kp, spk = keys()
    payload, _processed_at, algorithm = _core.open(_core.seal(value, spk), kp)
    assert algorithm == "hybrid-aes256-rsa4096"
    return payload


# ---- writer: exact bytes -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True)
@given(json_values)
def test_written_bytes_equal_json_dumps(value: object) -> None:
    assert _testing.json_digest(value) == expected_digest(value)


@pytest.mark.parametrize(
    "number",
    [
        0.0,
        -0.0,
        0.1,
        1.0,
        1.5,
        100.0,
        1e15,
        1e16,
        1.5e16,
        123456789012345.6,
        0.0001,
        0.00001,
        1.25e-7,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -3.14159,
        2**53 + 0.0,
        562949953421312.2,  # two shortest candidates (.2/.3): CPython picks ties-to-even
        5.960464477539063e-08,  # 2**-24: the tie's even candidate does not round-trip
        0.3,
        2.5e-5,
    ],
)
def test_floats_are_written_as_python_repr(number: float) -> None:
    assert _testing.json_digest([number]) == expected_digest([number])
    assert _testing.json_roundtrip(number) == number
    assert math.copysign(1, _testing.json_roundtrip(number)) == math.copysign(1, number)


def test_many_doubles_match_repr() -> None:
    rnd = random.Random(2024)
    values = [math.ldexp(1.0, e) for e in range(-1074, 1024)]
    values += [
        math.ldexp(float(rnd.randint(1, 2**20)), rnd.randint(-1074, 1000)) for _ in range(20_000)
    ]
    for _ in range(50_000):
        value = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            values.append(value)
    values = [v for v in values if math.isfinite(v)]
    assert _testing.json_digest(values) == expected_digest(values)


@pytest.mark.parametrize(
    "number",
    [0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**100, -(10**300)],
)
def test_integers_of_any_size(number: int) -> None:
    assert _testing.json_digest(number) == expected_digest(number)
    result = _testing.json_roundtrip(number)
    assert type(result) is int and result == number


def test_strings_are_escaped_like_json_dumps() -> None:
    value = 'quote" backslash\\ nl\n cr\r tab\t bs\b ff\f nul\x00 us\x1f del\x7f é ☃ 😀 \u2028'
    assert _testing.json_digest(value) == expected_digest(value)
    assert _testing.json_roundtrip(value) == value


def test_every_ascii_byte_at_every_word_offset_is_escaped_correctly() -> None:
    # The writer scans 8 bytes at a time; put each ASCII character at each position of a word.
    for code in range(0x80):
        for offset in range(16):
            value = "a" * offset + chr(code) + "é" * 3 + "b" * (15 - offset)
            assert _testing.json_digest(value) == expected_digest(value), (code, offset)


def test_long_ascii_strings_are_escaped_correctly_across_the_scan_windows() -> None:
    # A long ASCII str is scanned 16 KiB at a time: plain runs that end at, before or after a
    # window's edge, and a character to escape on either side of one, are all written whole.
    window = 16 * 1024
    for length in (window - 1, window, window + 1, 3 * window, 3 * window + 7):
        plain = "a" * length
        assert _testing.json_digest(plain) == expected_digest(plain), length
    for at in (0, window - 2, window - 1, window, window + 1, 2 * window - 1, 2 * window):
        for special in ('"', "\\", "\n", "\x00", "\x1f"):
            value = "b" * at + special + "c" * (2 * window + 5 - at)
            assert _testing.json_digest(value) == expected_digest(value), (at, special)
    dense = "".join(chr(code) for code in range(0x80)) * (window // 64)
    assert _testing.json_digest(dense) == expected_digest(dense)
    assert seal_open(dense) == dense


def test_keys_are_coerced_like_json_dumps() -> None:
    value = {"s": 1, 2: "int", 2.5: "float", True: "bool", None: "none", 10**30: "big"}
    assert _testing.json_digest(value) == expected_digest(value)
    assert _testing.json_roundtrip(value) == json.loads(reference_bytes(value))


def test_subclasses_and_tuples() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    value = {
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "default": collections.defaultdict(int, {"x": 1}),
        "enum": Color.RED,
        "name": Name("n"),
        "tuple": (1, (2, 3)),
        "flag": True,
    }
    assert _testing.json_digest(value) == expected_digest(value)
    assert _testing.json_roundtrip(value)["tuple"] == [1, [2, 3]]


# ---- writer: errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"messages": [{"role": "user"}, {"content": b"sk-secret"}]},
            "$.messages[1].content: object of type bytes is not JSON serializable",
        ),
        ({"stop": {"a", "b"}}, "$.stop: object of type set is not JSON serializable"),
        ({"tags": {"a", "b"}}, "$.<key 1 of 1>: object of type set is not JSON serializable"),
        ([1, (2, object())], "$[1][1]: object of type object is not JSON serializable"),
        (
            {"n": 1, "a b": [complex(1, 2)]},
            "$.<key 2 of 2>[0]: object of type complex is not JSON serializable",
        ),
        ({(1, 2): "x"}, "dict keys must be str, int, float, bool or None, not tuple"),
    ],
)
def test_non_json_values_raise_type_error_with_path(value: object, message: str) -> None:
    with pytest.raises(TypeError) as info:
        _testing.json_roundtrip(value)
    assert message in str(info.value)
    assert "sk-secret" not in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match=re.escape("$.stop[0]: NaN and Infinity")):
        _testing.json_roundtrip({"stop": [bad]})
    with pytest.raises(ValueError, match=re.escape("$.<key 1 of 1>[0]: NaN and Infinity")):
        _testing.json_roundtrip({"x": [bad]})
    with pytest.raises(ValueError, match="NaN and Infinity"):
        _testing.json_roundtrip({bad: 1})


def test_lone_surrogates_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match=re.escape("$.text: string contains a lone surrogate")):
        _testing.json_roundtrip({"text": "abc\ud800"})
    with pytest.raises(ValueError, match=re.escape("$.<key 1 of 1>: string contains a lone")):
        _testing.json_roundtrip({"note": "abc\ud800"})
    with pytest.raises(ValueError, match="lone surrogate"):
        _testing.json_roundtrip({"key\udfff": 1})


def test_error_paths_never_contain_string_values() -> None:
    with pytest.raises(TypeError) as info:
        _testing.json_roundtrip({"user": "my password is hunter2", "blob": bytearray(b"hunter2")})
    assert "hunter2" not in str(info.value)
    assert "blob" not in str(info.value)  # not a protocol field name: its position instead
    assert "$.<key 2 of 2>: object of type bytearray" in str(info.value)


def test_nesting_up_to_the_limit_round_trips() -> None:
    for value in (nested_list(DEPTH), nested_dict(DEPTH)):
        assert _testing.json_roundtrip(value) == value
        assert _testing.json_digest(value) == expected_digest(value)


def test_nesting_over_the_limit_is_refused() -> None:
    for value in (nested_list(DEPTH + 1), nested_dict(DEPTH + 1)):
        with pytest.raises(ValueError, match=f"nesting deeper than {DEPTH} levels"):
            _testing.json_roundtrip(value)


def test_circular_structures_are_refused_not_crashed() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nesting deeper"):
        _testing.json_roundtrip(loop)


def test_size_cap_is_exact() -> None:
    value = "x" * 98  # '"' + 98 + '"' = 100 bytes
    assert _testing.json_digest(value, 100) == expected_digest(value)
    with pytest.raises(_core.PayloadTooLargeError, match="99 bytes"):
        _testing.json_digest(value, 99)


def test_default_cap_is_max_plaintext_bytes() -> None:
    limit = _core.MAX_PLAINTEXT_BYTES
    fits = "a" * (limit - 2)
    assert _testing.json_digest(fits)[1] == limit
    with pytest.raises(_core.PayloadTooLargeError):
        _testing.json_digest(fits + "a")


def test_failed_serialization_frees_its_locked_buffers() -> None:
    before = _core.memory_status()
    for bad in ({"a": ["x" * 5000, b"bytes"]}, ["y" * 100_000]):
        with pytest.raises((TypeError, _core.PayloadTooLargeError)):
            _testing.json_digest(bad, 50_000)
    after = _core.memory_status()
    assert after["buffers_live"] == before["buffers_live"]

    # Freed buffers may stay mapped in the pool of wiped, locked mappings (a cold pool grows
    # here): what must not grow is the locked memory held outside it.
    def held(status: dict[str, object]) -> int:
        locked, pooled = status["bytes_locked"], status["bytes_pooled"]
        assert isinstance(locked, int) and isinstance(pooled, int)
        return locked - pooled

    assert held(after) == held(before)


def test_huge_int_beyond_python_digit_limit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"\$\.n"):
        _testing.json_roundtrip({"n": 10**5000})


# ---- reader --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True)
@given(json_values)
def test_reader_parses_what_python_writes(value: object) -> None:
    assert _testing.json_loads(json.dumps(value).encode()) == value
    assert _testing.json_loads(json.dumps(value, ensure_ascii=False, indent=1).encode()) == value


@settings(max_examples=200, deadline=None, derandomize=True)
@given(json_values)
def test_roundtrip_through_locked_memory(value: object) -> None:
    assert _testing.json_roundtrip(value) == value


def test_reader_semantics_match_python() -> None:
    text = (
        b' {"a": 1, "a": 2, "big": 123456789012345678901234567890, "neg": -0, "negf": -0.0,'
        b' "exp": 1E400, "esc": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00",'
        b' "lone": "\\ud800x", "arr": [true, false, null, [], {}]}\r\n'
    )
    assert _testing.json_loads(text) == json.loads(text)
    parsed = _testing.json_loads(text)
    assert parsed["a"] == 2  # last duplicate wins
    assert math.copysign(1, parsed["negf"]) == -1.0
    assert parsed["exp"] == math.inf  # as Python's json


@pytest.mark.parametrize("length", [1, 100, 127, 128, 129, 255, 256, 257, 5000])
@pytest.mark.parametrize(
    "unit",
    ["é", "Ελλάδα ", "漢字\n", "🔐", 'a"b\\', "héllo wörld Ελλάδα 漢字 🔐 ", "x" * 600 + "é"],
)
def test_reader_decodes_long_escaped_text_like_python(unit: str, length: int) -> None:
    # Python's json.dumps escapes every non-ASCII character: escapes decode in batches, so
    # lengths cross the batch boundary at every offset, with raw runs of every length between.
    text = (unit * length)[: length * 2]
    for document in (json.dumps([text, {"k": text}]), json.dumps(text + "\ud800" + text)):
        assert _testing.json_loads(document.encode()) == json.loads(document)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unexpected end of data at byte 0"),
        (b"   ", "unexpected end of data at byte 3"),
        (b"[1,]", "unexpected character at byte 3"),
        (b"[1 2]", "expected ',' or ']' at byte 3"),
        (b'{"a" 1}', "expected ':' at byte 5"),
        (b"{1: 2}", "expected a string key at byte 1"),
        (b'{"a": 1,}', "expected a string key at byte 8"),
        (b'{"a": 1} x', "unexpected data after the JSON value at byte 9"),
        (b"01", "unexpected data after the JSON value at byte 1"),
        (b"NaN", "NaN and Infinity are not valid JSON at byte 0"),
        (b"[-Infinity]", "invalid number at byte 1"),
        (b"[Infinity]", "NaN and Infinity are not valid JSON at byte 1"),
        (b"1.", "invalid number at byte 0"),
        (b"1e+", "invalid number at byte 0"),
        (b"tru", "invalid literal at byte 0"),
        (b'"abc', "unterminated string at byte 4"),
        (b'"a\x01"', "control character in a string at byte 2"),
        (b'"\\x"', "invalid escape at byte 1"),
        (b'"\\u12zz"', "invalid \\u escape at byte 1"),
        (b'"\\u12', "truncated \\u escape at byte 1"),
        (b'["ok", "\xff"]', "invalid UTF-8 in a string at byte 8"),
        (b'"\xed\xa0\x80"', "invalid UTF-8 in a string at byte 1"),
        (b'["a\\n\xff"]', "invalid UTF-8 in a string at byte 5"),
        (b'"\\ud800\xed\xa0\x80"', "invalid UTF-8 in a string at byte 7"),
        (b"\xef\xbb\xbf[]", "unexpected character at byte 0"),
        (b"[" * (DEPTH + 1) + b"]" * (DEPTH + 1), f"nesting deeper than {DEPTH} levels"),
    ],
)
def test_reader_refuses_invalid_json_with_offset(data: bytes, message: str) -> None:
    with pytest.raises(_core.EnvelopeError) as info:
        _testing.json_loads(data)
    assert message in str(info.value)


def test_reader_errors_never_echo_content() -> None:
    with pytest.raises(_core.EnvelopeError) as info:
        _testing.json_loads(b'{"api_key": "sk-live-abc123" oops}')
    assert "sk-live" not in str(info.value)
    assert "oops" not in str(info.value)


def test_reader_accepts_the_depth_limit() -> None:
    data = b"[" * DEPTH + b"]" * DEPTH
    assert _testing.json_loads(data) == nested_list(DEPTH)


def test_reader_refuses_integers_beyond_python_digit_limit() -> None:
    with pytest.raises(_core.EnvelopeError, match="integer too large at byte 1"):
        _testing.json_loads(b"[" + b"9" * 5000 + b"]")


@pytest.mark.parametrize("interpreter_limit", [0, 4300, 10_000, 1_000_000])
def test_reader_takes_at_most_4300_digits_whatever_the_interpreters_limit(
    interpreter_limit: int,
) -> None:
    """A server's integer is read up to CPython's default limit, also when the application
    lifted the limit (0: none): converting 100,000 digits held the GIL ~50 ms, and the time
    grows faster than the digits."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(interpreter_limit)
    try:
        for sign in ("", "-"):
            for digits in (4300, 4301, 5000, 100_000):
                text = sign + "7" * digits
                data = b'{"n": [1, ' + text.encode() + b"]}"
                if digits <= 4300:
                    assert _testing.json_loads(data) == {"n": [1, int(text)]}
                else:
                    with pytest.raises(_core.EnvelopeError) as info:
                        _testing.json_loads(data)
                    assert str(info.value) == (
                        "invalid JSON payload: integer too large at byte 10 (path $.n[1])"
                    )
    finally:
        sys.set_int_max_str_digits(before)


# ---- through seal / open -------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(json_values)
def test_seal_open_round_trip(value: object) -> None:
    assert seal_open(value) == value


def test_seal_open_deep_nesting_and_unicode() -> None:
    value = {"deep": nested_list(DEPTH - 1), "text": "héllo ☃ 😀 \u2028 \x00", "n": 10**40}
    assert seal_open(value) == value


def test_seal_refuses_non_json_and_oversize_before_encrypting() -> None:
    _kp, spk = keys()
    with pytest.raises(TypeError, match=re.escape("$.messages[0].content: object of type bytes")):
        _core.seal({"messages": [{"content": b"x"}]}, spk)
    with pytest.raises(ValueError, match="nesting deeper"):
        _core.seal(nested_list(DEPTH + 1), spk)
    with pytest.raises(_core.PayloadTooLargeError):
        _core.seal({"content": "a" * _core.MAX_PLAINTEXT_BYTES}, spk)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b'{"choices": [1, {"text": "ok\xff"}]}', "$.choices[1].text"),
        (b'{"a": [1, {"b": "ok\xff"}]}', "$.<key 1>[1].<key 1>"),
        (b'{"a": [1, {"b": "\\n\xc3("}]}', "$.<key 1>[1].<key 1>"),
        (b'[{"x y": ["\xed\xa0\x80"]}]', "$[0].<key 1>[0]"),
        (b'{"k": 1, "bad\xffkey": 2}', "$.<key 2>"),
        (b'"\xf4\x90\x80\x80"', "$"),
    ],
)
def test_finding3_invalid_utf8_is_refused_in_rust_naming_the_path(data: bytes, path: str) -> None:
    # Validated before any Python string exists: no UnicodeDecodeError (with its bytes copy
    # of the text) is ever made, so none is chained to the error either.
    with pytest.raises(_core.EnvelopeError) as info:
        _testing.json_loads(data)
    message = str(info.value)
    assert "invalid UTF-8 in a string" in message
    assert f"(path {path})" in message
    assert "ok" not in message.replace("(path", "") and "bad" not in message
    assert info.value.__context__ is None and info.value.__cause__ is None


# ---- issue 10 finding 4: no UTF-8 copy cached in the caller's str ---------------------------

NON_ASCII = [
    "héllo wörld, " * 20,  # 1-byte kind, Latin-1 range
    "prix: 10 €, Ελληνικά, Кириллица; " * 10,  # 2-byte kind
    "emoji 🔐 and 𝄞 music; " * 10,  # 4-byte kind
    '控制字符\n\t"\\ 引号 ',  # escapes among CJK
]


@pytest.mark.parametrize("text", NON_ASCII)
def test_finding4_seal_leaves_no_utf8_copy_in_the_callers_str(text: str) -> None:
    kp = _core.ClientKeyPair.generate(2048)
    server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
    key = "clé-" + text[:5]
    value = "".join([text, "!"])  # a fresh str, so no earlier test cached anything in it
    payload = {"messages": [{"role": "user", "content": value}], key: (value, [value])}
    sizes = (sys.getsizeof(value), sys.getsizeof(key))
    opened = _core.open(_core.seal(payload, server), kp)[0]
    assert (sys.getsizeof(value), sys.getsizeof(key)) == sizes
    assert opened == json.loads(json.dumps(payload))
    # The bytes written are exactly what json.dumps writes.
    digest, length = _testing.json_digest(payload)
    expected = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert (digest, length) == (hashlib.sha256(expected).hexdigest(), len(expected))


def test_finding4_a_non_ascii_password_leaves_no_utf8_copy(tmp_path) -> None:
    kp = _core.ClientKeyPair.generate(2048)
    password = "".join(["pässwörd-🔑-", "ключ"])
    size = sys.getsizeof(password)
    kp.save(tmp_path / "k.pem", tmp_path / "p.pem", password=password)
    again = _core.ClientKeyPair.load(tmp_path / "k.pem", password)
    assert again.fingerprint == kp.fingerprint
    assert sys.getsizeof(password) == size
    # The same password as UTF-8 bytes opens it: the encoding is UTF-8.
    by_bytes = _core.ClientKeyPair.load(tmp_path / "k.pem", password.encode())
    assert by_bytes.fingerprint == kp.fingerprint


def test_finding4_lone_surrogates_are_still_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        _testing.json_digest({"a": ["ok", "x\ud800y"]})
    with pytest.raises(ValueError, match="lone surrogate"):
        _testing.json_digest({"k\udfff": 1})


def test_finding4_a_str_subclass_cannot_steer_the_ascii_fast_path() -> None:
    class Liar(str):
        def isascii(self) -> bool:
            return True

    value = Liar("".join(["déjà vu ", "🔐"]))
    size = sys.getsizeof(value)
    digest, length = _testing.json_digest([value])
    expected = json.dumps([value], separators=(",", ":"), ensure_ascii=False).encode()
    assert (digest, length) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert sys.getsizeof(value) == size


@pytest.mark.parametrize("kind", ["clé-", "Ελλη-€", "🔐-𝄞", "long-é" * 30])
@pytest.mark.parametrize("bad", [object(), math.nan, "x\ud800", {1j: 2}, nested_list(DEPTH + 2)])
def test_finding4_an_error_path_naming_a_non_ascii_key_leaves_no_utf8_copy(
    kind: str, bad: object
) -> None:
    # The error names the key's position; checking whether the key is a protocol field name
    # must not make CPython cache a UTF-8 copy in the caller's key (Latin-1, UCS-2 and UCS-4
    # kinds, long keys), nor show it.
    key = "".join([kind, "!"])
    size = sys.getsizeof(key)
    with pytest.raises((TypeError, ValueError)) as info:
        _testing.json_digest({"tools": {"n": 0, key: bad}})
    assert sys.getsizeof(key) == size
    assert "$.tools.<key 2 of 2>" in str(info.value)
    assert kind[:4] not in str(info.value)


# Pieces of a JSON string's body, valid and not: escapes of every kind, surrogate pairs, lone
# and reversed surrogates, bad hex, runs of backslashes (before a quote or not), raw non-ASCII.
_STRING_PIECES = st.sampled_from(
    [
        "a", "é", "🔐", '\\"', "\\\\", "\\\\\\\\", '\\\\\\"', "\\/", "\\n", "\\u00e9",
        "\\ud83d\\ude00", "\\ud83d", "\\ude00", "\\ude00\\ud83d", "\\uD800\\u0041",
        "\\uDBFF\\uDFFF", "\\u0000", "\\u12", "\\uZZZZ", "\\u00G0", "\\x", "\\", '"',
    ]
)  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    pad=st.integers(min_value=0, max_value=1100),
    escaped=st.integers(min_value=0, max_value=300),
    pieces=st.lists(_STRING_PIECES, max_size=12),
)
def test_reader_accepts_refuses_and_decodes_string_escapes_like_python(
    pad: int, escaped: int, pieces: list[str]
) -> None:
    # Escapes decode into a 512-byte batch: `escaped` two-byte escapes and `pad` raw bytes put
    # every piece at every offset from the batch's boundaries.
    document = '["' + "x" * pad + "\\n" * escaped + "".join(pieces) + '"]'
    try:
        expected: object = json.loads(document)
    except ValueError:
        with pytest.raises(ValueError):
            _testing.json_loads(document.encode())
        return
    assert _testing.json_loads(document.encode("utf-8", "surrogatepass")) == expected


# ---- the writer's in-place escaping of non-ASCII strings -----------------------------------------
# A non-ASCII str is read as UCS-4 and escaped in place; a `\u00XX` escape (6 bytes) that would
# overtake the code points not read yet sends the rest through a small batch instead.


@pytest.mark.parametrize("kind", ["é", "Ω", "🔐"])  # 1-, 2- and 4-byte str kinds
@pytest.mark.parametrize("special", ["\x00", "\x01", "\x1f", "\n", "\t", '"', "\\", "\x7f"])
def test_every_special_character_at_every_offset_is_written_like_json_dumps(
    kind: str, special: str
) -> None:
    for offset in range(0, 20):
        for text in (
            kind + "a" * offset + special + "tail",  # after ASCII: room gained in place
            kind * (offset + 1) + special * 3 + "x" * 9,  # after wide characters: little room
            special * offset + kind,  # at the very start, repeated
            ("ab" + kind) * offset + special + kind * 9,  # across the 8-character blocks
        ):
            expected = json.dumps([text], separators=(",", ":"), ensure_ascii=False).encode()
            digest, length = _testing.json_digest([text])
            assert (digest, length) == (hashlib.sha256(expected).hexdigest(), len(expected)), repr(
                text
            )


@pytest.mark.parametrize("offset", [0, 1, 7, 8, 9, 40, 4000])
@pytest.mark.parametrize("surrogate", ["\ud800", "\udbff", "\udc00", "\udfff"])
def test_a_lone_surrogate_anywhere_in_a_non_ascii_str_is_refused(
    offset: int, surrogate: str
) -> None:
    for prefix in ("a" * offset, "é" * offset, "\x01" * offset):
        with pytest.raises(ValueError, match="lone surrogate"):
            _testing.json_digest({"k": prefix + "🔐" + surrogate + "tail"})


def test_a_lone_surrogate_is_refused_as_such_even_where_the_text_would_not_fit() -> None:
    # As json.dumps(...).encode() in nomyo: the str's lone surrogate is the error, not the size
    # cap (once the str's character count fits it), wherever the surrogate lies behind escapes
    # that write the text in batches.
    for value, cap in (
        (["\x01" * 100 + "\ud800"], 200),  # 600 bytes of escapes before the surrogate
        (["\x01" + "é" * 300 + "\udfff"], 400),  # 302 characters fit the cap, 608 bytes not
        (["x", "\ud800é"], 5),  # '["x",' fills the cap: not even the opening quote fits
    ):
        with pytest.raises(ValueError, match="lone surrogate") as info:
            _testing.json_digest(value, cap)
        assert not isinstance(info.value, _core.PayloadTooLargeError)


MANY_WIDE_STRS = """
from nomyo_native import _core
from nomyo_native._core import _testing

doc = [{"role": "user", "content": f"h\\u00e9llo w\\u00f6rld {i}"} for i in range(4000)]
before = _core.memory_status()["lock_failures"]
digest, length = _testing.json_digest(doc)
print(json.dumps(dict(failures=_core.memory_status()["lock_failures"] - before, length=length)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit, setpriv")
def test_many_non_ascii_strs_grow_the_output_geometrically() -> None:
    # Each non-ASCII str is staged in the output's spare room: that room must grow the output
    # geometrically, not to an exact fit that the next str outgrows (a new buffer and a copy
    # of the whole output per str). Under a small binding RLIMIT_MEMLOCK every new buffer
    # past it is a counted lock failure, so their number counts the buffers made.
    r = run(MANY_WIDE_STRS, limited(256 * 1024))
    assert r["length"] > 128 * 1024
    assert r["failures"] <= 8
