"""langchain-openai's ChatOpenAI on our transport (``http_client`` / ``http_async_client``)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.ecosystem.helpers import MODEL

from nomyo_native import openai as nomyo_openai

langchain_openai = pytest.importorskip("langchain_openai")


def chat_model(endpoint: Any, options: dict, **kwargs: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model=MODEL,
        base_url=endpoint.base_url + "/v1",
        api_key="sdk-key",
        http_client=nomyo_openai.http_client(base_url=endpoint.base_url, **options),
        http_async_client=nomyo_openai.async_http_client(base_url=endpoint.base_url, **options),
        max_retries=0,
        **kwargs,
    )


def test_invoke(endpoint: Any, options: dict, posts: Any) -> None:
    reply = chat_model(endpoint, options).invoke("Grüße aus LangChain")
    assert reply.content == "Grüße aus LangChain"
    assert posts() == 1


async def test_ainvoke(endpoint: Any, options: dict, posts: Any) -> None:
    reply = await chat_model(endpoint, options).ainvoke("async chain")
    assert reply.content == "async chain"
    assert posts() == 1


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_tool_calling(endpoint: Any, options: dict) -> None:
    model = chat_model(endpoint, options).bind_tools([get_weather])
    reply = model.invoke("Paris")
    assert reply.tool_calls[0]["name"] == "get_weather"
    assert reply.tool_calls[0]["args"] == {"city": "Paris"}


def test_response_headers_carry_the_metadata(endpoint: Any, options: dict) -> None:
    # include_response_headers takes the SDK's with_raw_response path through our response.
    reply = chat_model(endpoint, options, include_response_headers=True).invoke("headers")
    headers = reply.response_metadata["headers"]
    assert reply.content == "headers"
    assert headers["x-nomyo-payload-id-verified"] == "true"
    assert headers["x-request-id"] == headers["x-nomyo-payload-id"]


def test_streaming_is_refused_with_nothing_sent(endpoint: Any, options: dict, log: Any) -> None:
    import openai

    model = chat_model(endpoint, options)
    with pytest.raises(openai.BadRequestError, match="no streaming"):
        list(model.stream("secret"))
    assert log.lines == []
