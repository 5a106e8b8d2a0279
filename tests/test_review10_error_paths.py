"""Review 10: the core's JSON error paths (``json_path``) checked against the documented rule on
generated documents, both directions: the writer (a value the seal refuses, planted anywhere in
a random tree of caller keys and protocol words) and the reader (a broken literal planted
anywhere in a decrypted response). The path must be exactly what the rule renders: a key is
named only when it is a protocol field name outside the caller's subtrees, else its position;
and no caller key, protocol-worded or not, below a member whose keys the caller names."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tests.pyca_envelope import seal_json

from nomyo_native import _core

# The vocabulary the rule may name, written out here from PROTOCOL.md / the OpenAI chat API
# and JSON Schema (not read from the core): a sample of it is enough to plant.
PROTOCOL_WORDS = [
    "messages", "content", "role", "name", "tools", "function", "parameters", "type",
    "description", "items", "required", "model", "choices", "message", "usage", "_metadata",
    "response_format", "json_schema", "schema", "anyOf", "title", "text", "user", "data", "id",
    "object",
]  # fmt: skip
# Members whose whole subtree is the caller's: no key below is named.
FREE_FORM = ["metadata", "arguments", "logit_bias", "default", "const", "enum", "examples"]
# Members whose direct keys the caller names: a schema's properties and definitions, the
# property names a dependency is keyed by (draft 2019-09 and draft 7 spellings), patterns.
CALLER_NAMED = [
    "properties", "$defs", "definitions", "dependentSchemas", "dependentRequired",
    "dependencies", "patternProperties",
]  # fmt: skip
KEY_MARK = "SECRETKEY"


@dataclass(frozen=True)
class Member:
    key: object
    ordinal: int  # from 1
    of: int


Step = int | Member


def render(steps: list[Step], *, counted: bool) -> str:
    """The documented rule, written independently of the core's json_path."""
    shown_words = set(PROTOCOL_WORDS) | set(FREE_FORM) | set(CALLER_NAMED)
    text, names = "$", "shown"
    for step in steps:
        if isinstance(step, int):
            text += f"[{step}]"
            continue
        key = step.key
        shown = key if names == "shown" and type(key) is str and key in shown_words else None
        if shown is not None:
            text += f".{shown}"
        elif counted:
            text += f".<key {step.ordinal} of {step.of}>"
        else:
            text += f".<key {step.ordinal}>"
        if names == "hidden":
            continue
        if shown in FREE_FORM:
            names = "hidden"
        elif shown in CALLER_NAMED:
            names = "next hidden"
        else:
            names = "shown"
    return text


def _key(rng: random.Random, serial: list[int]) -> object:
    serial[0] += 1
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(PROTOCOL_WORDS + FREE_FORM + CALLER_NAMED)
    if roll < 0.85:
        return f"{KEY_MARK}{serial[0]}"
    if roll < 0.95:
        return f"{KEY_MARK}{serial[0]}é"  # non-ASCII: read as code points
    return 1000 + serial[0]  # an int key: never named


def _tree(rng: random.Random, depth: int, serial: list[int]) -> Any:
    if depth >= 6 or rng.random() < 0.25:
        return rng.choice(["v", 1, 2.5, None, True])
    if rng.random() < 0.35:
        return [_tree(rng, depth + 1, serial) for _ in range(rng.randint(1, 4))]
    tree: dict[object, Any] = {}
    for _ in range(rng.randint(1, 5)):
        tree[_key(rng, serial)] = _tree(rng, depth + 1, serial)
    return tree


def _plant(rng: random.Random, tree: Any, bad: object) -> tuple[Any, list[Step]]:
    """``tree`` with one leaf (or an empty container's new member) replaced by ``bad``, and
    the steps to it."""
    steps: list[Step] = []
    node = tree
    while True:
        if isinstance(node, list):
            at = rng.randrange(len(node))
            steps.append(at)
            if not isinstance(node[at], (list, dict)) or rng.random() < 0.3:
                node[at] = bad
                return tree, steps
            node = node[at]
        else:
            keys = list(node)
            at = rng.randrange(len(keys))
            steps.append(Member(keys[at], at + 1, len(keys)))
            child = node[keys[at]]
            if not isinstance(child, (list, dict)) or rng.random() < 0.3:
                node[keys[at]] = bad
                return tree, steps
            node = child


@pytest.fixture(scope="module")
def server_key() -> _core.ServerPublicKey:
    keypair = _core.ClientKeyPair.generate(2048)
    return _core.ServerPublicKey.from_pem(keypair.public_key_pem)


@pytest.mark.parametrize("seed", range(6))
def test_the_writers_path_is_the_rule_on_random_trees(server_key, seed):
    rng = random.Random(seed)
    checked = 0
    for _ in range(120):
        serial = [0]
        tree: dict[object, Any] = {"model": "m"}
        for _ in range(rng.randint(1, 4)):
            tree[_key(rng, serial)] = _tree(rng, 0, serial)
        payload, steps = _plant(rng, tree, {1, 2})
        with pytest.raises(TypeError) as caught:
            _core.seal(payload, server_key)
        text = str(caught.value)
        expected = render(steps, counted=True)
        assert text == f"{expected}: object of type set is not JSON serializable", steps
        assert KEY_MARK not in text
        checked += 1
    assert checked == 120


def _broken(document: Any, steps: list[Step]) -> bytes:
    """``document`` as JSON with the planted marker value written as a broken literal."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    assert text.count('"@BROKEN@"') == 1
    return text.replace('"@BROKEN@"', "tru").encode()


@pytest.mark.parametrize("seed", range(4))
def test_the_readers_path_is_the_rule_on_random_responses(seed):
    keypair = _core.ClientKeyPair.generate(2048)
    public = serialization.load_pem_public_key(keypair.public_key_pem.encode())
    rng = random.Random(100 + seed)
    for _ in range(40):
        serial = [0]
        response: dict[object, Any] = {"id": "x", "object": "chat.completion"}
        for _ in range(rng.randint(1, 4)):
            key = _key(rng, serial)
            response[str(key)] = _tree(rng, 0, serial)
        response = json.loads(json.dumps(response))  # str keys, as a server's JSON has
        document, steps = _plant(rng, response, "@BROKEN@")
        envelope, _ = seal_json(public, _broken(document, steps))
        with pytest.raises(_core.EnvelopeError) as caught:
            _core.open_envelope(envelope, keypair)
        text = str(caught.value)
        found = re.search(r"\(path (.*)\)$", text)
        assert found, text
        assert found.group(1) == render(steps, counted=False), steps
        assert "invalid literal" in text
        assert KEY_MARK not in text


@pytest.mark.parametrize("member", CALLER_NAMED[3:])
@pytest.mark.parametrize("property_name", ["name", "content", "user", "role"])
def test_a_property_name_under_a_caller_keyed_schema_member_is_not_shown(
    server_key, member, property_name
):
    # A tool whose schema makes a field depend on a property the caller named after a
    # protocol word: the word is the caller's schema, not the protocol's.
    value: object = [{1}] if member == "dependentRequired" else {"default": {1}}
    parameters = {"type": "object", member: {property_name: value}}
    payload = {
        "model": "m",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": parameters}}],
    }
    with pytest.raises(TypeError) as caught:
        _core.seal(payload, server_key)
    text = str(caught.value)
    assert f".{property_name}" not in text, text
    assert text.startswith(f"$.tools[0].function.parameters.{member}.<key 1 of 1>"), text
