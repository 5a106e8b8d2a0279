"""What the protocol layer needs of the HTTP stack's URL parsing and TLS, built on httpx2 and
ssl: the base URL split from its credentials, the verifying SSLContext, the pin files (keyed
by httpx2-normalized origins). The clients hand this module to ``ClientBase._setup``, so that
the decisions (``_client_base``, ``_trust``) load nothing of the network themselves.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

import httpx2

from nomyo_native._config import RouterURL
from nomyo_native._http_body import IDENTITY_ENCODING, LOCAL_REFUSALS, NETWORK_FAILURES
from nomyo_native._option_hints import option
from nomyo_native._pinfile import PinFile, normalize_origin
from nomyo_native._tls import tls_context
from nomyo_native._urls import basic_token, redact_url

__all__ = [
    "IDENTITY_ENCODING",
    "LOCAL_REFUSALS",
    "NETWORK_FAILURES",
    "enrolled_aik",
    "normalize_origin",
    "parse_router_url",
    "pin_file",
    "split_credentials",
    "tls_context",
]


def pin_file(path: str | os.PathLike[str]) -> PinFile:
    """The trust-on-first-use pin file at ``path``."""
    return PinFile(path)


def enrolled_aik(pin_file: str | os.PathLike[str], base_url: str) -> str | None:
    """The AIK fingerprint enrolled for ``base_url`` in ``pin_file`` (None if not enrolled)."""
    return PinFile(pin_file).pinned(base_url)


def split_credentials(url: str) -> tuple[str, httpx2.BasicAuth | None]:
    """The URL to send requests to (no userinfo) and the Basic credentials it carried."""
    parsed = httpx2.URL(url)
    if not parsed.userinfo:
        return url, None
    auth = httpx2.BasicAuth(parsed.username, parsed.password)
    return str(parsed.copy_with(userinfo=b"")).rstrip("/"), auth


def parse_router_url(router_url: Any) -> RouterURL:
    """The base URL checked and split (a ``ValueError`` naming it, credentials redacted)."""
    if not isinstance(router_url, str):
        raise TypeError("router_url must be a str")
    url = router_url.rstrip("/")
    parsed: RouterURL | None
    try:
        split = urllib.parse.urlsplit(url)
        # The credentials it carried are sent as Basic auth, as httpx2 did from the URL.
        request_url, auth = split_credentials(url)
        userinfo = httpx2.URL(url)
        secrets = tuple(s for s in (userinfo.password, userinfo.username) if s)
        if auth is not None:
            # A server quoting the Authorization header it got must not leak them either.
            secrets += (basic_token(userinfo.username, userinfo.password),)
        parsed = None
        if split.scheme in ("http", "https") and split.hostname:
            https = split.scheme == "https"
            parsed = RouterURL(url, redact_url(url), request_url, auth, secrets, https)
    except (ValueError, httpx2.InvalidURL):
        # Raised below, outside this handler: the parser's message quotes URL parts (a
        # password taken for a port), and not even __context__ may keep it.
        parsed = None
    if parsed is None:
        raise ValueError(
            f"{option('base_url', redact_url(router_url))} is not an http(s) URL with a "
            "host (e.g. https://api.nomyo.ai)"
        )
    return parsed
