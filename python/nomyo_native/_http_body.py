"""Response bodies as wire bytes only: no content decoder ever runs, nothing beyond a cap.

httpx2 decodes any ``Content-Encoding`` a server names, chains such as ``gzip, gzip`` included,
and each raw chunk is inflated whole before a caller sees it: 1.8 KB of nested gzip becomes
gigabytes before any size check could run. The client therefore asks for ``identity``, reads
the raw stream, and refuses a response that names any other coding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import httpx2

from nomyo_native._body_buffers import POOLED_MIN_BYTES
from nomyo_native._protocol import Answer
from nomyo_native._retry import parse_retry_after
from nomyo_native.errors import ResponseFormatError, UnsupportedContentEncodingError

__all__ = [
    "IDENTITY_ENCODING",
    "LIMITS",
    "LOCAL_REFUSALS",
    "NETWORK_FAILURES",
    "Answer",
    "answer_head",
    "iter_raw_capped",
    "read_raw_capped",
    "refuse_encoded",
    "refused_codings",
    "whole_body",
]

# Sent with every request: we accept no content coding at all.
IDENTITY_ENCODING = {"Accept-Encoding": "identity"}
# A body larger than this that arrives in one buffer is handed on as that buffer (a view of one
# the library keeps, see _body_buffers): only a response envelope can be (error bodies and the
# server key are capped at 64 KiB), and the core reads it in place. Anything smaller becomes
# bytes, a copy that costs nothing (and is never received into a kept buffer).
_KEEP_AS_RECEIVED = POOLED_MIN_BYTES
# The pool of each driver's HTTP client.
LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=32)
# Our own HTTP layer refusing a request (a header value it cannot encode): never retried, and
# never chained (its message quotes the value).
LOCAL_REFUSALS = (httpx2.LocalProtocolError, UnicodeEncodeError)
# A failed attempt: the network, a per-operation timeout, or the whole attempt's deadline
# (the builtin TimeoutError).
NETWORK_FAILURES = (TimeoutError, httpx2.TransportError)


def answer_head(response: httpx2.Response) -> tuple[float | None, bool]:
    """(Retry-After seconds, whether to read the body) from a response's head.

    A compressed 200 is refused; any other compressed answer is dropped unread, as its status
    alone says what went wrong.
    """
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    refused = refused_codings(response.headers)
    if refused and response.status_code == 200:
        raise refuse_encoded(refused)
    return retry_after, not refused


def refused_codings(headers: httpx2.Headers) -> list[str]:
    """Every content coding named by the response other than ``identity`` (in order).

    Each ``Content-Encoding`` field may list several codings, and a response may repeat the
    field; all of them count.
    """
    refused: list[str] = []
    for value in headers.get_list("content-encoding"):
        for token in value.split(","):
            coding = token.strip().lower()
            if coding and coding != "identity":
                refused.append(coding)
    return refused


# The registered content codings (IANA HTTP Content Coding Registry): only these are named in
# a message. Anything else in the header is the server's own text, and no header value is ever
# quoted in an exception or log.
_REGISTERED_CODINGS = frozenset(
    {"aes128gcm", "br", "compress", "dcb", "dcz", "deflate", "exi", "gzip", "pack200-gzip"}
    | {"x-compress", "x-gzip", "zstd"}
)


def refuse_encoded(codings: list[str]) -> UnsupportedContentEncodingError:
    named = [c if c in _REGISTERED_CODINGS else "an unregistered coding" for c in codings[:4]]
    shown = ", ".join(dict.fromkeys(named))
    return UnsupportedContentEncodingError(
        f"the server compressed its response (Content-Encoding {shown}); this client accepts "
        "only uncompressed responses (it sends Accept-Encoding: identity) and decodes nothing"
    )


def _in_memory_body(response: httpx2.Response, cap: int) -> bytes | None:
    """The body when it needs no reading (or None), after refusing a declared length above
    ``cap``."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise ResponseFormatError(f"response body larger than {cap} bytes refused")
    if response.is_stream_consumed:
        # Built in memory by a custom transport (httpx2.Response(content=...)): the body is
        # already there, and with no coding besides identity it is the wire bytes.
        if len(response.content) > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")
        return response.content
    return None


def iter_raw_capped(
    response: httpx2.Response, cap: int, each_chunk: Callable[[], None] | None = None
) -> bytes | bytearray | memoryview:
    """:func:`read_raw_capped` for a response of the sync client; ``each_chunk`` is called
    before the body and after every chunk (the sync driver's deadline check)."""
    body = _in_memory_body(response, cap)
    if body is not None:
        return body
    chunks = response.iter_raw()
    if each_chunk is not None:
        chunks = _checked(chunks, each_chunk)
    return _join_capped(chunks, cap)


def _checked(chunks: Iterator[bytes], check: Callable[[], None]) -> Iterator[bytes]:
    check()
    for chunk in chunks:
        check()
        yield chunk


def _join_capped(chunks_in: Iterator[bytes], cap: int) -> bytes | bytearray | memoryview:
    # Chunks joined once at the end: a growing bytearray copied into bytes would copy a
    # megabyte envelope two or three times on the hot path.
    chunks: list[bytes] = []
    size = 0
    for chunk in chunks_in:
        size += len(chunk)
        if size > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")
        chunks.append(chunk)
    return whole_body(chunks)


def whole_body(chunks: Sequence[bytes | bytearray | memoryview]) -> bytes | bytearray | memoryview:
    """The body from its chunks: a large one that came as one buffer (the drivers' own
    ``Content-Length`` body) as it is, anything else joined into bytes."""
    if len(chunks) == 1 and len(chunks[0]) > _KEEP_AS_RECEIVED:
        return chunks[0]
    return b"".join(chunks)


async def read_raw_capped(response: httpx2.Response, cap: int) -> bytes | bytearray | memoryview:
    """The body exactly as it came off the wire, refused once it exceeds ``cap`` bytes.

    A declared ``Content-Length`` above the cap is refused before anything is read; otherwise
    at most ``cap`` bytes plus one network read are ever held. A large body that arrives as
    one chunk (the default transport's ``Content-Length`` body: the buffer it was received
    into) is returned as it is, not copied.
    """
    body = _in_memory_body(response, cap)
    if body is not None:
        return body
    # Chunks joined once at the end: a growing bytearray copied into bytes would copy a
    # megabyte envelope two or three times on the hot path.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > cap:
            raise ResponseFormatError(f"response body larger than {cap} bytes refused")
        chunks.append(chunk)
    return whole_body(chunks)
