"""llama-index's OpenAILike on our transport (it requires openai 2.x, so httpx)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.ecosystem.helpers import MODEL

from nomyo_native import openai as nomyo_openai

openai_like = pytest.importorskip("llama_index.llms.openai_like")
from llama_index.core.llms import ChatMessage  # noqa: E402


def llm(endpoint: Any, options: dict) -> Any:
    return openai_like.OpenAILike(
        model=MODEL,
        api_base=endpoint.base_url + "/v1",
        api_key="sdk-key",
        is_chat_model=True,
        is_function_calling_model=True,
        max_retries=0,
        http_client=nomyo_openai.http_client(base_url=endpoint.base_url, **options),
        async_http_client=nomyo_openai.async_http_client(base_url=endpoint.base_url, **options),
    )


def test_chat(endpoint: Any, options: dict, posts: Any) -> None:
    reply = llm(endpoint, options).chat([ChatMessage(role="user", content="Grüße aus llama")])
    assert reply.message.content == "Grüße aus llama"
    assert posts() == 1


def test_complete(endpoint: Any, options: dict) -> None:
    assert llm(endpoint, options).complete("completed").text == "completed"


async def test_achat(endpoint: Any, options: dict) -> None:
    reply = await llm(endpoint, options).achat([ChatMessage(role="user", content="async")])
    assert reply.message.content == "async"
