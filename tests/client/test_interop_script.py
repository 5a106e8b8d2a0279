"""One user script, run with ``import nomyo`` and with ``import nomyo_native as nomyo`` against the
same local endpoint over HTTPS: same results, same exceptions, shared key directories."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.reference

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


async def user_script(nomyo: ModuleType, base_url: str, key_dir: str | None) -> dict[str, Any]:
    """What a user of nomyo 0.2.9 writes; only the import differs between the two runs."""
    client = nomyo.SecureChatCompletion(
        base_url=base_url, api_key="sk-interop", key_dir=key_dir, max_retries=0
    )
    client.client.key_size = 2048  # keep the test cheap: key size is not the point here
    out: dict[str, Any] = {}
    reply = await client.create(
        model="Qwen/Qwen3-0.6B",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0.7,
        max_tokens=32,
    )
    out["content"] = reply["choices"][0]["message"]["content"]
    out["metadata_keys"] = set(reply["_metadata"])
    tooled = await client.acreate(
        model="Qwen/Qwen3-0.6B",
        messages=[{"role": "user", "content": "find it"}],
        tools=TOOLS,
        security_tier="high",
    )
    out["tool"] = tooled["choices"][0]["message"]["tool_calls"][0]["function"]["name"]
    out["tier"] = tooled["_metadata"]["security_tier"]
    errors = []
    for kwargs in (
        {"security_tier": "maximum"},
        {"api_key": "sk-wrong"},
        {"security_tier": "bogus"},
    ):
        try:
            await client.create(model="m", messages=[{"role": "user", "content": "x"}], **kwargs)
        except nomyo.ServiceUnavailableError as exc:
            errors.append(("ServiceUnavailableError", exc.status_code))
        except nomyo.AuthenticationError as exc:
            errors.append(("AuthenticationError", exc.status_code))
        except ValueError:
            errors.append(("ValueError", None))
    out["errors"] = errors
    out["public_key_pem"] = client.client.public_key_pem.strip()
    if hasattr(client, "aclose"):  # nomyo-native pools connections; let the endpoint stop at once
        await client.aclose()
    return out


@pytest.fixture
def endpoint(endpoint_factory, monkeypatch):
    endpoint = endpoint_factory(tls_self_signed=True, api_keys=("sk-interop",))
    # The reference has no CA option: it trusts what httpx trusts, which honours SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(endpoint.ca_path))
    return endpoint


async def test_same_script_same_results_with_either_module(endpoint):
    results = {}
    for name in ("nomyo", "nomyo_native"):
        results[name] = await user_script(importlib.import_module(name), endpoint.base_url, None)
    ref, ours = results["nomyo"], results["nomyo_native"]
    assert ref["content"] == ours["content"] == "What is the capital of France?"
    assert ref["tool"] == ours["tool"] == "lookup"
    assert ref["tier"] == ours["tier"] == "high"
    assert (
        ref["errors"]
        == ours["errors"]
        == [
            ("ServiceUnavailableError", 503),
            ("AuthenticationError", 401),
            ("ValueError", None),
        ]
    )
    assert ref["metadata_keys"] <= ours["metadata_keys"]


@pytest.mark.parametrize("writer", ["nomyo", "nomyo_native"])
async def test_key_dir_written_by_either_is_used_by_the_other(endpoint, tmp_path, writer):
    reader = "nomyo_native" if writer == "nomyo" else "nomyo"
    key_dir = str(tmp_path / "client_keys")
    first = await user_script(importlib.import_module(writer), endpoint.base_url, key_dir)
    second = await user_script(importlib.import_module(reader), endpoint.base_url, key_dir)
    assert first["public_key_pem"] == second["public_key_pem"]
    assert second["content"] == "What is the capital of France?"
