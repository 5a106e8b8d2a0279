"""Errors the openai SDK lets through untouched: ours and ``openai.OpenAIError`` (security
failures, and a closed client).

From openai 2.31 on, the SDK re-raises an ``OpenAIError`` from its transport as it is (no retry,
no ``APIConnectionError`` wrapper); older SDKs wrap every transport exception in a retried
connection error, so for them the transport answers with a synthetic 4xx instead
(:func:`nomyo_native.openai._answers.security_failure`).
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar, cast

import openai

# The first openai release that propagates an OpenAIError raised inside its transport.
PROPAGATING_SDK = (2, 31)


def _release(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@functools.cache
def sdk_propagates_errors() -> bool:
    """Whether the installed openai SDK re-raises an OpenAIError from the transport as is."""
    try:
        installed = version("openai")
    except PackageNotFoundError:
        installed = getattr(openai, "__version__", "0")
    return _release(installed) >= PROPAGATING_SDK


_dual_classes: dict[type[Exception], type[Exception]] = {}
E = TypeVar("E", bound=Exception)


def _dual_class(cls: type[E]) -> type[E]:
    """``cls`` that is also an ``openai.OpenAIError`` (same name, so messages read the same)."""
    dual = _dual_classes.get(cls)
    if dual is None:
        dual = type(cls.__name__, (cls, openai.OpenAIError), {"__module__": cls.__module__})
        _dual_classes[cls] = dual
    return cast(type[E], dual)


def as_openai_error(error: E) -> E:
    """A copy of ``error`` whose class is both its own and ``openai.OpenAIError``."""
    dual = _dual_class(type(error))
    copy = dual.__new__(dual)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    return copy
