"""The process under examination: runs chat requests with one client, then waits to be scanned.

Run by this venv's interpreter for ``ours`` (an ecosystem venv's for ``openai``), by the
reference venv's for ``reference``.

usage: python child.py --client ours|reference|openai --url URL [--ca CA] --requests N
       --token TOKEN [--max-retries R] [--timeout S] [--retry-backoff S] [--pad BYTES] [--leak-json]
       [--key-dir DIR] [--dispose] [--concurrency C]

Request ``i`` sends the user message ``f"{token}-{i}"``. The child never serializes anything
itself, so JSON-framed copies of that text (``"content": "<token>-i``) can only come from the
client library. After the requests it drops every response, collects garbage, prints one JSON
line (counts, error types, payload ids: nothing secret) and ``READY``, then blocks on stdin with
the client still alive, as a long-running application would be between requests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from typing import Any

_LEAKS: list[str] = []


class _SdkChat:
    """The openai SDK on nomyo_native.openai's transport, answering as the native API does
    (a dict of what the run checks; the SDK's own objects are dropped with the call)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from nomyo_native import openai as nomyo_openai

        self._metadata = nomyo_openai.metadata
        options: dict[str, Any] = {"timeout": args.timeout}
        if args.ca:
            options["ca_bundle"] = args.ca
        self._sdk = nomyo_openai.AsyncOpenAI(
            base_url=args.url, api_key="forensics", max_retries=args.max_retries, **options
        )

    async def create(self, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        completion = await self._sdk.chat.completions.create(model=model, messages=messages)
        content = completion.choices[0].message.content
        return {
            "_metadata": self._metadata(completion),
            "choices": [{"message": {"content": content}}],
        }

    def dispose(self) -> None:
        """Nothing to wipe beyond what the transport's client holds."""


def _make_client(args: argparse.Namespace) -> Any:
    if args.client == "openai":
        return _SdkChat(args)
    if args.client == "reference":
        if args.ca:
            # nomyo 0.2.9 has no CA option; its httpx honours SSL_CERT_FILE for verify=True.
            os.environ["SSL_CERT_FILE"] = args.ca
        import nomyo

        return nomyo.SecureChatCompletion(
            base_url=args.url,
            allow_http=args.url.startswith("http:"),
            max_retries=args.max_retries,
            key_dir=args.key_dir,
        )
    import nomyo_native

    options: dict[str, Any] = {"max_retries": args.max_retries, "timeout": args.timeout}
    if args.key_dir:
        options["key_dir"] = args.key_dir
    if args.ca:
        options["ca_bundle"] = args.ca
    if args.url.startswith("http:"):
        options["allow_http"] = True
        # The child's stderr is a pipe nobody reads while it runs; keep it quiet.
        import warnings

        warnings.simplefilter("ignore", UserWarning)
    if args.retry_backoff is not None:
        options["retry_backoff"] = args.retry_backoff
    return nomyo_native.SecureChatCompletion(base_url=args.url, **options)


async def _run(chat: Any, args: argparse.Namespace) -> dict[str, Any]:
    outcome: dict[str, Any] = {
        "ok": 0,
        "errors": [],
        "payload_ids": [],
        "mismatches": 0,
        "buffers_live": [],
    }

    async def one(i: int) -> None:
        messages = [{"role": "user", "content": f"{args.token}-{i}" + "x" * args.pad}]
        if args.leak_json:
            # Positive control: a copy the scan must find (the caller serializing a request).
            _LEAKS.append(json.dumps({"messages": messages}, separators=(",", ":")))
        try:
            response = await chat.create(model=args.model, messages=messages)
        except Exception as exc:  # every outcome is reported to the parent, which judges
            outcome["errors"].append(type(exc).__name__)
        else:
            outcome["ok"] += 1
            outcome["payload_ids"].append(response["_metadata"]["payload_id"])
            # The reply must carry the request's text, or no real exchange happened.
            content = response["choices"][0]["message"]["content"]
            text = f"{args.token}-{i}" + "x" * args.pad
            if content not in (text, f"ECHO<{text}>"):
                outcome["mismatches"] += 1
            del response, content
        del messages

    # Batches of `concurrency` requests in flight at once (1: strictly sequential).
    for start in range(0, args.requests, args.concurrency):
        batch = range(start, min(start + args.concurrency, args.requests))
        await asyncio.gather(*(one(i) for i in batch))
        if args.client in ("ours", "openai"):
            # The core's count of live locked buffers after each batch: it must not grow.
            from nomyo_native import _core

            outcome["buffers_live"].append(_core.memory_status()["buffers_live"])
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=("ours", "reference", "openai"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--model", default="forensics-model")
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--retry-backoff", type=float)
    parser.add_argument("--leak-json", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--key-dir")
    parser.add_argument("--dispose", action="store_true")
    # Pad each message to exercise the large-payload paths (buffer growth, chunked reads).
    parser.add_argument("--pad", type=int, default=0)
    args = parser.parse_args()

    chat = _make_client(args)
    outcome = asyncio.run(_run(chat, args))
    if args.dispose:
        # Wipes the key pair: afterwards no private-key material may be left anywhere.
        chat.dispose()
    gc.collect()
    print(json.dumps(outcome), flush=True)
    print("READY", flush=True)
    sys.stdin.readline()
    # Only now may the client go: it was alive, as in a long-running process, during the scan.
    del chat


if __name__ == "__main__":
    main()
