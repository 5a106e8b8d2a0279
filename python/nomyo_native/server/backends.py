"""Where decrypted requests are answered: a deterministic echo, or any OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Protocol

import httpx2


class BackendUnavailable(Exception):
    """The inference backend cannot be reached (503)."""


class BackendFailed(Exception):
    """The backend answered, but not with a usable chat completion (502)."""


class BackendRejected(Exception):
    """The backend refused the request itself (HTTP 4xx, e.g. an unknown model)."""


class Backend(Protocol):
    name: str

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one OpenAI chat-completion request with a ``chat.completion`` object."""
        ...

    async def aclose(self) -> None: ...


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of an OpenAI content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _count_tokens(text: str) -> int:
    # Whitespace words: deterministic and good enough for usage numbers of a test backend.
    return len(text.split())


def _placeholder(schema: Any, text: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    return {
        "string": text,
        "integer": 0,
        "number": 0,
        "boolean": False,
        "array": [],
        "object": {},
    }.get(kind if isinstance(kind, str) else "string", text)


class EchoBackend:
    """Answers with the last user message; calls the first (or the chosen) tool when given tools.

    Deterministic so that tests and the demo need no model: the same request always gets the
    same content, id, tool call and usage counts.
    """

    name = "echo"

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = request.get("messages") or []
        texts = [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
        user_texts = [
            _text_of(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        reply = user_texts[-1] if user_texts else ""
        digest = hashlib.sha256(
            json.dumps(request, sort_keys=True, default=str).encode()
        ).hexdigest()
        message: dict[str, Any] = {"role": "assistant", "content": reply}
        finish_reason = "stop"
        tool = self._chosen_tool(request)
        if tool is not None:
            function = tool.get("function", {})
            params = function.get("parameters") if isinstance(function, dict) else None
            props = params.get("properties", {}) if isinstance(params, dict) else {}
            required = params.get("required", list(props)) if isinstance(params, dict) else []
            arguments = {
                name: _placeholder(props.get(name) if isinstance(props, dict) else None, reply)
                for name in required
                if isinstance(name, str)
            }
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_" + digest[:24],
                        "type": "function",
                        "function": {
                            "name": function.get("name", "tool"),
                            "arguments": json.dumps(arguments),
                        },
                    }
                ],
            }
            finish_reason = "tool_calls"
        prompt_tokens = sum(_count_tokens(t) for t in texts)
        completion_tokens = _count_tokens(reply)
        return {
            "id": "chatcmpl-echo-" + digest[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @staticmethod
    def _chosen_tool(request: dict[str, Any]) -> dict[str, Any] | None:
        tools = [t for t in request.get("tools") or [] if isinstance(t, dict)]
        choice = request.get("tool_choice", "auto")
        if not tools or choice == "none":
            return None
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            for tool in tools:
                if (tool.get("function") or {}).get("name") == wanted:
                    return tool
        return tools[0]

    async def aclose(self) -> None:
        return None


def completions_url(base: str) -> str:
    """Accept ``http://h:p``, ``.../v1`` or the full ``.../v1/chat/completions`` URL."""
    url = base.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class OpenAIBackend:
    """Forwards to an OpenAI-compatible ``/v1/chat/completions`` (Ollama, llama.cpp, vLLM)."""

    name = "openai"

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 300.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("backend URL must start with http:// or https://")
        self.url = completions_url(url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx2.AsyncClient(timeout=timeout, headers=headers)

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        # The encrypted channel carries one response, so streaming is switched off upstream.
        forwarded = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        try:
            response = await self._client.post(self.url, json=forwarded)
        except httpx2.TransportError as exc:
            raise BackendUnavailable(f"backend unreachable ({type(exc).__name__})") from None
        if response.status_code in (502, 503, 504):
            raise BackendUnavailable(f"backend returned HTTP {response.status_code}")
        if 400 <= response.status_code < 500:
            # The upstream body may quote the prompt, so only the status is passed on.
            raise BackendRejected(f"backend rejected the request (HTTP {response.status_code})")
        if response.status_code != 200:
            raise BackendFailed(f"backend returned HTTP {response.status_code}")
        try:
            completion = response.json()
        except ValueError:
            raise BackendFailed("backend returned a non-JSON body") from None
        if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
            raise BackendFailed("backend returned no chat completion")
        return completion

    async def aclose(self) -> None:
        await self._client.aclose()


def make_backend(spec: str, *, api_key: str | None = None, timeout: float = 300.0) -> Backend:
    """``"echo"`` or a URL."""
    if spec == "echo":
        return EchoBackend()
    return OpenAIBackend(spec, api_key=api_key, timeout=timeout)
