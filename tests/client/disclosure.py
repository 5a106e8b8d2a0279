"""Everything an exception tells whoever sees it: for tests that a secret is in none of it."""

from __future__ import annotations

import traceback


def everything_said_about(exc: BaseException) -> str:
    """The exception's text, repr, args, details, whole cause/context chain and traceback."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        parts.append(repr(getattr(current, "error_details", None)))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
