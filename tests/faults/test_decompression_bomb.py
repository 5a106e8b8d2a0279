"""Issue 10 item 1: compressed responses are refused unread, so a decompression bomb costs the
client nothing beyond its caps.

A child process (its own peak RSS) meets a loopback peer that answers the key fetch, the 200
envelope and error bodies with single and chained gzip/deflate bombs of 128 MiB of zeros
(about 128 KiB on the wire, or about 1 KiB when chained). Decoding one network read of them
would cost tens of MiB; the client's peak RSS must stay within a few MiB.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import zlib

import pytest

from .loopback import OK, LoopbackPeer, status

pytestmark = [
    pytest.mark.filterwarnings("ignore:WARNING. Using HTTP:UserWarning"),
    # ru_maxrss is KiB on Linux only (bytes on macOS; no resource module on Windows).
    pytest.mark.linux_only,
]

BOMB_SIZE = 128 * 1024 * 1024
_WBITS = {"gzip": 31, "deflate": 15}  # HTTP "deflate" is the zlib format
# Peak RSS growth allowed over the whole run: the raw bodies are refused before any read.
MAX_GROWTH = 8 * 1024 * 1024

CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, sys, warnings
    warnings.simplefilter("ignore")
    import nomyo_native as nomyo

    URL, KEY_CASES, POST_CASES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    MESSAGES = [{"role": "user", "content": "bomb probe"}]

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def outcome(exc):
        return {"type": type(exc).__name__, "status": getattr(exc, "status_code", None),
                "details": getattr(exc, "error_details", None)}

    # Either client, driven the same way: a sync call's result as it is, an async one's on
    # one event loop.
    if sys.argv[4] == "sync":
        Chat, call = nomyo.SyncSecureChatCompletion, lambda result: result
    else:
        Chat, call = nomyo.SecureChatCompletion, asyncio.new_event_loop().run_until_complete

    def main():
        options = dict(allow_http=True, key_size=2048, max_retries=0)
        outcomes = []
        chat = Chat(base_url=URL, **options)
        call(chat.create(model="m", messages=MESSAGES))  # warm-up: every code path loaded
        baseline = peak()
        for _ in range(KEY_CASES):
            other = Chat(base_url=URL, **options)
            try:
                call(other.client.fetch_server_public_key())
                outcomes.append({"type": "accepted"})
            except Exception as exc:
                outcomes.append(outcome(exc))
            finally:
                other.close()
        for _ in range(POST_CASES):
            try:
                call(chat.create(model="m", messages=MESSAGES))
                outcomes.append({"type": "accepted"})
            except Exception as exc:
                outcomes.append(outcome(exc))
        chat.close()
        print(json.dumps({"growth": peak() - baseline, "outcomes": outcomes}))

    main()
    """
)


def _compress_stream(wbits: int, size: int) -> bytes:
    """``size`` zero bytes compressed without ever holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


@functools.cache
def bomb(codings: str) -> bytes:
    """A body encoded with ``codings`` (applied left to right, as Content-Encoding lists them)."""
    first, *rest = [c.strip() for c in codings.split(",")]
    body = _compress_stream(_WBITS[first], BOMB_SIZE)
    for coding in rest:
        compressor = zlib.compressobj(9, zlib.DEFLATED, _WBITS[coding])
        body = compressor.compress(body) + compressor.flush()
    return body


CODINGS = ["gzip", "deflate", "gzip, gzip", "deflate, gzip"]
ERROR_CASES = [(400, "gzip"), (404, "deflate"), (500, "gzip, gzip"), (503, "deflate, gzip")]
EXPECTED_ERRORS = {
    400: "InvalidRequestError",
    404: "APIError",
    500: "ServerError",
    503: "ServiceUnavailableError",
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("driver", ["async", "sync"])
def test_decompression_bombs_are_refused_unread_and_cost_no_memory(
    loopback: LoopbackPeer, driver: str
):
    loopback.key_script.append(OK)  # the warm-up client's key
    for codings in CODINGS:
        loopback.key_script.append(status(200, bomb(codings), content_encoding=codings))
    loopback.then(OK)  # the warm-up request
    for codings in CODINGS:
        loopback.then(status(200, bomb(codings), content_encoding=codings))
    for code, codings in ERROR_CASES:
        loopback.then(status(code, bomb(codings), content_encoding=codings))

    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            loopback.url,
            str(len(CODINGS)),
            str(len(CODINGS) + len(ERROR_CASES)),
            driver,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    outcomes = report["outcomes"]

    key_outcomes = outcomes[: len(CODINGS)]
    envelope_outcomes = outcomes[len(CODINGS) : 2 * len(CODINGS)]
    error_outcomes = outcomes[2 * len(CODINGS) :]
    for got in key_outcomes + envelope_outcomes:
        assert got["type"] == "UnsupportedContentEncodingError", got
    for (code, _codings), got in zip(ERROR_CASES, error_outcomes, strict=True):
        # The compressed error body is dropped; the status's own exception is still raised.
        assert got["type"] == EXPECTED_ERRORS[code], got
        assert got["status"] == code and got["details"] is None, got
    assert report["growth"] < MAX_GROWTH, f"peak RSS grew by {report['growth'] / 2**20:.1f} MiB"
