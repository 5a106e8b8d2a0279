"""Review of the openai transport's decrypted-completion response (44e60e2): it is now built on
an empty stream and marked read, where it used to be built with ``content=b""`` and read.

Differential: the openai SDK, blocking and async, over canned answers of each kind the
transport hands it (a completion with and without ``_metadata``, tool calls, non-ASCII text),
through ``create``, ``with_raw_response`` and ``with_streaming_response``, sees exactly the same
thing (status, headers in order, body, text, lines, json, parsed model, request id, stream
state, the errors the response raises) with the response built either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import openai
import pytest

from nomyo_native import openai as nomyo_openai
from nomyo_native.openai import _answers
from nomyo_native.openai._answers import Answer

BASE = "https://router.invalid"
MESSAGES = [{"role": "user", "content": "hi"}]

PAYLOADS: list[dict[str, Any]] = [
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Grüße, 世界 🔐"},
            }
        ],
        "_metadata": {
            "payload_id": "p-1",
            "payload_id_verified": True,
            "security_tier": "standard",
            "attestation_verification": {"level": "none", "verified": False},
        },
    },
    {
        "id": "c2",
        "object": "chat.completion",
        "created": 2,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    },
]


class _Canned:
    """A gateway answering every request with one completion."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload

    def answer(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        return _answers.completion(self._payload)

    def close(self) -> None:
        pass


class _AsyncCanned(_Canned):
    async def answer(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        return _answers.completion(self._payload)

    async def aclose(self) -> None:
        pass


def _outcome(read: Callable[[], Any]) -> Any:
    try:
        return ("value", read())
    except Exception as error:
        return ("raises", type(error).__name__, str(error))


def _http_state(http: Any) -> dict[str, Any]:
    """What a caller can see of an httpx/httpx2 response without awaiting."""
    names = [
        "status_code", "reason_phrase", "http_version", "encoding", "charset_encoding",
        "is_closed", "is_stream_consumed", "is_success", "is_error", "has_redirect_location",
        "num_bytes_downloaded", "content", "text", "extensions", "next_request",
    ]  # fmt: skip
    state = {name: _outcome(lambda name=name: getattr(http, name)) for name in names}
    state["headers"] = list(http.headers.raw)
    # The wall time the exchange took (httpx2 2.17 sets it on both responses): no two requests
    # take the same, so only whether it is there, and its type, can match.
    state["elapsed"] = _outcome(lambda: type(http.elapsed).__name__)
    state["json"] = _outcome(http.json)
    state["read"] = _outcome(http.read)
    state["iter_bytes"] = _outcome(lambda: list(http.iter_bytes()))
    state["iter_text"] = _outcome(lambda: list(http.iter_text()))
    state["iter_lines"] = _outcome(lambda: list(http.iter_lines()))
    state["iter_raw"] = _outcome(lambda: list(http.iter_raw()))
    state["request"] = (http.request.method, str(http.request.url))
    return state


def _sync_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    flavor = nomyo_openai._flavor()
    http = flavor.module.Client(transport=flavor.transport_class(_Canned(payload)))
    with openai.OpenAI(base_url=BASE + "/v1", api_key="k", http_client=http) as client:
        completions = client.chat.completions
        created = completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        raw = completions.with_raw_response.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        view = {
            "create": created.model_dump(),
            "create_request_id": created._request_id,
            "raw_status": raw.status_code,
            "raw_headers": list(raw.headers.raw),
            "raw_text": raw.text,
            "raw_content": raw.content,
            "raw_parse": raw.parse().model_dump(),
            "raw_request_id": raw.request_id,
            "raw_http": _http_state(raw.http_response),
        }
        with completions.with_streaming_response.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
        ) as streamed:
            view["streamed_http_before_read"] = _http_state(streamed.http_response)
            view["streamed_parse"] = streamed.parse().model_dump()
            view["streamed_read"] = _outcome(streamed.read)
            view["streamed_lines"] = _outcome(lambda: list(streamed.iter_lines()))
    return view


def _async_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    flavor = nomyo_openai._flavor()

    async def run() -> dict[str, Any]:
        transport = flavor.async_transport_class(_AsyncCanned(payload))
        http = flavor.module.AsyncClient(transport=transport)
        async with openai.AsyncOpenAI(base_url=BASE + "/v1", api_key="k", http_client=http) as c:
            created = await c.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            raw = await c.chat.completions.with_raw_response.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
            )
            return {
                "create": created.model_dump(),
                "raw_headers": list(raw.headers.raw),
                "raw_text": raw.text,
                "raw_parse": raw.parse().model_dump(),
                "raw_http": _http_state(raw.http_response),
                "aread": await raw.http_response.aread(),
            }

    return asyncio.run(run())


def _as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decrypted response built as before 44e60e2: with ``content=answer.body`` (b"" for a
    completion), which httpx reads at once."""
    flavor = nomyo_openai._flavor()
    response_class = flavor.response_class

    def init(self: Any, answer: Answer) -> None:
        flavor.module.Response.__init__(
            self, answer.status, headers=answer.headers, content=answer.body
        )
        self._completion = answer.payload

    monkeypatch.setattr(response_class, "__init__", init)


@pytest.mark.parametrize("payload", PAYLOADS, ids=["metadata", "tool-calls"])
@pytest.mark.parametrize("view", [_sync_view, _async_view], ids=["sync", "async"])
def test_the_sdk_sees_what_it_saw_before(
    payload: dict[str, Any],
    view: Callable[[Mapping[str, Any]], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = view(payload)
    with monkeypatch.context() as patch:
        _as_before(patch)
        before = view(payload)
    assert now == before
    # The view is not empty: the completion arrived, with its headers, and an empty body.
    assert now["create"]["id"] == payload["id"]
    assert now["raw_http"]["content"] == ("value", b"")
    assert ("content-type", "application/json") in [
        (k.decode(), v.decode()) for k, v in now["raw_headers"]
    ]
