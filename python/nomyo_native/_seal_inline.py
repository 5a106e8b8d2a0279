"""Which request payloads the async client seals on the event loop thread itself.

The core's calls run on worker threads so that the event loop keeps serving other tasks while
they work. A hand-off costs about 35-50 us of CPU (queue, thread wake-up, the loop's self-pipe
wake-up) and the loop thread itself spends part of it; sealing a small payload costs about
60 us, most of it the RSA-OAEP wrap with the server's *public* key, plus about 0.5 us per KiB
of AES-GCM and base64. Walking the payload dict into JSON holds the GIL wherever it runs, so
the loop is blocked during that part either way; only the encryption after it could overlap
with the loop. So a payload whose JSON provably fits in :data:`INLINE_SEAL_MAX_BYTES` is
sealed inline: the loop stalls at most ~70 us (what one hand-off and its wake-up cost), and
the request saves the whole hand-off. Everything larger or of unusual shape goes to a worker,
as does every RSA *private*-key operation (opening a response, ~1.4 ms; key generation).

:func:`json_size_bound` never walks more than :data:`_MAX_ENTRIES` values, so deciding costs
a few microseconds at most.
"""

from __future__ import annotations

from typing import Any

__all__ = ["INLINE_SEAL_MAX_BYTES", "json_size_bound", "seals_inline"]

INLINE_SEAL_MAX_BYTES = 16 * 1024
# Values (strings, numbers, containers, keys) looked at before giving up.
_MAX_ENTRIES = 64
# A character in JSON: \u00XX for a control character is 6 bytes; a character beyond the BMP
# written as an escaped surrogate pair is 12.
_ASCII_CHAR_BYTES = 6
_ANY_CHAR_BYTES = 12
# Longest JSON of a float (repr: sign, 17 digits, point, exponent) and of a 64-bit integer.
_FLOAT_BYTES = 24
_INT_BYTES = 20
_INT_RANGE = range(-(2**63), 2**64)


def seals_inline(payload: dict[str, Any]) -> bool:
    """True when ``payload``'s JSON is provably at most :data:`INLINE_SEAL_MAX_BYTES`."""
    return json_size_bound(payload) is not None


def json_size_bound(payload: object) -> int | None:
    """An upper bound of the bytes of ``payload`` as JSON, or None when it is above
    :data:`INLINE_SEAL_MAX_BYTES`, has more than :data:`_MAX_ENTRIES` values, or holds a value
    whose size is not known at a glance (a subclass, a huge integer, anything the core would
    refuse)."""
    bound = _Bound()
    return bound.total if bound.add(payload) else None


class _Bound:
    def __init__(self) -> None:
        self.total = 0
        self.entries = 0

    def add(self, value: object) -> bool:
        self.entries += 1
        if self.entries > _MAX_ENTRIES:
            return False
        if type(value) is str:
            per_char = _ASCII_CHAR_BYTES if value.isascii() else _ANY_CHAR_BYTES
            self.total += 2 + per_char * len(value)
        elif type(value) is bool or value is None:
            self.total += 5
        elif type(value) is int:
            if value not in _INT_RANGE:
                return False
            self.total += _INT_BYTES
        elif type(value) is float:
            self.total += _FLOAT_BYTES
        elif type(value) is dict:
            return self._add_dict(value)
        elif type(value) is list or type(value) is tuple:
            return self._add_items(value)
        else:
            return False
        return self.total <= INLINE_SEAL_MAX_BYTES

    def _add_dict(self, value: dict[object, object]) -> bool:
        self.total += 2  # braces
        for key, item in value.items():
            self.total += 2  # colon and comma
            # A key that is not a str is written as a quoted string of its JSON.
            self.total += 2
            if not (self.add(key) and self.add(item)):
                return False
        return self.total <= INLINE_SEAL_MAX_BYTES

    def _add_items(self, value: list[object] | tuple[object, ...]) -> bool:
        self.total += 2  # brackets
        for item in value:
            self.total += 1  # comma
            if not self.add(item):
                return False
        return self.total <= INLINE_SEAL_MAX_BYTES
