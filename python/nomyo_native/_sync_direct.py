"""One attempt on the sync driver's own transport without httpx2's request and response
models: the blocking twin of ``_async_direct``.

``httpx2.HTTPTransport`` turns an ``httpx2.Request`` into an ``httpcore2.Request``, the answer
into an ``httpx2.Response`` (its header model normalizing every field again) with a stream
wrapped twice, and runs each step in an exception-mapping context manager. The sync driver's
transport (``_DeadlineTransport``) keeps its pool of our own connections, so this hands the pool
the ``httpcore2.Request`` the transport would build, reads the body from the pool's stream with
the same cap and the same deadline check between chunks, and maps a failure to the httpx2
exception the transport raises, on the failure's path only. An answer whose head the driver
reads through httpx2's model (``_async_direct.needs_model``) goes on as the ``httpx2.Response``
the transport would have made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpcore2
import httpx2

try:
    # httpx2's sync stream wrapper (private, as _async_direct's): a release that moves it turns
    # this path off, and every request takes httpx2's transport instead.
    from httpx2._transports.default import ResponseStream
except ImportError:
    AVAILABLE = False
else:
    from nomyo_native._async_direct import AVAILABLE

from nomyo_native._async_direct import needs_model, raise_as_httpx2, refuse_declared_over
from nomyo_native._http11_state import tracing_wanted
from nomyo_native._http_body import whole_body
from nomyo_native._http_request import RequestBuilder
from nomyo_native._protocol import MAX_ERROR_BODY_BYTES, Answer
from nomyo_native._sync_pool import PLAIN_AVAILABLE, HTTP11ConnectionPool, PooledResponse
from nomyo_native.errors import ResponseFormatError

__all__ = ["AVAILABLE", "SyncDirectExchange"]


class SyncDirectExchange:
    """Attempts on ``pool`` (the transport's) for requests built by ``requests``;
    ``each_chunk`` is called before the body and after every chunk (the deadline check)."""

    def __init__(
        self,
        pool: HTTP11ConnectionPool,
        requests: RequestBuilder,
        each_chunk: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._requests = requests
        self._each_chunk = each_chunk

    def send(
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

        routing = self._requests.routing_request(url) if PLAIN_AVAILABLE else None
        if routing is None or tracing_wanted():
            return self._send_modelled(method, self._requests.url(url), head, content, ok_cap)
        try:
            response = self._pool.send_plain(
                routing,
                (method.upper().encode("ascii"), routing.url.target, head),
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
            body = self._read_plain(response, cap)
        except ResponseFormatError:
            if status == 200:
                raise
            body = b""  # an oversized error body: the status says enough
        except Exception as exc:
            raise_as_httpx2(exc, request)
        finally:
            # On every path: the connection goes back to the pool, or is closed when its
            # response was not read to the end.
            response.close()
        return Answer(status, body, None)

    def _send_modelled(
        self,
        method: str,
        url: httpx2.URL,
        head: list[tuple[bytes, bytes]],
        content: bytes,
        ok_cap: int,
    ) -> Answer | httpx2.Response:
        """The attempt through httpcore2's request and response models (a URL the pool
        refuses, steps traced on httpcore2's loggers, or httpcore2 without the pool's private
        names ``send_plain`` needs)."""

        def request() -> httpx2.Request:
            return self._requests.plain_request(method, url, head, content)

        sent = self._requests.core_request(method, url, head, content)
        try:
            response = self._pool.handle_request(sent)
        except Exception as exc:
            raise_as_httpx2(exc, request)
        if needs_model(response.headers):
            return self._as_httpx2(response, request())
        stream = response.stream
        assert isinstance(stream, Iterable)
        status = response.status
        cap = ok_cap if status == 200 else MAX_ERROR_BODY_BYTES
        try:
            body = self._read_capped(stream, response.headers, cap)
        except ResponseFormatError:
            if status == 200:
                raise
            body = b""  # an oversized error body: the status says enough
        except Exception as exc:
            raise_as_httpx2(exc, request)
        finally:
            # On every path: the connection goes back to the pool, or is closed when its
            # response was not read to the end.
            stream.close()  # type: ignore[attr-defined]
        return Answer(status, body, None)

    def _read_plain(self, response: PooledResponse, cap: int) -> bytes | bytearray | memoryview:
        """:meth:`_read_capped` of a response sent plain: a declared-length body read whole,
        with the deadline checked before and after it."""
        if response.head.length is None:
            return self._read_capped(response.stream, response.head.headers, cap)
        refuse_declared_over(response.head.headers, cap)
        self._each_chunk()
        body = response.body.read_declared()
        if body:
            self._each_chunk()
        return whole_body([body])

    def _as_httpx2(self, response: httpcore2.Response, request: httpx2.Request) -> httpx2.Response:
        """The response as the transport returns it and the driver's client receives it."""
        assert isinstance(response.stream, Iterable)
        answer = httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=ResponseStream(response.stream),
            extensions=response.extensions,
        )
        self._requests.received(request, answer)
        return answer

    def _read_capped(
        self, stream: Iterable[bytes], headers: list[tuple[bytes, bytes]], cap: int
    ) -> bytes | bytearray | memoryview:
        """The sync driver's ``iter_raw_capped`` on the pool's stream: a declared length
        above ``cap`` is refused before anything is read, and so is a body growing past it."""
        refuse_declared_over(headers, cap)
        chunks: list[bytes] = []
        size = 0
        self._each_chunk()
        for chunk in stream:
            if not chunk:
                continue  # as httpx2's raw iteration drops them (and checks nothing for them)
            self._each_chunk()
            size += len(chunk)
            if size > cap:
                raise ResponseFormatError(f"response body larger than {cap} bytes refused")
            chunks.append(chunk)
        return whole_body(chunks)
