"""The echo backend's determinism, and forwarding to an OpenAI-compatible server (a tiny fake
one on loopback) with its failure statuses."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nomyo_native.server.backends import EchoBackend, OpenAIBackend, completions_url

from .wire import PATH, open_response

CHAT = {"model": "m", "messages": [{"role": "user", "content": "two words"}]}


class FakeOpenAI:
    """``POST /v1/chat/completions`` on a free loopback port; ``mode`` picks the answer."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.mode = "ok"
        app = Starlette(routes=[Route("/v1/chat/completions", self.handle, methods=["POST"])])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if self.mode == "500":
            return JSONResponse({"error": "exploded"}, status_code=500)
        if self.mode == "404":
            return JSONResponse({"error": f"model {body['model']} not found"}, status_code=404)
        if self.mode == "503":
            return JSONResponse({"error": "loading"}, status_code=503)
        if self.mode == "not-json":
            return PlainTextResponse("<html>oops</html>")
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "fake says: " + body["messages"][-1]["content"],
                            "reasoning_content": "thought about it",
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            }
        )

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def forwarding_endpoint(fake_openai, endpoint_factory):
    fake_openai.mode = "ok"
    fake_openai.received.clear()
    fake_openai.headers.clear()
    return endpoint_factory(backend=fake_openai.url, backend_api_key="upstream-key")


async def test_echo_is_deterministic():
    echo = EchoBackend()
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "one two three"},
            {"role": "user", "content": [{"type": "text", "text": "four five"}]},
            {"role": "assistant", "content": "six"},
        ],
    }
    first, second = await echo.complete(request), await echo.complete(request)
    assert first["id"] == second["id"]
    assert first["choices"] == second["choices"]
    assert first["choices"][0]["message"]["content"] == "four five"
    assert first["usage"] == {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}
    other = await echo.complete({**request, "model": "n"})
    assert other["id"] != first["id"]


async def test_echo_tool_calls_follow_tool_choice():
    echo = EchoBackend()
    tools = [
        {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
        {
            "type": "function",
            "function": {
                "name": "second",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "n": {"type": "number"}},
                    "required": ["q"],
                },
            },
        },
    ]
    base = {"model": "m", "messages": [{"role": "user", "content": "look up"}], "tools": tools}
    auto = await echo.complete(base)
    assert auto["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "first"
    named = await echo.complete(
        {**base, "tool_choice": {"type": "function", "function": {"name": "second"}}}
    )
    call = named["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "second"
    assert json.loads(call["function"]["arguments"]) == {"q": "look up"}
    assert named["choices"][0]["finish_reason"] == "tool_calls"
    none = await echo.complete({**base, "tool_choice": "none"})
    assert none["choices"][0]["message"]["content"] == "look up"
    assert "tool_calls" not in none["choices"][0]["message"]


def test_completions_url_forms():
    assert completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert completions_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend("ftp://h")


async def test_forwarding_round_trip(forwarding_endpoint, fake_openai, wire_for, client_key):
    wire = wire_for(forwarding_endpoint)
    # stream: true is refused with 400 (test_stream_true_is_refused_with_400); an explicit
    # false, and its stream_options, are still not forwarded: upstream answers in one piece.
    payload = {**CHAT, "temperature": 0.5, "stream": False, "stream_options": {}}
    pid, headers, body = wire.request(payload, tier="high")
    async with httpx2.AsyncClient(timeout=60) as http:
        response = await http.post(wire.base_url + PATH, headers=headers, content=body)
    assert response.status_code == 200
    reply, _ = open_response(response.content, client_key)
    assert reply["choices"][0]["message"]["content"] == "fake says: two words"
    assert reply["choices"][0]["message"]["reasoning_content"] == "thought about it"
    assert reply["_metadata"]["payload_id"] == pid
    assert reply["_metadata"]["security_tier"] == "high"
    # The backend got the decrypted request, without streaming, with its own API key.
    (forwarded,) = fake_openai.received
    assert forwarded == {**CHAT, "temperature": 0.5}
    assert fake_openai.headers[0]["authorization"] == "Bearer upstream-key"


@pytest.mark.parametrize(
    ("mode", "status", "detail"),
    [
        ("503", 503, "backend returned HTTP 503"),
        ("500", 502, "backend returned HTTP 500"),
        ("not-json", 502, "non-JSON"),
        ("404", 400, "backend rejected the request (HTTP 404)"),
    ],
)
async def test_backend_failures(
    forwarding_endpoint, fake_openai, wire_for, client_key, mode, status, detail
):
    fake_openai.mode = mode
    wire = wire_for(forwarding_endpoint)
    async with httpx2.AsyncClient(timeout=60) as http:
        _, response = await wire.chat(http, "secret words")
        assert response.status_code == status
        assert detail in response.json()["detail"]
        # Nothing of the prompt or the upstream body comes back in the detail.
        assert "secret" not in response.text and "not found" not in response.text
        fake_openai.mode = "ok"
        _, response = await wire.chat(http, "again")
        assert response.status_code == 200


async def test_unreachable_backend_is_503(endpoint_factory, wire_for):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    endpoint = endpoint_factory(backend=f"http://127.0.0.1:{closed_port}")
    wire = wire_for(endpoint)
    async with httpx2.AsyncClient(timeout=60) as http:
        _, response = await wire.chat(http, "hello")
    assert response.status_code == 503
    assert "backend unreachable" in response.json()["detail"]


async def test_non_finite_numbers_from_a_backend_are_502(endpoint_factory, wire_for):
    class NotANumber:
        name = "nan"

        async def complete(self, request):
            completion = await EchoBackend().complete(request)
            completion["usage"]["prompt_tokens"] = float("nan")
            return completion

        async def aclose(self):
            return None

    wire = wire_for(endpoint_factory(backend=NotANumber()))
    async with httpx2.AsyncClient(timeout=60) as http:
        _, response = await wire.chat(http, "hello")
    assert response.status_code == 502
    assert "not valid JSON" in response.json()["detail"]
