"""A request's header fields checked by h11 once per distinct field, not on every request.

h11 checks each header field of each request it sends: a regular expression over its name and
one over its value, the ~1 KB percent-encoded public key included (most of the head's cost,
about 20 us a request). A client sends nearly the same fields every time, so each distinct
(name, value) h11 accepted is remembered, within a bound, and a head whose fields are all
remembered goes to h11 as fields it already checked (as it takes the fields it parsed itself).
Only the fields the library itself sends with the same public value every time are remembered
(Host, the protocol's content headers, the client's public key): any other field (the payload
id, credentials, a caller's own headers, which may carry a secret of theirs such as an
``api-key``) is checked by h11 on every request, with h11's own error, and never kept; so are
the framing fields (Content-Length, Transfer-Encoding), which h11 compares with each other: a
head giving more than one goes to h11's full check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# h11's own check and its checked-fields type: the same code that checks every request, called
# on fewer fields (h11 exports neither).
from h11._headers import (
    CONTENT_LENGTH_MAX_DIGITS,
    Headers,
    _field_name_re,
    _field_value_re,
    normalize_and_validate,
)

__all__ = ["checked_fields"]

# The only fields remembered: public values the library sends on every request. Anything else
# may be a caller's secret (it must not outlive its request in a cache) or change per request
# (a payload id would only churn the memory); a framing field is compared by h11 with the
# others of its head (two remembered lengths, each fine alone, would go out together unchecked).
_KEPT = frozenset(
    {
        b"host",
        b"accept",
        b"accept-encoding",
        b"connection",
        b"content-type",
        b"user-agent",
        b"x-public-key",
    }
)
# Distinct fields remembered before the memory starts again.
_BOUND = 256

Field = tuple[bytes, bytes]
_checked: dict[Field, tuple[bytes, bytes, bytes]] = {}


def checked_fields(fields: list[Field]) -> Headers:
    """``fields`` as h11 checks and normalizes them: h11's LocalProtocolError for the first
    one it refuses. Those checked on an earlier request are not checked again."""
    known = _checked
    try:
        # Each field as given (a pair): a list or any other unhashable pair goes to h11 alone.
        items: list[Any] = [known.get(field) for field in fields]
    except TypeError:  # an unhashable name or value (not what httpcore2 passes on): h11 alone
        return normalize_and_validate(fields)
    if None not in items:
        return Headers(items)
    unchecked = [field for field, item in zip(fields, items, strict=True) if item is None]
    if any(type(name) is not bytes or type(value) is not bytes for name, value in unchecked):
        return normalize_and_validate(fields)  # h11 converts them, or refuses them as it does
    # Framing fields are never remembered: any two of them are among the unchecked ones.
    lowered = [name.lower() for name, _ in unchecked]
    if lowered.count(b"content-length") + lowered.count(b"transfer-encoding") > 1:
        return normalize_and_validate(fields)  # h11 compares these fields with each other
    # One item per field, in order (with no framing field repeated, h11 merges none).
    plain = [_plain_item(*field) for field in unchecked]
    fresh: Iterator[Any] = iter(
        plain if None not in plain else normalize_and_validate(unchecked)._full_items
    )
    kept = iter(lowered)
    for index, item in enumerate(items):
        if item is None:
            item = items[index] = next(fresh)
            if next(kept) in _KEPT:
                if len(known) >= _BOUND:
                    known.clear()
                name, value = fields[index]
                known[name, value] = item
    return Headers(items)


def _plain_item(name: bytes, value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The item h11 makes of one field that its own expressions accept and that it neither
    normalizes nor refuses for its framing (a Content-Length of digits only, no
    Transfer-Encoding); None for any other, which h11 then checks whole (and words the
    refusal). The same check as h11's, without its per-field machinery."""
    lowered = name.lower()
    if lowered == b"transfer-encoding":
        return None
    if _field_name_re.fullmatch(name) is None or _field_value_re.fullmatch(value) is None:
        return None
    if lowered == b"content-length" and not (
        value.isdigit() and len(value) <= CONTENT_LENGTH_MAX_DIGITS
    ):
        return None
    return name, lowered, value
