"""Credentials in a base URL (``https://user:password@host``): used, never shown.

A base URL may carry userinfo for a proxy's Basic authentication. The password must then appear
in no exception, ``repr`` or log record, and httpx2 logs every request URL in full at INFO. So
requests go to the URL without its userinfo, the credentials travel as an explicit
``httpx2.BasicAuth`` (what httpx2 derived from the URL before; split off in ``_http_edge``),
and every message names the URL through :func:`redact_url`.
"""

from __future__ import annotations

import base64

__all__ = ["basic_token", "redact_url"]

_REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with everything before its last ``@`` after the scheme replaced by ``***``.

    Deliberately coarse: a password may hold unescaped ``/``, ``?`` or ``#`` (the URL is then
    broken, yet the secret must still not be printed), so no URL parser decides where it ends.
    A path containing ``@`` is over-redacted, which is harmless in a message.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{separator}{_REDACTED}@{rest.rpartition('@')[2]}"


def basic_token(username: str, password: str) -> str:
    """The token of the ``Authorization: Basic`` header httpx2 sends for these credentials
    (base64 of ``username:password`` in UTF-8): a secret in its own right, as it decodes to the
    password."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
