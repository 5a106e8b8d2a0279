"""Shared pieces of the ecosystem tests: SDK clients on our transport, and a client-side
transport wrapper that can tamper with, replay or inspect what crosses the wire."""

from __future__ import annotations

import importlib
import ssl
from collections.abc import Callable
from types import ModuleType
from typing import Any

import openai

from nomyo_native import client as client_module
from nomyo_native import openai as nomyo_openai
from nomyo_native.errors import SecurityError

MODEL = "echo"


def client_http() -> ModuleType:
    """The HTTP library our client is built on (its ``transport=`` option takes one of its
    transports)."""
    name = "httpx2" if hasattr(client_module, "httpx2") else "httpx"
    return importlib.import_module(name)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def sdk(endpoint: Any, options: dict[str, Any], **sdk_options: Any) -> openai.OpenAI:
    """``openai.OpenAI`` on our transport (built as the README shows, with ``http_client``)."""
    sdk_options.setdefault("api_key", "sdk-key")
    return openai.OpenAI(
        base_url=endpoint.base_url + "/v1",
        http_client=nomyo_openai.http_client(base_url=endpoint.base_url, **options),
        **sdk_options,
    )


def async_sdk(endpoint: Any, options: dict[str, Any], **sdk_options: Any) -> openai.AsyncOpenAI:
    sdk_options.setdefault("api_key", "sdk-key")
    return openai.AsyncOpenAI(
        base_url=endpoint.base_url + "/v1",
        http_client=nomyo_openai.async_http_client(base_url=endpoint.base_url, **options),
        **sdk_options,
    )


def security_failure_check(error: BaseException) -> None:
    """A security failure as the installed SDK surfaces it: our SecurityError that is also an
    ``openai.OpenAIError`` (openai >= 2.31), else a synthetic never-retried 495 naming it."""
    assert isinstance(error, openai.OpenAIError)
    if nomyo_openai.sdk_propagates_errors():
        assert isinstance(error, SecurityError)
        assert not isinstance(error, openai.APIConnectionError)
    else:
        assert isinstance(error, openai.APIStatusError)
        assert error.status_code == 495
        assert error.response.headers["x-should-retry"] == "false"
        assert isinstance(error.body, dict)
        assert error.body["type"] == "nomyo_security_error"


class Wire:
    """Our client's transport to the endpoint, wrapped: it records each request's headers and
    can rewrite each 200 response body (``rewrite(body) -> body``). ``transport`` is for the
    blocking client (``http_client``), ``async_transport`` for the async one."""

    def __init__(self, ca_path: str, rewrite: Callable[[bytes], bytes] | None = None) -> None:
        http = client_http()
        verify = ssl.create_default_context(cafile=ca_path)
        self.rewrite = rewrite
        self.sent_headers: list[dict[str, str]] = []
        self.sent_envelopes: list[bytes] = []
        self.bodies: list[bytes] = []
        wire = self

        def answer(request: Any, response: Any, body: bytes) -> Any:
            if response.status_code == 200 and request.method == "POST":
                wire.bodies.append(body)
                if wire.rewrite is not None:
                    body = wire.rewrite(body)
            headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
            return http.Response(response.status_code, headers=headers, content=body)

        class Transport(http.BaseTransport):  # type: ignore[misc,name-defined]
            inner = http.HTTPTransport(verify=verify)

            def handle_request(self, request: Any) -> Any:
                wire.sent(request, request.read())
                response = self.inner.handle_request(request)
                return answer(request, response, response.read())

            def close(self) -> None:
                self.inner.close()

        class AsyncTransport(http.AsyncBaseTransport):  # type: ignore[misc,name-defined]
            inner = http.AsyncHTTPTransport(verify=verify)

            async def handle_async_request(self, request: Any) -> Any:
                wire.sent(request, await request.aread())
                response = await self.inner.handle_async_request(request)
                return answer(request, response, await response.aread())

            async def aclose(self) -> None:
                await self.inner.aclose()

        self.transport = Transport()
        self.async_transport = AsyncTransport()

    def sent(self, request: Any, content: bytes) -> None:
        self.sent_headers.append({k.lower(): v for k, v in request.headers.items()})
        if request.method == "POST":
            self.sent_envelopes.append(content)
