"""What the SDK transport serves: one method on one URL, with the credentials and tier it uses.

No I/O here: a request's method, URL and headers in; a refusal or the facts to send out.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from nomyo_native._headers import validate_api_key
from nomyo_native.client import VALID_SECURITY_TIERS

# The SDK's chat-completions path under its base URL (<router>/v1).
SDK_COMPLETIONS_PATH = "/v1/chat/completions"
# The only request the transport turns into a secure completion.
SERVED = f"POST <router>{SDK_COMPLETIONS_PATH}"
TIER_HEADER = "x-security-tier"
# How many served URLs (spellings of the one served URL: case, explicit port) a gate remembers.
_REMEMBERED_URLS = 8


@dataclass(frozen=True)
class Refusal:
    """A request the transport answers itself (nothing is sent): status, error type, message."""

    status: int
    error_type: str
    message: str


def router_of(base_url: str) -> str:
    """The NOMYO router URL from what a caller gave: the router itself or, as for the SDK, the
    router with ``/v1`` (a router takes no path of its own, so the ``/v1`` is the SDK's)."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1") if url.endswith("/v1") else url


def _origin_and_path(url: str) -> tuple[str, str, str]:
    """(scheme://host:port, path, query) with the default port made explicit."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return f"{scheme}://{host}:{port}", parts.path, parts.query


class Gate:
    """Decides whether a request is the one the transport serves."""

    def __init__(self, router_url: str) -> None:
        origin, path, _ = _origin_and_path(router_url)
        self._origin = origin
        self._path = path.rstrip("/") + SDK_COMPLETIONS_PATH
        # URLs found to be the served one: the SDK posts every completion to the same URL, and
        # parsing it again for each request is most of a check.
        self._served_urls: set[str] = set()

    def check(self, method: str, url: str) -> Refusal | None:
        """None when ``method url`` is the chat-completions call, else why it is refused."""
        if url in self._served_urls:
            return _method_refusal(method, self._path)
        refusal = self._url_refusal(method, url)
        if refusal is None and len(self._served_urls) < _REMEMBERED_URLS:
            self._served_urls.add(url)
        return refusal

    def _url_refusal(self, method: str, url: str) -> Refusal | None:
        origin, path, query = _origin_and_path(url)
        if origin != self._origin or path != self._path:
            return Refusal(
                404,
                "not_found_error",
                f"nomyo_native.openai serves only {SERVED} (secure chat completions); "
                f"{method} {path or '/'} was refused in the transport and nothing was sent. "
                "Embeddings, files, audio, models and the responses API have no secure "
                "endpoint.",
            )
        refusal = _method_refusal(method, path)
        if refusal is not None:
            return refusal
        if query:
            return Refusal(
                400,
                "invalid_request_error",
                "query parameters cannot be carried by the secure completion protocol "
                "(only the sealed body is sent); nothing was sent",
            )
        return None


def _method_refusal(method: str, path: str) -> Refusal | None:
    if method.upper() == "POST":
        return None
    message = f"{method} is not served on {path}: only POST; nothing was sent"
    return Refusal(405, "invalid_request_error", message)


def bearer_of(headers: Mapping[str, str]) -> str | None:
    """The token of the SDK's ``Authorization: Bearer ...`` header, if any."""
    value = headers.get("authorization")
    if value is None or not value[:7].lower() == "bearer ":
        return None
    token = value[7:].strip()
    return token or None


def api_key_for(own_key: str | None, headers: Mapping[str, str]) -> str | None:
    """NOMYO's API key: ours (option, else NOMYO_API_KEY, resolved by the client), else the
    bearer token the SDK sends (what users give the SDK as its mandatory ``api_key``)."""
    if own_key:
        return own_key
    return validate_api_key(bearer_of(headers))


def tier_for(own_tier: str | None, headers: Mapping[str, str]) -> str | None:
    """The security tier: the request's ``X-Security-Tier`` header (validated) when the caller
    set one, else ours."""
    requested = headers.get(TIER_HEADER)
    if requested is None:
        return own_tier
    if requested not in VALID_SECURITY_TIERS:
        # The header's value is not quoted back: header values stay out of messages.
        raise ValueError(
            f"the X-Security-Tier header must be one of {', '.join(VALID_SECURITY_TIERS)}"
        )
    return requested
