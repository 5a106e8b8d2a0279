"""CPU of ``_core.open`` on 1 MiB responses that are one long string: the reader's string path.

Each response is a chat completion whose content is ~1 MiB of one kind of text, sealed the way
the endpoint seals it (``seal_response``), as raw UTF-8 (``ensure_ascii=False``) or escaped
(``json.dumps``' default). The figure per kind is the median process CPU of one ``open`` over
many calls, interleaved kind by kind so that drift hits every kind alike. To compare two builds,
run this script against each in turn (``PYTHONPATH`` pointing at a copy of the package with the
other ``_core``) and alternate the runs.

Run: ``.venv/bin/python benches/bench_open_strings.py [--calls N] [--kinds ascii,mixed]``.
With ``--once`` every kind is opened once, for ``valgrind --tool=callgrind``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.parse
from typing import Any

from nomyo_native import _core
from nomyo_native.server.crypto import parse_client_public_key, seal_response

SIZE = 1024 * 1024

# name -> (the unit the content repeats, whether json.dumps escapes non-ASCII characters)
KINDS: dict[str, tuple[str, bool]] = {
    "ascii": ("The quick brown fox jumps over the lazy dog. ", False),
    "ascii-lines": ("The quick brown fox jumps over the lazy dog, line after line.\n", False),
    "english": ("\u201cQuick\u201d brown fox \u2014 it\u2019s over the lazy dog. " * 3, False),
    "latin1": ("héllo wörld, ça va très bien ", False),
    "mixed": ("héllo wörld Ελλάδα 漢字 🔐 ", False),
    "cjk": ("漢字かな交じり文 ", False),
    "mixed-escaped": ("héllo wörld Ελλάδα 漢字 🔐 ", True),
    # What an English, a Greek and a Japanese answer look like from a server that escapes.
    "english-escaped": (
        "\u201cQuick\u201d brown fox \u2014 it\u2019s over the lazy dog. " * 3,
        True,
    ),
    "greek-escaped": ("Καλημέρα κόσμε, η γρήγορη καφέ αλεπού. ", True),
    "cjk-escaped": ("漢字かな交じり文 ", True),
    # Every character from U+8000 on, beyond what CPython's UTF-16 decoder copies fast.
    "hangul-escaped": ("한국어 문장을 읽습니다 ", True),
}


def response_body(kind: str, keypair: _core.ClientKeyPair) -> tuple[bytes, str]:
    """A sealed completion whose content is ~``SIZE`` UTF-8 bytes of ``kind``'s text."""
    unit, escaped = KINDS[kind]
    content = unit * (SIZE // len(unit.encode()))
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }
    plaintext = json.dumps(completion, ensure_ascii=escaped).encode()
    client_key = parse_client_public_key(urllib.parse.quote(keypair.public_key_pem))
    return seal_response(plaintext, client_key).body, content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--once", action="store_true", help="open each kind once (callgrind)")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    keypair = _core.ClientKeyPair.generate(2048)
    bodies: dict[str, bytes] = {}
    for kind in kinds:
        body, content = response_body(kind, keypair)
        opened: Any = _core.open(body, keypair)[0]
        assert opened["choices"][0]["message"]["content"] == content, kind
        bodies[kind] = body
    if args.once:
        for kind in kinds:
            _core.open(bodies[kind], keypair)
        return
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.calls):
        for kind in kinds:
            started = time.process_time()
            _core.open(bodies[kind], keypair)
            samples[kind].append(time.process_time() - started)
    for kind in kinds:
        median_us = statistics.median(samples[kind]) * 1e6
        print(f"{kind:>14}: {median_us:8.1f} us  (median of {args.calls}, {_core.__file__})")


if __name__ == "__main__":
    main()
