"""instructor (structured output through tool calls) on our transport."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from tests.ecosystem.helpers import MODEL, async_sdk, sdk, user

instructor = pytest.importorskip("instructor")


class City(pydantic.BaseModel):
    name: str
    population: int


def test_response_model(endpoint: Any, options: dict, posts: Any) -> None:
    client = instructor.from_openai(sdk(endpoint, options))
    city = client.chat.completions.create(model=MODEL, response_model=City, messages=user("Oslo"))
    assert (city.name, city.population) == ("Oslo", 0)
    assert posts() == 1


async def test_async_response_model(endpoint: Any, options: dict) -> None:
    client = instructor.from_openai(async_sdk(endpoint, options))
    city = await client.chat.completions.create(
        model=MODEL, response_model=City, messages=user("Bergen")
    )
    assert (city.name, city.population) == ("Bergen", 0)
