"""Checks a runtime value against a type annotation (TypedDicts included), for the tests that
keep ``nomyo_native.types`` true to what the client returns."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin


def mismatches(value: Any, annotation: Any, path: str = "$") -> list[str]:
    """Every place where ``value`` does not fit ``annotation`` (empty when it fits)."""
    if annotation is Any:
        return []
    origin = get_origin(annotation)
    if origin in (Required, NotRequired):
        return mismatches(value, get_args(annotation)[0], path)
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if any(not mismatches(value, option, path) for option in options):
            return []
        return [f"{path}: {value!r} is none of {annotation}"]
    if origin is Literal:
        if value in get_args(annotation) and type(value) in {type(a) for a in get_args(annotation)}:
            return []
        return [f"{path}: {value!r} is not one of {get_args(annotation)}"]
    if typing.is_typeddict(annotation):
        return _typeddict_mismatches(value, annotation, path)
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, not a list"]
        (item,) = get_args(annotation)
        return [m for i, v in enumerate(value) for m in mismatches(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a dict"]
        key_type, value_type = get_args(annotation)
        found = []
        for k, v in value.items():
            found += mismatches(k, key_type, f"{path} key {k!r}")
            found += mismatches(v, value_type, f"{path}[{k!r}]")
        return found
    if annotation is None or annotation is type(None):
        return [] if value is None else [f"{path}: {value!r} is not None"]
    if annotation in (int, float) and isinstance(value, bool):
        return [f"{path}: a bool where {annotation.__name__} is declared"]
    if annotation is float and isinstance(value, int):
        return []  # the typing rule: an int is acceptable where a float is declared
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return []
        return [f"{path}: {type(value).__name__}, not {annotation.__name__}"]
    raise TypeError(f"shapes cannot check {annotation!r}")


def _typeddict_mismatches(value: Any, td: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: {type(value).__name__}, not a {td.__name__} dict"]
    hints = typing.get_type_hints(td)
    found = [
        f"{path}: required key {k!r} missing" for k in sorted(td.__required_keys__ - set(value))
    ]
    for key, annotation in hints.items():
        if key in value:
            found += mismatches(value[key], annotation, f"{path}.{key}")
    return found
