"""h11's field-line expression made linear: the same matches without its quadratic backtracking.

h11 (0.16) reads every header and trailer line with ``header_field_re``, ``name ":" OWS
value? OWS``. On a line it refuses (a NUL, a form feed or a bare CR after a long run of blanks)
the engine tries every split of the blanks between the two OWS: a hostile server's 100 KiB
trailer line of blanks held the event loop for about 70 s. A value starts and ends with a
character that is not a blank, so the blanks before it can be taken possessively and the
value's runs atomically without losing a match: the same groups for every line, in one pass.

The expression is swapped in h11's module (which reads it as a global at each line) only if it
is the one this was written against; another h11 release's is left as it is.
"""

from __future__ import annotations

import re

from h11 import _readers

__all__ = ["LINEAR_FIELD_LINE", "install"]

# h11 0.16's header_field_re, as _abnf builds it.
_H11_FIELD_LINE = (
    rb"(?P<field_name>[-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*"
    rb"(?P<field_value>([^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
LINEAR_FIELD_LINE = re.compile(
    rb"(?P<field_name>[-!#$%&'*+.^_`|~0-9a-zA-Z]++):[ \t]*+"
    rb"(?P<field_value>([^\x00\s]++(?:[ \t]++[^\x00\s]++)*+)?)[ \t]*+"
)


def install() -> bool:
    """Put the linear expression in h11's reader; whether it is there now."""
    current = _readers.header_field_re
    if current is LINEAR_FIELD_LINE:
        return True
    if current.pattern != _H11_FIELD_LINE or current.flags != LINEAR_FIELD_LINE.flags:
        return False
    _readers.header_field_re = LINEAR_FIELD_LINE
    return True
