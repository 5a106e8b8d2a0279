"""Requests built as httpx2's clients build them from their settings, for a driver to hand
straight to its transport (``handle_request``/``handle_async_request``, httpx2's public
transport API).

``httpx2.Client.send`` and its async twin run per-request layers this library does not use
(URL merging, the auth and redirect generators, event hooks, the bound response stream):
about 40 us of CPU per request. A driver's client has fixed settings (default headers,
timeouts, Basic auth from the URL, no hooks, redirects not followed), so
:class:`RequestBuilder` builds the same request (the same head, byte for byte and in order)
and records what the client would after the answer (cookies, its INFO log line).
"""

from __future__ import annotations

import logging

import httpcore2
import httpx2

__all__ = ["RequestBuilder", "httpx_logs_requests"]

# httpx2 logs every request it sends at INFO on this logger; the drivers keep that line.
_httpx_logger = logging.getLogger("httpx2")
# Headers httpx2 adds to a request itself unless given.
_AUTOMATIC = frozenset({b"host", b"content-length", b"transfer-encoding"})


class RequestBuilder:
    """Requests as ``http`` builds them (its default headers, timeouts, cookie jar and the
    ``auth`` it was given); ``http``'s settings must not change after this is made."""

    def __init__(
        self, http: httpx2.Client | httpx2.AsyncClient, auth: httpx2.BasicAuth | None
    ) -> None:
        self._cookies = http.cookies
        self._default_headers = http.headers
        self._timeouts = http.timeout.as_dict()
        self._authorization = _authorization(auth)
        # Taken once, by lowered name, for the heads built without httpx2's merging.
        self._defaults = {name.lower(): (name, value) for name, value in http.headers.raw}
        # Parsing a URL costs more than the rest of a request's head: once per URL.
        self._urls: dict[str, httpx2.URL] = {}
        # httpcore2's URL of each httpx2 URL, as httpx2's transport converts it: once per URL.
        self._core_urls: dict[httpx2.URL, httpcore2.URL] = {}
        # Their origins and targets, for the attempts that go without httpcore2's model.
        self._targets: dict[str, tuple[httpcore2.Origin, bytes]] = {}
        self._routing: dict[str, httpcore2.Request] = {}

    @property
    def timeouts(self) -> dict[str, float | None]:
        """The client's timeouts, as a request's ``timeout`` extension (not to be changed)."""
        return self._timeouts

    def url(self, url: str) -> httpx2.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx2.URL(url)
        return parsed

    def plain_head(
        self, url: httpx2.URL, headers: dict[str, str], content: bytes | None
    ) -> list[tuple[bytes, bytes]] | None:
        """The head of a request with a body of bytes and no cookie or auth to add, built
        without httpx2's header models; None when httpx2 must build it (see :meth:`_head`)."""
        # An empty body is left to httpx2: its Content-Length: 0 goes right after Host; and so
        # is any content but bytes (httpx2 takes a bytearray for an iterable of chunks).
        if content and type(content) is bytes and self._authorization is None and not self._cookies:
            return self._head(url, headers, len(content))
        return None

    def plain_request(
        self, method: str, url: httpx2.URL, head: list[tuple[bytes, bytes]], content: bytes
    ) -> httpx2.Request:
        """The request httpx2 builds from a :meth:`plain_head` and its body."""
        request = httpx2.Request(
            method,
            url,
            headers=head,
            stream=httpx2.ByteStream(content),
            extensions={"timeout": dict(self._timeouts)},
        )
        request.read()  # as httpx2 reads content it is given (no copy: one chunk)
        return request

    def core_request(
        self, method: str, url: httpx2.URL, head: list[tuple[bytes, bytes]], content: bytes
    ) -> httpcore2.Request:
        """The ``httpcore2.Request`` httpx2's transport makes of a :meth:`plain_request`, for a
        driver's direct attempt on its pool."""
        return httpcore2.Request(
            method.upper(),
            self._core_url(url),
            headers=head,
            content=content,
            extensions={"timeout": self._timeouts},
        )

    def plain_target(self, url: str) -> tuple[httpcore2.Origin, bytes] | None:
        """The origin and request target of an http or https ``url`` as httpx2's transport
        converts it (for an attempt on our pool without httpcore2's request model); None for
        any other scheme, which the pool refuses with httpcore2's words. Kept by the URL's
        text: an ``httpx2.URL`` hashes by building its text anew."""
        target = self._targets.get(url)
        if target is None:
            core_url = self._core_url(self.url(url))
            if core_url.scheme not in (b"http", b"https"):
                return None
            target = self._targets[url] = (core_url.origin, core_url.target)
        return target

    def routing_request(self, url: str) -> httpcore2.Request | None:
        """A request that only names an http or https ``url`` (no head, no body), for a pool
        that routes a request sent without httpcore2's model by its origin; None for any other
        scheme. Made once per URL."""
        routing = self._routing.get(url)
        if routing is None:
            if self.plain_target(url) is None:
                return None
            routing = self._routing[url] = httpcore2.Request("GET", self._core_url(self.url(url)))
        return routing

    def _core_url(self, url: httpx2.URL) -> httpcore2.URL:
        core_url = self._core_urls.get(url)
        if core_url is None:
            core_url = self._core_urls[url] = httpcore2.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            )
        return core_url

    def build(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> httpx2.Request:
        parsed = self.url(url)
        head = self.plain_head(parsed, headers, content)
        if head is not None:
            assert content is not None
            return self.plain_request(method, parsed, head, content)
        extensions = {"timeout": dict(self._timeouts)}
        merged = httpx2.Headers(self._default_headers)
        merged.update(headers)
        request = httpx2.Request(
            method,
            parsed,
            headers=merged,
            cookies=self._cookies if self._cookies else None,
            content=content,
            extensions=extensions,
        )
        if self._authorization is not None:
            request.headers["Authorization"] = self._authorization
        return request

    def _head(
        self, url: httpx2.URL, headers: dict[str, str], length: int
    ) -> list[tuple[bytes, bytes]] | None:
        """The head httpx2 builds for ``content`` of ``length`` bytes with no cookie or auth
        to add: Host, the defaults that ``headers`` do not replace, ``headers`` in their
        order, Content-Length. httpx2's own merging of case-insensitive header objects costs
        about 15 us a request; None for a head it must build itself (a Host or length given,
        a name given twice)."""
        merged = self._defaults.copy()
        for name, value in headers.items():
            # httpx2's encoding of str names and values (a UnicodeEncodeError refuses it).
            key = name.encode("ascii")
            lowered = key.lower()
            # A replaced default goes, the new value comes last.
            replaced = merged.pop(lowered, None)
            if replaced is not None and replaced is not self._defaults.get(lowered):
                return None  # a name given twice (in two cases): httpx2 sends both
            merged[lowered] = (key, value.encode("ascii"))
        if not url.host or not _AUTOMATIC.isdisjoint(merged):
            return None
        return [(b"Host", url.netloc), *merged.values(), (b"Content-Length", b"%d" % length)]

    def received(self, request: httpx2.Request, response: httpx2.Response) -> None:
        """What the client does with a response's head: keep its cookies, log the line."""
        response.request = request
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            self._cookies.extract_cookies(response)
        if httpx_logs_requests():
            _httpx_logger.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )


def httpx_logs_requests() -> bool:
    """Whether httpx2's INFO line of each request is logged."""
    return _httpx_logger.isEnabledFor(logging.INFO)


def _authorization(auth: httpx2.BasicAuth | None) -> str | None:
    """The ``Authorization`` value ``auth`` puts on every request (its flow sets it alone)."""
    if auth is None:
        return None
    probe = httpx2.Request("GET", "http://auth.invalid/")
    next(auth.sync_auth_flow(probe))
    return probe.headers["Authorization"]
