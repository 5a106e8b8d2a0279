"""pydantic-ai's OpenAIChatModel on our transport (openai 3.x)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from tests.ecosystem.helpers import MODEL

from nomyo_native import openai as nomyo_openai

pydantic_ai = pytest.importorskip("pydantic_ai")
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402


def agent(endpoint: Any, options: dict, **kwargs: Any) -> Any:
    client = nomyo_openai.AsyncOpenAI(base_url=endpoint.base_url, api_key="sdk-key", **options)
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
    return pydantic_ai.Agent(model, **kwargs)


def test_run_sync(endpoint: Any, options: dict, posts: Any) -> None:
    result = agent(endpoint, options).run_sync("Grüße aus pydantic-ai")
    assert result.output == "Grüße aus pydantic-ai"
    assert posts() == 1


async def test_run(endpoint: Any, options: dict) -> None:
    result = await agent(endpoint, options).run("async agent")
    assert result.output == "async agent"


class City(pydantic.BaseModel):
    name: str
    population: int


def test_structured_output(endpoint: Any, options: dict) -> None:
    # The output is a tool call; the echo backend fills the tool's arguments from the prompt.
    result = agent(endpoint, options, output_type=City).run_sync("Oslo")
    assert result.output == City(name="Oslo", population=0)
