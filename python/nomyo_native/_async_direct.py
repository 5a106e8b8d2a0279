"""One attempt on the library's own async transport without httpx2's request and response
models, for a request whose head the driver builds itself (``RequestBuilder.plain_head``).

``httpx2.AsyncHTTPTransport`` turns an ``httpx2.Request`` into an ``httpcore2.Request``, the
answer into an ``httpx2.Response`` (its header model normalizing every field again) with a
stream wrapped twice, and runs each step in an exception-mapping context manager: about 30 us
of CPU per small request, more than the HTTP/1.1 exchange on the wire costs in Python. Our own
transport (``AsyncioTLSTransport``) is a pool of our own connections, so this hands the pool
the ``httpcore2.Request`` the transport would build, reads the body from the pool's stream
with the same cap, and maps a failure to the httpx2 exception the transport would raise, on
the failure's path only. An answer whose head the driver reads through httpx2's model (a
``Retry-After``, a ``Content-Encoding``, a cookie to keep) or that is logged at INFO on
``httpx2`` goes on as the ``httpx2.Response`` the transport would have made.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import NoReturn

import httpcore2
import httpx2

try:
    # httpx2's own mapping and stream (private: it exports neither). A release that moves them
    # turns this path off (AVAILABLE), and every request takes httpx2's transport instead.
    from httpx2._transports.default import AsyncResponseStream, map_httpcore_exceptions
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

from nomyo_native._async_pool import HTTP11ConnectionPool, PooledResponse
from nomyo_native._http11_state import tracing_wanted
from nomyo_native._http_body import whole_body
from nomyo_native._http_request import RequestBuilder, httpx_logs_requests
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES, Answer
from nomyo_native.errors import ResponseFormatError

__all__ = ["AVAILABLE", "DirectExchange", "needs_model", "raise_as_httpx2", "refuse_declared_over"]

# Fields of an answer the driver reads through httpx2's response model (lower case).
_READ_BY_MODEL = frozenset({b"retry-after", b"content-encoding", b"set-cookie", b"set-cookie2"})


class DirectExchange:
    """Attempts on ``pool`` (the transport's) for requests built by ``requests``."""

    def __init__(self, pool: HTTP11ConnectionPool, requests: RequestBuilder) -> None:
        self._pool = pool
        self._requests = requests

    async def send(
        self,
        method: str,
        url: str,
        head: list[tuple[bytes, bytes]],
        content: bytes,
        ok_cap: int,
    ) -> Answer | httpx2.Response:
        """The answer, read within ``ok_cap`` (a 200) or the error bodies' cap; or the
        ``httpx2.Response`` with its head read, for the caller to read and close, when its
        head needs httpx2's model."""

        def request() -> httpx2.Request:
            return self._requests.plain_request(method, self._requests.url(url), head, content)

        target = self._requests.plain_target(url)
        if target is None or tracing_wanted():
            return await self._send_modelled(method, self._requests.url(url), head, content)
        origin, path = target
        try:
            response = await self._pool.send_plain(
                origin,
                (method.upper().encode("ascii"), path, head),
                content,
                self._requests.timeouts,
            )
        except Exception as exc:
            raise_as_httpx2(exc, request)
        if needs_model(response.head.headers):
            return self._as_httpx2(response.core_response(), request())
        status = response.head.status
        cap = ok_cap if status == 200 else MAX_ERROR_BODY_BYTES
        try:
            body = await _read_capped(response, cap)
        except ResponseFormatError:
            if status == 200:
                raise
            body = b""  # an oversized error body: the status says enough
        except Exception as exc:
            raise_as_httpx2(exc, request)
        finally:
            # On every path, cancellation included: the connection goes back to the pool, or
            # is closed when its response was not read to the end.
            await response.aclose()
        return Answer(status, body, None)

    async def _send_modelled(
        self, method: str, url: httpx2.URL, head: list[tuple[bytes, bytes]], content: bytes
    ) -> httpx2.Response:
        """The attempt through httpcore2's request model, as httpx2's transport makes it (a
        URL the pool refuses, or steps traced on httpcore2's loggers, which name the request)."""
        request = self._requests.plain_request(method, url, head, content)
        sent = self._requests.core_request(method, url, head, content)
        try:
            response = await self._pool.handle_async_request(sent)
        except Exception as exc:
            raise_as_httpx2(exc, lambda: request)
        return self._as_httpx2(response, request)

    def _as_httpx2(self, response: httpcore2.Response, request: httpx2.Request) -> httpx2.Response:
        """The response as the transport returns it and the driver's client receives it."""
        assert isinstance(response.stream, AsyncIterable)
        answer = httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=AsyncResponseStream(response.stream),
            extensions=response.extensions,
        )
        self._requests.received(request, answer)
        return answer


def needs_model(headers: list[tuple[bytes, bytes]]) -> bool:
    if httpx_logs_requests():
        return True
    return any(name.lower() in _READ_BY_MODEL for name, _ in headers)


async def _read_capped(response: PooledResponse, cap: int) -> bytes | bytearray | memoryview:
    """``read_raw_capped`` of the driver, on the pool's response: a declared length above
    ``cap`` is refused before anything is read, and so is a body growing past it."""
    refuse_declared_over(response.head.headers, cap)
    if response.head.length is not None:
        return whole_body([await response.body.read_declared()])
    chunks: list[bytes] = []
    size = 0
    async for chunk in response:
        if not chunk:
            continue  # as httpx2's raw iteration drops them
        size += len(chunk)
        if size > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")
        chunks.append(chunk)
    return whole_body(chunks)


def refuse_declared_over(headers: list[tuple[bytes, bytes]], cap: int) -> None:
    """Refuses an answer whose declared length is above ``cap``, before anything is read."""
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit() and int(value) > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")


def raise_as_httpx2(exc: Exception, request: Callable[[], httpx2.Request]) -> NoReturn:
    """Raises ``exc`` as httpx2's transport and client raise it: an httpcore2 exception as its
    httpx2 counterpart (chained to it), carrying the request; any other as it is."""
    try:
        with map_httpcore_exceptions():
            raise exc
    except httpx2.RequestError as error:
        error.request = request()
        raise
    raise AssertionError("unreachable: the mapping re-raises what it does not map")
