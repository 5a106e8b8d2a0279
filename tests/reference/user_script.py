"""What a user of nomyo 0.2.9 writes, run unchanged by either client: only the import differs.

usage: python user_script.py MODULE BASE_URL [KEY_DIR]   (MODULE: nomyo or nomyo_native)

Run by the reference venv's interpreter with ``nomyo`` and by ours with ``nomyo_native`` (as
``import nomyo_native as nomyo``); prints one JSON line: what came back and what was raised.
Trusts the endpoint through SSL_CERT_FILE, the reference's only way.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from types import ModuleType
from typing import Any

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
    out["metadata_keys"] = sorted(reply["_metadata"])
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
            errors.append(["ServiceUnavailableError", exc.status_code])
        except nomyo.AuthenticationError as exc:
            errors.append(["AuthenticationError", exc.status_code])
        except ValueError:
            errors.append(["ValueError", None])
    out["errors"] = errors
    out["public_key_pem"] = client.client.public_key_pem.strip()
    if hasattr(client, "aclose"):  # nomyo-native pools connections; let the endpoint stop at once
        await client.aclose()
    return out


def main() -> None:
    module_name, base_url, *key_dir = sys.argv[1:]
    module = importlib.import_module(module_name)
    result = asyncio.run(user_script(module, base_url, key_dir[0] if key_dir else None))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
