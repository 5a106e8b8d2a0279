"""A final response head read in one strict pass: the heads a server sends every time, read as
h11's reader reads them, without h11; anything else is left to h11 (``_http11_plain``).

h11 reads a head line by line: the lines split and stripped, one regular expression per line,
a generator unfolding continuation lines, its header list normalized again and an event
object built, about half the Python an exchange's framing costs. The heads read here are a
strict subset of what h11 accepts: ``HTTP/1.1``, a final status (200-999), every line ending
in CRLF, field values of visible ASCII (words separated by spaces or tabs, blanks around them
dropped as h11 drops them), at most one ``Content-Length`` of 1 to 20 digits and no
``Transfer-Encoding``. For such a head the status, reason and fields are those h11 gives;
for any other (interim, HTTP/1.0, bare LF, obs-text, a framing field h11 normalizes or
compares, anything malformed) :func:`read_plain_head` says None, and h11 reads the head and
refuses it with its own words. ``tests/client/test_http11_head_differential.py`` holds the two
to agreement.
"""

from __future__ import annotations

import re

__all__ = ["PlainHead", "read_plain_head"]

# h11's token (RFC 9110 field-name): the names of the fields.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
# A field line: h11's ``field-name ":" OWS field-value OWS``, with the value's characters
# visible ASCII only (h11 also takes obs-text, 0x80-0xFF: such a head goes to h11).
# Possessive (``*+``, ``++``): a line that fails is not retried with its blanks split another
# way (``OWS value? OWS`` backtracked quadratically: a 100 KiB line of blanks cost seconds);
# no match is lost, since a value starts and ends with a visible character.
_VALUE = rb"[\x21-\x7e]++(?:[ \t]++[\x21-\x7e]++)*+"
_FIELD_LINE = re.compile(rb"(%s):[ \t]*+(%s)?[ \t]*\r\n" % (_TOKEN, _VALUE))
# The whole head: status line (h11's reason phrase without obs-text), field lines, empty line.
_HEAD = re.compile(
    rb"HTTP/1\.1 ([2-9][0-9][0-9]) ([\t\x20-\x7e]*+)\r\n((?:%s:[ \t]*+(?:%s)?[ \t]*+\r\n)*+)\r\n"
    % (_TOKEN, _VALUE)
)
# Framing fields h11 normalizes (Content-Length) or reads itself (Transfer-Encoding).
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
# h11's bound on a Content-Length's digits.
_MAX_LENGTH_DIGITS = 20

# (status, reason, fields as received: (name, value) in order)
PlainHead = tuple[int, bytes, list[tuple[bytes, bytes]]]


def read_plain_head(head: bytes) -> PlainHead | None:
    """``head`` (a whole head, through its empty line) read as h11 reads it, when it is one of
    the plain heads described above; else None (h11 must read it)."""
    matched = _HEAD.fullmatch(head)
    if matched is None:
        return None
    fields: list[tuple[bytes, bytes]] = _FIELD_LINE.findall(matched.group(3))
    lengths = 0
    for name, value in fields:
        lowered = name.lower()
        if lowered == _CONTENT_LENGTH:
            lengths += 1
            if lengths > 1 or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None  # h11 compares, normalizes or refuses it
        elif lowered == _TRANSFER_ENCODING:
            return None
    return int(matched.group(1)), matched.group(2), fields
