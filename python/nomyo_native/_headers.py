"""Request header values the caller supplies (API key, payload id), checked before anything is
built or sent.

The HTTP layer refuses a header value it cannot encode and puts the value in its message; were
that message to reach an exception or a log, a bearer token would leak with it. So every value
is checked here first, against the strictest grammar that fits it, and the errors raised here
never quote the value.
"""

from __future__ import annotations

from nomyo_native.errors import SecurityError

__all__ = ["is_visible_ascii", "validate_api_key", "validate_payload_id"]

# RFC 5234 VCHAR: %x21-7E. No space, no tab, no control, nothing outside ASCII.
_VCHAR_MIN, _VCHAR_MAX = 0x21, 0x7E
_MAX_PAYLOAD_ID_LEN = 256


def is_visible_ascii(value: str) -> bool:
    """True when ``value`` is ``1*VCHAR``: one or more visible ASCII characters."""
    # ASCII and printable is %x20-7E (space, then every visible character); in C, where a
    # per-character generator cost ~4 us for the payload id of every request.
    return bool(value) and value.isascii() and value.isprintable() and " " not in value


def _describe_refusal(value: str) -> str:
    """Why ``value`` was refused, naming a character class and position, never the value."""
    for index, ch in enumerate(value):
        code = ord(ch)
        if _VCHAR_MIN <= code <= _VCHAR_MAX:
            continue
        if ch.isspace():
            kind = "whitespace"
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            kind = "a control character"
        else:
            kind = "a non-ASCII character"
        return f"{kind} (U+{code:04X}) at position {index} of {len(value)}"
    return "no characters"  # pragma: no cover - only reached for visible ASCII


def validate_api_key(api_key: str | None) -> str | None:
    """The key as given when it is ``1*VCHAR``; ``None`` for ``None`` or ``""`` (no key).

    Anything else (a space or tab anywhere, CR, LF, NUL, any control, any non-ASCII character)
    raises :class:`SecurityError`, whose message says what was wrong and where, never the key.
    """
    if api_key is None:
        return None
    if not isinstance(api_key, str):
        raise TypeError("api_key must be a str")
    if api_key == "":
        return None
    if not is_visible_ascii(api_key):
        # `from None` everywhere up the stack: nothing chained may hold the key either.
        raise SecurityError(
            "API key refused: it is sent in an HTTP header, so it must be visible ASCII "
            "characters only (no spaces, tabs, line breaks or control characters, which would "
            "mean header injection or a header the HTTP layer refuses); found "
            f"{_describe_refusal(api_key)}. Check for a stray space or newline from copying it."
        )
    return api_key


def validate_payload_id(payload_id: str) -> str:
    """A payload id goes into ``X-Payload-ID``: ``1*VCHAR``, at most 256 characters."""
    if not isinstance(payload_id, str) or not payload_id:
        raise ValueError("payload_id must be a non-empty str")
    if len(payload_id) > _MAX_PAYLOAD_ID_LEN:
        raise ValueError(f"payload_id is longer than {_MAX_PAYLOAD_ID_LEN} characters")
    if not is_visible_ascii(payload_id):
        raise ValueError(
            "payload_id must be visible ASCII characters only (it is sent as a header); "
            f"found {_describe_refusal(payload_id)}"
        )
    return payload_id
