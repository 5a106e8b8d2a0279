"""A request's header fields checked by h11 once per distinct field (``_request_fields``): the
same fields, the same refusals, as h11's own check of the whole head."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h11
import httpcore2
import pytest
from h11._headers import normalize_and_validate

from nomyo_native import _request_fields
from nomyo_native._http11 import Exchange
from nomyo_native._request_fields import checked_fields

HEAD = [
    (b"Host", b"example.org:8443"),
    (b"Accept", b"*/*"),
    (b"Content-Type", b"application/json"),
    (b"X-Public-Key", b"%2D" * 300),
    (b"Content-Length", b"12"),
]


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_request_fields, "_checked", {})
    yield


def full_items(headers: Any) -> list[tuple[bytes, bytes, bytes]]:
    return list(headers._full_items)


CASES = [
    HEAD,
    [*HEAD, (b"X-Payload-ID", b"abc")],
    [(b"Host", b"h"), (b"Transfer-Encoding", b"Chunked")],
    [(b"Host", b"h"), (b"Content-Length", b"5"), (b"content-length", b"5")],  # merged by h11
    [(b"Host", b"h"), (b"Content-Length", b"5, 5")],
    [(b"Host", b"h"), ("X-Str", "value")],  # str fields, as h11 takes them
    [(b"Host", b"h"), (memoryview(b"X-View"), b"value")],  # bytes-like, as h11 takes it
    [(b"Host", b"h"), (b"Content-Length", b"007"), (b"X-Empty", b"")],
    [(b"Host", b"h"), (b"Content-Length", b"1" * 20), (b"X-Obs", b"caf\xe9 \t au lait")],
    [(b"Host", b"h"), (b"transfer-encoding", b"CHUNKED")],  # lowered by h11
]


@pytest.mark.parametrize("fields", CASES)
def test_the_fields_are_those_h11_makes_whether_remembered_or_not(fields: list[Any]) -> None:
    expected = full_items(normalize_and_validate(fields))
    assert full_items(checked_fields(fields)) == expected  # checked now
    assert full_items(checked_fields(fields)) == expected  # remembered


REFUSED = [
    [(b"Host", b"h"), (b"X-Key", b"a\r\nInjected: 1")],
    [(b"Host", b"h"), (b"Bad Name", b"v")],
    [(b"Host", b"h"), (b"Content-Length", b"5"), (b"Content-Length", b"6")],
    [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
    [(b"Host", b"h"), (b"Transfer-Encoding", b"gzip")],
    [(b"Host", b"h"), (b"Content-Length", b"x")],
    [(b"Host", b"h"), (b"Content-Length", b"1" * 21)],
    [(b"Host", b"h"), (b"Content-Length", b"+5")],
    [(b"Host", b"h"), (b"Content-Length", b"")],
    [(b"Host", b"h"), (b"X-Trailing", b"v ")],
    [(b"Host", b"h"), (b"X-Nul", b"a\x00b")],
    [(b"Host", b"h"), (b"Content-Length", b"5"), ("Content-Length", "6")],  # one as str
]


@pytest.mark.parametrize("fields", REFUSED)
def test_a_field_h11_refuses_is_refused_with_its_error_even_among_remembered_ones(
    fields: list[Any],
) -> None:
    with pytest.raises(h11.LocalProtocolError) as by_h11:
        normalize_and_validate(fields)
    checked_fields([(b"Host", b"h"), (b"Content-Length", b"5")])  # remembered
    with pytest.raises(h11.LocalProtocolError) as ours:
        checked_fields(fields)
    assert str(ours.value) == str(by_h11.value)
    with pytest.raises(h11.LocalProtocolError):
        checked_fields(fields)  # and again: nothing refused is remembered


def test_the_first_field_refused_is_the_one_named() -> None:
    checked_fields([(b"Host", b"h"), (b"X-Late", b"fine")])
    fields = [(b"Host", b"h"), (b"X Early", b"v"), (b"X-Late", b"fine"), (b"X-Bad", b"\n")]
    with pytest.raises(h11.LocalProtocolError) as by_h11:
        normalize_and_validate(fields)
    with pytest.raises(h11.LocalProtocolError) as ours:
        checked_fields(fields)
    assert str(ours.value) == str(by_h11.value)


def spy_on_checks(patch: pytest.MonkeyPatch) -> list[Any]:
    """The fields checked from now on, in order, by h11's whole check or field by field with
    its expressions (``_plain_item``)."""
    checked: list[Any] = []
    plain_item = _request_fields._plain_item

    def spy(fields: list[Any], _parsed: bool = False) -> Any:
        checked.extend(fields)
        return normalize_and_validate(fields)

    def plain_spy(name: bytes, value: bytes) -> Any:
        checked.append((name, value))
        return plain_item(name, value)

    patch.setattr(_request_fields, "normalize_and_validate", spy)
    patch.setattr(_request_fields, "_plain_item", plain_spy)
    return checked


def test_a_remembered_field_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = spy_on_checks(monkeypatch)
    checked_fields([*HEAD, (b"X-Payload-ID", b"one")])
    checked_fields([*HEAD, (b"X-Payload-ID", b"two")])
    # Content-Length is checked every time: h11 compares it with any other framing field.
    assert checked == [
        *HEAD,
        (b"X-Payload-ID", b"one"),
        (b"Content-Length", b"12"),
        (b"X-Payload-ID", b"two"),
    ]


def test_credentials_are_checked_every_time_and_never_kept() -> None:
    fields = [
        (b"Host", b"h"),
        (b"Authorization", b"Bearer secret-key"),
        (b"proxy-authorization", b"Basic c2VjcmV0"),
        (b"Cookie", b"session=secret"),
    ]
    checked_fields(fields)
    kept = _request_fields._checked
    assert (b"Host", b"h") in kept
    assert not any(b"secret" in value or b"c2VjcmV0" in value for _, value in kept)


def test_the_memory_is_bounded() -> None:
    for number in range(3 * _request_fields._BOUND):
        checked_fields([(b"Host", b"h%d" % number), (b"User-Agent", b"%d" % number)])
    assert 0 < len(_request_fields._checked) <= _request_fields._BOUND


@pytest.mark.parametrize(
    "field",
    [
        (b"X-Payload-ID", b"payload-1"),
        (b"api-key", b"caller-secret"),
        (b"X-Api-Key", b"caller-secret"),
        (b"OpenAI-Organization", b"org-secret"),
        (b"X-Custom", b"anything"),
    ],
)
def test_only_the_librarys_own_public_fields_are_kept(field: tuple[bytes, bytes]) -> None:
    checked_fields([(b"Host", b"h"), (b"User-Agent", b"ua"), field, (b"Content-Length", b"2")])
    assert set(_request_fields._checked) == {(b"Host", b"h"), (b"User-Agent", b"ua")}
    with pytest.MonkeyPatch.context() as patch:
        checked = spy_on_checks(patch)
        checked_fields([(b"Host", b"h"), field])
    assert checked == [field]  # checked again by h11's expressions, the remembered Host not


def test_an_exchange_refuses_a_line_break_after_the_same_field_was_sent_clean() -> None:
    clean = [(b"Host", b"h"), (b"User-Agent", b"clean")]
    Exchange(b"POST", b"/", [*clean, (b"Content-Length", b"0")])
    assert (b"User-Agent", b"clean") in _request_fields._checked
    with pytest.raises(httpcore2.LocalProtocolError) as refused:
        Exchange(b"POST", b"/", [(b"Host", b"h"), (b"User-Agent", b"clean\r\nX-Evil: 1")])
    assert "Illegal header value" in str(refused.value)
    assert "Evil" not in str(refused.value)


FRAMING_TWICE = [
    (
        [
            [(b"Host", b"h"), (b"Content-Length", b"5")],
            [(b"Host", b"h"), (b"Content-Length", b"6")],
        ],
        [(b"Host", b"h"), (b"Content-Length", b"5"), (b"Content-Length", b"6")],
    ),
    (
        [[(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")]],
        [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
    ),
]


@pytest.mark.parametrize(("sent_before", "fields"), FRAMING_TWICE)
def test_framing_fields_each_remembered_are_still_compared_with_each_other(
    sent_before: list[list[Any]], fields: list[Any]
) -> None:
    with pytest.raises(h11.LocalProtocolError) as by_h11:
        normalize_and_validate(fields)
    for head in sent_before:
        checked_fields(head)  # each field of ``fields`` was accepted on its own before
    with pytest.raises(h11.LocalProtocolError) as ours:
        checked_fields(fields)
    assert str(ours.value) == str(by_h11.value)
    with pytest.raises(httpcore2.LocalProtocolError):
        Exchange(b"POST", b"/", fields)  # never sent


def test_a_repeated_length_each_remembered_is_merged_as_h11_merges_it() -> None:
    checked_fields([(b"Host", b"h"), (b"Content-Length", b"5")])
    checked_fields([(b"Host", b"h"), (b"content-length", b"5")])
    fields = [(b"Host", b"h"), (b"Content-Length", b"5"), (b"content-length", b"5")]
    assert full_items(checked_fields(fields)) == full_items(normalize_and_validate(fields))


def test_a_field_h11_does_not_take_is_refused_with_h11s_error() -> None:
    fields = [(b"Host", b"h"), (7, b"value")]
    with pytest.raises(TypeError) as by_h11:
        normalize_and_validate(fields)
    checked_fields([(b"Host", b"h")])  # remembered
    with pytest.raises(TypeError) as ours:
        checked_fields(fields)
    assert str(ours.value) == str(by_h11.value)
