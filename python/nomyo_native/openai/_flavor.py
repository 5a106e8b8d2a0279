"""The transport classes, built once per HTTP library: httpx2 (openai 3.x) and httpx (2.x).

Both libraries share one API (httpx2 is httpx's continuation), so one builder serves both; each
library is imported in its own module only (``_httpx2``, ``_httpx_legacy``).

The decrypted completion reaches the SDK as the dict the core built: the response object's
``json()`` returns it, and its body is empty, so ``.content``, ``.read()`` and ``.aread()`` give
``b""``, ``.text`` gives ``""`` and ``iter_bytes()`` yields nothing: the decrypted JSON never
exists as ``bytes`` or ``str``. Error answers carry their (OpenAI-shaped) JSON body as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from nomyo_native.openai._answers import Answer
from nomyo_native.openai._gateway import BlockingGateway, Gateway


@dataclass(frozen=True)
class Flavor:
    """One HTTP library's transport, async transport and client factories."""

    module: ModuleType
    response_class: type
    transport_class: type
    async_transport_class: type

    def client(self, base_url: str, **options: Any) -> Any:
        """A blocking ``Client`` of this library whose transport is ours."""
        transport = self.transport_class(
            BlockingGateway(base_url, _Failures(self.module), **options)
        )
        return self.module.Client(transport=transport)

    def async_client(self, base_url: str, **options: Any) -> Any:
        """An ``AsyncClient`` of this library whose transport is ours."""
        transport = self.async_transport_class(Gateway(base_url, _Failures(self.module), **options))
        return self.module.AsyncClient(transport=transport)


class _Failures:
    """The library's exceptions for a transient failure (the SDK retries them)."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def connect_error(self, message: str) -> Exception:
        error: Exception = self._module.ConnectError(message)
        return error

    def timeout_error(self, message: str) -> Exception:
        error: Exception = self._module.ConnectTimeout(message)
        return error


def build(module: ModuleType) -> Flavor:
    """The transport classes of ``module`` (httpx2 or httpx)."""

    class DecryptedResponse(module.Response):  # type: ignore[name-defined,misc]
        """A response whose body is empty and whose ``json()`` is the decrypted completion."""

        def __init__(self, answer: Answer) -> None:
            # In the state reading ``content=b""`` leaves (consumed, closed, content b""), without
            # the decoder, chunker and context managers such a read runs for no bytes (~10 us).
            super().__init__(answer.status, headers=answer.headers, stream=module.ByteStream(b""))
            self._content = b""
            self.is_stream_consumed = self.is_closed = True
            self._completion = answer.payload

        def json(self, **kwargs: Any) -> Any:
            # The core built the dict already: json.loads' options have nothing to act on.
            if self._completion is not None:
                return self._completion
            return super().json(**kwargs)

    def to_response(answer: Answer, request: Any) -> Any:
        if answer.payload is None:
            return module.Response(
                answer.status, headers=answer.headers, content=answer.body, request=request
            )
        response = DecryptedResponse(answer)
        response.request = request
        return response

    class SecureTransport(module.BaseTransport):  # type: ignore[name-defined,misc]
        """Blocking transport: every chat completion sealed, sent, opened and checked."""

        def __init__(self, gateway: BlockingGateway) -> None:
            self.gateway = gateway

        def handle_request(self, request: Any) -> Any:
            body = request.read()
            answer = self.gateway.answer(request.method, str(request.url), request.headers, body)
            return to_response(answer, request)

        def close(self) -> None:
            self.gateway.close()

    class AsyncSecureTransport(module.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        """Async transport: every chat completion sealed, sent, opened and checked."""

        def __init__(self, gateway: Gateway) -> None:
            self.gateway = gateway

        async def handle_async_request(self, request: Any) -> Any:
            body = await request.aread()
            answer = await self.gateway.answer(
                request.method, str(request.url), request.headers, body
            )
            return to_response(answer, request)

        async def aclose(self) -> None:
            await self.gateway.aclose()

    return Flavor(module, DecryptedResponse, SecureTransport, AsyncSecureTransport)
