"""h11's field-line expression swapped for a linear one: the same matches and groups for every
line, h11 itself reading with it, and another h11 release's expression left alone."""

from __future__ import annotations

import re

import h11
import pytest
from h11 import _readers
from hypothesis import given, settings
from hypothesis import strategies as st

from nomyo_native._h11_linear import LINEAR_FIELD_LINE, install

# h11's own expression, compiled afresh from its ABNF: what the swap must agree with.
H11_FIELD_LINE = re.compile(h11._abnf.header_field.encode("ascii"))

# Bytes that steer the expression: blanks, the refused NUL/CR/LF/VT/FF, visible characters,
# the name/value separator and obs-text.
PIECES = [b" ", b"\t", b"\x00", b"\r", b"\n", b"\x0b", b"\x0c", b"a", b"Z", b"-", b":", b"\x80",
          b"\xff", b"\x7f", b"\x01", b";", b","]  # fmt: skip


def groups(pattern: re.Pattern[bytes], line: bytes) -> dict[str, bytes] | None:
    matched = pattern.fullmatch(line)
    return None if matched is None else matched.groupdict()


def test_h11_reads_with_the_linear_expression() -> None:
    import nomyo_native._http11  # noqa: F401  (importing the framing installs it)

    assert _readers.header_field_re is LINEAR_FIELD_LINE
    assert install() is True  # idempotent


@settings(max_examples=3000, deadline=None)
@given(
    name=st.lists(st.sampled_from(PIECES), max_size=4),
    rest=st.lists(st.sampled_from(PIECES), max_size=30),
)
def test_every_line_matches_as_h11s_own_expression(name: list[bytes], rest: list[bytes]) -> None:
    for line in (b"".join(name + rest), b"X-Field:" + b"".join(rest), b"k:" + b"".join(rest)):
        assert groups(LINEAR_FIELD_LINE, line) == groups(H11_FIELD_LINE, line), line


@pytest.mark.parametrize(
    "line",
    [b"Name: value", b"Name:value", b"Name:   ", b"Name:", b"N: a  b\t c  ", b"N:\ta\t",
     b"N: a\x00", b"N: " + b" " * 50 + b"\x00", b"N : v", b": v", b"N: a\rb", b"N: \x80\xff"],
)  # fmt: skip
def test_chosen_lines_match_as_h11s_own_expression(line: bytes) -> None:
    assert groups(LINEAR_FIELD_LINE, line) == groups(H11_FIELD_LINE, line)


def test_another_h11_expression_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    other = re.compile(rb"(?P<field_name>[a-z]+):(?P<field_value>.*)")
    monkeypatch.setattr(_readers, "header_field_re", other)
    assert install() is False
    assert _readers.header_field_re is other


def test_a_long_refused_line_is_one_pass() -> None:
    # 1 MiB of blanks then a NUL: refused (h11's expression takes minutes on a tenth of it).
    assert LINEAR_FIELD_LINE.fullmatch(b"X:" + b" " * (1 << 20) + b"\x00") is None
